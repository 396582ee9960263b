"""Nothing lost, nothing duplicated: the hub killed, the database stopped, the broker restarted.

Each test streams a few thousand messages from a background publisher, breaks something in
the middle, and then checks that every (device, seq) was stored exactly once. Every tenth
block comes with an event, so that both ingest lanes are broken mid-stream (docs/devices.md,
"Lanes").
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from tests.support import Publisher, now_ms, register, rows, scalar, wait_until, waveform

DEVICES = 20
PER_DEVICE = 150  # 3,000 wearable messages, 150,000 samples
TOTAL = DEVICES * PER_DEVICE
EVENTS = TOTAL // 10  # on the urgent lane, numbered apart from the blocks


class Stream(threading.Thread):
    """Publishes PER_DEVICE waveform messages for each device at a steady rate."""

    def __init__(self, url: str, rate_per_s: float = 300.0) -> None:
        super().__init__(name="test-stream", daemon=True)
        self.pub = Publisher(url, client_id="stream-publisher")
        self.rate = rate_per_s
        self.t0 = now_ms() - 3_600_000
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        for seq in range(1, PER_DEVICE + 1):
            for d in range(DEVICES):
                self.pub.publish(f"ankang/v1/w{d}/telemetry", waveform(seq, self.t0 + seq * 1000))
                self.sent += 1
                if seq % 10 == 0:
                    event = {
                        "ts": self.t0 + seq * 1000 + 500,
                        "seq": 10_000 + seq // 10,
                        "event": "door_open",
                    }
                    self.pub.publish(f"ankang/v1/w{d}/event", orjson.dumps(event))
            ahead = self.sent / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)

    def finish(self, timeout: float = 120.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "publisher did not finish"
        self.pub.wait_all(timeout)
        self.pub.close()


def _assert_exactly_once(database: str) -> None:
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages") >= TOTAL + EVENTS,
        120,
        f"{TOTAL + EVENTS} messages stored",
    )
    time.sleep(1.0)  # anything extra would show up now
    assert scalar(database, "SELECT count(*) FROM messages") == TOTAL + EVENTS
    assert scalar(database, "SELECT count(*) FROM events") == EVENTS
    assert rows(database, "SELECT device_id, seq FROM messages GROUP BY 1, 2 HAVING count(*) > 1") == []
    assert scalar(database, "SELECT count(*) FROM waveforms") == TOTAL
    assert scalar(database, "SELECT count(DISTINCT (device_id, seq)) FROM waveforms") == TOTAL
    assert scalar(database, "SELECT count(*) FROM readings") == TOTAL
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0


def _registered(database: str) -> None:
    register(database, [(f"w{d}", "wearable") for d in range(DEVICES)])


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart(broker, database, hub_factory):
    _registered(database)
    hub = hub_factory(database)
    stream = Stream(broker.url)
    stream.start()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") > TOTAL // 3, 60, "a third stored")
    hub.kill()
    stored_at_kill = scalar(database, "SELECT count(*) FROM messages")
    assert stored_at_kill < TOTAL, "the stream should still be running when the hub is killed"
    time.sleep(1.0)
    hub.start()
    stream.finish()
    _assert_exactly_once(database)
    # the restarted hub resumed its persistent session: it did not start from scratch
    stored = hub.metric("ankang_ingest_messages_total", outcome="stored")
    assert stored <= TOTAL + EVENTS - stored_at_kill + 2_000


@pytest.mark.slow
def test_database_stopped_for_20_s_mid_stream(broker, own_pg, hub_factory):
    url = own_pg.url
    _registered(url)
    hub = hub_factory(url)
    stream = Stream(broker.url, rate_per_s=100.0)
    stream.start()
    wait_until(lambda: scalar(url, "SELECT count(*) FROM messages") > 300, 60, "some stored")
    own_pg.stop()
    stopped = time.monotonic()
    wait_until(lambda: hub.health()["database"] is False, 10, "the hub to report the outage")
    time.sleep(max(0.0, 20.0 - (time.monotonic() - stopped)))
    assert hub.alive(), "the hub must ride out a database outage"
    own_pg.start()
    stream.finish()
    _assert_exactly_once(url)
    wait_until(lambda: hub.health()["ok"], 20, "hub healthy again")


@pytest.mark.slow
def test_broker_restarted_mid_stream(broker, database, hub_factory):
    _registered(database)
    hub = hub_factory(database)
    stream = Stream(broker.url)
    stream.start()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") > TOTAL // 3, 60, "a third stored")
    broker.stop()
    time.sleep(2.0)
    assert hub.alive()
    broker.start()
    stream.finish()
    _assert_exactly_once(database)
    wait_until(lambda: hub.health()["ok"], 20, "hub reconnected")


@pytest.mark.slow
def test_two_workers_share_devices_without_splitting_any(broker, database, hub_factory):
    _registered(database)
    a = hub_factory(database, partition="0/2")
    b = hub_factory(database, partition="1/2")
    stream = Stream(broker.url, rate_per_s=1000.0)
    stream.start()
    stream.finish()
    _assert_exactly_once(database)
    split = rows(database, "SELECT device_id FROM messages GROUP BY 1 HAVING count(DISTINCT worker) > 1")
    assert split == []
    per_worker = dict(rows(database, "SELECT worker, count(DISTINCT device_id) FROM messages GROUP BY 1"))
    assert set(per_worker) == {0, 1}, "both workers should own some of 20 devices"
    assert sum(per_worker.values()) == DEVICES
    assert a.metric("ankang_ingest_messages_total", outcome="foreign") > 0
    assert b.metric("ankang_ingest_messages_total", outcome="foreign") > 0
