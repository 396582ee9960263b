"""Real local receivers for notifications: an SMTP server (aiosmtpd) and an HTTP webhook."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from lab.localservices import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    body: str


@dataclass
class SmtpReceiver:
    port: int
    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), str(message["subject"]), body))
        return "250 OK"

    def url(self, to: str) -> str:
        # apprise's mailto:// on a plain local server: no TLS, no login.
        return f"mailto://127.0.0.1:{self.port}?from=ankang@example.org&to={to}&mode=insecure"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(free_port())
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()


@dataclass
class Webhook:
    port: int
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Paths that answer 500, as a channel that is down does.
    failing: set[str] = field(default_factory=set)
    # Paths that answer only after this many seconds, as a channel that hangs does.
    slow: dict[str, float] = field(default_factory=dict)
    # (path, time.monotonic()) of each request as it arrived, before any slow answer.
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body in self.posts if p == path]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with hook.lock:
                hook.posts.append((self.path, body))
                hook.arrivals.append((self.path, time.monotonic()))
                delay = hook.slow.get(self.path, 0.0)
            if delay:
                time.sleep(delay)
            self.send_response(500 if self.path in hook.failing else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="test.webhook", daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join(5)
