"""Helpers for tests that drive the real hub: a hub subprocess, a paho publisher, polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params or None).fetchall()  # type: ignore[arg-type]


def register(
    url: str, devices: list[tuple[str, str]], facility: str = "fac-1", tz: str = "Asia/Shanghai"
) -> None:
    """Register (device_id, kind) pairs in one facility, straight through the registry SQL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO facilities (id, tz) VALUES (%s, %s) ON CONFLICT DO NOTHING", (facility, tz))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO devices (id, kind, facility_id, heartbeat_s) VALUES (%s, %s, %s, 60)"
                " ON CONFLICT DO NOTHING",
                [(d, k, facility) for d, k in devices],
            )
            cur.execute("SELECT pg_notify('ankang_registry', '')")


def now_ms() -> int:
    return int(time.time() * 1000)


def telemetry(seq: int, ts_ms: int, **metrics: float) -> bytes:
    return orjson.dumps({"ts": ts_ms, "seq": seq, "metrics": metrics or {"temp_c": 21.5}})


def waveform(seq: int, ts_ms: int, n: int = 50, rate: int = 50) -> bytes:
    acc = [[0.01 * (i % 7), -0.02, 0.98 + 0.001 * i] for i in range(n)]
    return orjson.dumps({"ts": ts_ms, "seq": seq, "rate_hz": rate, "acc_g": acc, "metrics": {"hr_bpm": 72}})


class Publisher:
    """A paho MQTT 5 publisher that waits for every QoS 1 PUBACK."""

    def __init__(self, url: str, client_id: str = "test-publisher") -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.2, 1)
        self._published = 0
        self._acked = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(host, int(port), clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise AssertionError("publisher could not connect to the broker")

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self._acked += 1

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        # While the broker is away paho keeps the message and sends it after reconnecting;
        # the PUBACK count below is what tells us it arrived.
        self.client.publish(topic, payload, qos=qos)
        with self._lock:
            self._published += 1

    @property
    def unacked(self) -> int:
        with self._lock:
            return self._published - self._acked

    def publish_many(
        self, messages: Iterable[tuple[str, bytes]], *, chunk: int = 10_000, timeout: float = 60.0
    ) -> int:
        """Publish a long run of QoS 1 messages, waiting for the broker's PUBACKs every
        ``chunk``: paho's packet ids are 16 bits, so it cannot hold 65,535 unacknowledged."""
        count = 0
        for topic, payload in messages:
            self.publish(topic, payload)
            count += 1
            if count % chunk == 0:
                self.wait_all(timeout)
        self.wait_all(timeout)
        return count

    def wait_all(self, timeout: float = 60.0) -> None:
        """Wait until the broker has acknowledged every QoS 1 message published so far."""
        wait_until(lambda: self.unacked == 0, timeout, "PUBACK for every published message", interval=0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HubProcess:
    """``ankang hub`` in a subprocess, so that a test can SIGKILL it."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        database_url: str,
        metrics_port: int,
        partition: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.metrics_port = metrics_port
        self.partition = partition
        self.env = {
            **os.environ,
            "ANKANG_MQTT_URL": mqtt_url,
            "ANKANG_DATABASE_URL": database_url,
            "ANKANG_METRICS_PORT": str(metrics_port),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        fd, name = tempfile.mkstemp(prefix="ankang-hub-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "ankang.cli", "hub"]
        if self.partition:
            args += ["--partition", self.partition]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_until(self.healthy, timeout, f"hub healthy (log: {self.log()[-2000:]})")

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as resp:
                return bool(orjson.loads(resp.read()).get("ok"))
        except OSError:
            return False

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as resp:
                return dict(orjson.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(orjson.loads(exc.read()))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
            return resp.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in self.metrics().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"hub did not stop on SIGTERM within {timeout} s") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
