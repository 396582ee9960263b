"""The live stream through a database outage, against a PostgreSQL of the test's own that is
stopped and started again: the stream says it is degraded and stays open, hands out nothing
on a session it cannot look at, resyncs when the database answers, and a session that ended
meanwhile ends the stream instead. The console shows the degraded state as a banner, and a
lost connection to the API as another. With ANKANG_SCREENSHOT_DIR set, the degraded console
is saved there (docs/img/console-degraded.png)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from lab.localservices import PostgresServer
from tests.api.conftest import ApiProcess, login, raise_alarm, seed
from tests.api.test_pages import CHROMIUM, FLAGS, shot, sign_in
from tests.support import wait_until

pytestmark = pytest.mark.slow


class Stream:
    """An SSE stream read in a thread: every event in order, and whether the stream ended."""

    def __init__(self, api: ApiProcess, client: httpx.Client) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._client = httpx.Client(base_url=api.url, headers=dict(client.headers), timeout=None)  # noqa: S113  (read until the test ends)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/api/v1/alarms/stream") as response:
                self.status = response.status_code
                event = ""
                for line in response.iter_lines():
                    if self._stop:
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((event, json.loads(line[6:])))
        except httpx.HTTPError as exc:
            if not self._stop:
                self.error = exc
        finally:
            self.ended.set()

    def names(self) -> list[str]:
        return [event for event, _ in list(self.events)]

    def has(self, name: str, after: int = 0) -> bool:
        return name in self.names()[after:]

    def alarm_ids(self, after: int = 0) -> set[int]:
        return {data["id"] for event, data in list(self.events)[after:] if event == "alarm"}

    def close(self) -> None:
        self._stop = True
        self._client.close()


@pytest.fixture
def outage_api(own_pg: PostgresServer) -> Iterator[ApiProcess]:
    """The API on a database that the test may stop and start."""
    asyncio.run(seed(own_pg.url))
    server = ApiProcess(own_pg.url, {"ANKANG_LOGIN_FAILURES_PER_CLIENT": "1000"})
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def _sos(url: str) -> int:
    return raise_alarm(url, "sos", facility="fa", room="101", resident="RA1", device="bed-a1")


def _feed_listening(api: ApiProcess) -> bool:
    return bool(httpx.get(f"{api.url}/healthz").json()["feed_listening"])


def _no_tracebacks(api: ApiProcess) -> None:
    log = api.log()
    assert "Exception in ASGI application" not in log, log[-4000:]
    assert "Traceback" not in log, log[-4000:]


def test_the_stream_outlives_a_database_outage_and_resyncs(
    outage_api: ApiProcess, own_pg: PostgresServer
) -> None:
    api = outage_api
    with login(api, "staff-a") as staff:
        stream = Stream(api, staff)
        try:
            wait_until(lambda: stream.has("ready"), 10, "the stream to be ready")
            before = _sos(own_pg.url)
            wait_until(lambda: before in stream.alarm_ids(), 10, "the alarm before the outage")

            own_pg.stop()
            down = len(stream.events)
            # the idle re-check (every 5 s) finds the database away; the pool waits 3 s for it
            wait_until(lambda: stream.has("degraded", down), 20, "a degraded event")
            at = stream.names().index("degraded", down)
            assert stream.events[at][1]["database"] is False
            assert stream.events[at][1]["since"]
            # a new stream is refused plainly while the database is away; the open one stays
            refused = staff.get("/api/v1/alarms/stream")
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/json")
            assert "database" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "5"
            time.sleep(6)  # more re-checks fail meanwhile: still one degraded event, no alarm
            assert not stream.ended.is_set(), stream.error
            assert stream.names()[down:].count("degraded") == 1
            assert not stream.has("alarm", down)
            assert not stream.has("resync", down)

            own_pg.start()
            wait_until(lambda: stream.has("resync", at), 30, "a resync once the database is back")
            assert not stream.ended.is_set(), stream.error
            wait_until(lambda: _feed_listening(api), 30, "the feed to listen again")
            after = _sos(own_pg.url)
            wait_until(
                lambda: after in stream.alarm_ids(at), 15, "an alarm on the same stream after the outage"
            )
            assert stream.names()[down:].count("degraded") == 1
            assert not stream.ended.is_set(), stream.error
        finally:
            stream.close()
    _no_tracebacks(api)


def test_a_session_ended_during_the_outage_ends_the_stream_on_recovery(
    outage_api: ApiProcess, own_pg: PostgresServer
) -> None:
    api = outage_api
    with login(api, "family-a1") as family:
        stream = Stream(api, family)
        try:
            wait_until(lambda: stream.has("ready"), 10, "the stream to be ready")
            time.sleep(1.2)  # so that the alarm below is preceded by a look at the session
            first = _sos(own_pg.url)
            wait_until(lambda: first in stream.alarm_ids(), 10, "the alarm before the outage")
            # The session was just looked at; the next idle look is 5 s away. Log out and stop
            # the database well within that, so the stream learns of neither until it is degraded.
            assert family.delete("/api/v1/auth/token").status_code == 204
            own_pg.stop()
            down = len(stream.events)
            wait_until(lambda: stream.has("degraded", down) or stream.ended.is_set(), 20, "a degraded event")
            assert stream.has("degraded", down), "the stream ended before the outage reached it"

            own_pg.start()
            # a new alarm (not a repeat of the first, which would keep its id) in the same scope
            later = raise_alarm(
                own_pg.url, "fall", facility="fa", room="101", resident="RA1", device="bed-a1"
            )
            assert later != first
            assert stream.ended.wait(30), "the stream outlived its session"
            assert stream.error is None, stream.error
            assert later not in stream.alarm_ids()
            assert not stream.has("alarm", down)
            assert not stream.has("resync", down)  # nothing for a session that is gone
        finally:
            stream.close()
    _no_tracebacks(api)


@pytest.fixture
def browser(outage_api: ApiProcess) -> Iterator[Browser]:
    # after the API and its database, whose set-up runs asyncio (see tests/api/test_pages.py)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


def test_the_console_shows_the_outage_and_the_lost_connection_and_recovers(
    browser: Browser, outage_api: ApiProcess, own_pg: PostgresServer
) -> None:
    api = outage_api
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    try:
        sign_in(page, api, "staff-a", "/console")
        page.goto(f"{api.url}/console?lang=en")
        status = page.get_by_test_id("live-status")
        banner = page.get_by_test_id("stream-banner")
        expect(status).to_have_attribute("data-state", "live")
        expect(banner).to_be_hidden()
        before = _sos(own_pg.url)
        expect(page.locator(f"[data-alarm-id='{before}']")).to_be_visible(timeout=10_000)

        own_pg.stop()
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_have_attribute("data-kind", "degraded")
        expect(banner).to_contain_text("the database has been unreachable since")
        expect(status).to_have_attribute("data-state", "degraded")
        # what was on the list stays on it
        expect(page.locator(f"[data-alarm-id='{before}']")).to_be_visible()
        shot(page, "console-degraded")

        own_pg.start()
        expect(banner).to_be_hidden(timeout=30_000)
        expect(status).to_have_attribute("data-state", "live")
        wait_until(lambda: _feed_listening(api), 30, "the feed to listen again")
        after = raise_alarm(own_pg.url, "fall", facility="fa", resident="RA2", device="watch-a2")
        expect(page.locator(f"[data-alarm-id='{after}']")).to_be_visible(timeout=10_000)

        # The API itself goes away: the browser reconnects by itself, and says so meanwhile.
        assert api.stop() == 0, api.log()[-3000:]
        _no_tracebacks(api)  # the next start logs to a file of its own
        expect(banner).to_be_visible(timeout=10_000)
        expect(banner).to_have_attribute("data-kind", "connection")
        expect(status).to_have_attribute("data-state", "down")
        api.start()
        expect(banner).to_be_hidden(timeout=30_000)
        expect(status).to_have_attribute("data-state", "live")
        expect(page.locator(f"[data-alarm-id='{after}']")).to_be_visible()
    finally:
        context.close()
    _no_tracebacks(api)
