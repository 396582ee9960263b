"""One device must not be able to stop the hub or drop anyone else's work.

Real Mosquitto, real PostgreSQL/TimescaleDB; the hub as a process where the path through
the broker matters, and the ingest pipeline itself (``Ingestor``) where a test needs to
hold a batch between prepare and commit. See docs/architecture.md, "Failure isolation".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from hub.detectors.engine import DetectionEngine, Output
from hub.ingest import MAX_ATTEMPTS, Ingestor
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import PAYLOAD_EXCERPT_BYTES, Database
from tests.hub.test_detection import apply, body, detections
from tests.support import Publisher, now_ms, register, rows, scalar, telemetry, wait_until

TWO_HOMES = """
facilities:
  - id: home-a
    tz: Asia/Shanghai
    rooms:
      - id: "1"
        beds: [{id: A, resident: {id: RA}}]
  - id: home-b
    tz: Asia/Shanghai
    rooms:
      - id: "1"
        beds: [{id: A, resident: {id: RB}}]
devices:
  - {id: sos-a, kind: sos_button, facility: home-a, room: "1", resident: RA}
  - {id: smoke-b, kind: smoke_detector, facility: home-b, room: "1"}
  - {id: mat-b, kind: bed_sensor, facility: home-b, room: "1", bed: A, resident: RB}
"""


def inbound(topic: str, payload: bytes, mid: int) -> Inbound:
    return Inbound(topic, payload, mid, 1, time.time(), 1)


def test_a_nul_in_a_key_neither_stops_the_hub_nor_loses_another_homes_readings(broker, database, hub_factory):
    """The reported poison message: the decoder echoed the key unescaped into the reason,
    the database refused the quarantine row, and the hub died, again at every restart."""
    register(database, [("bat-1", "smoke_detector")], facility="home-a")
    register(database, [("bed-b", "bed_sensor")], facility="home-b")
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 60_000
    poison = b'{"ts":%d,"seq":1,"metrics":{"battery_pct":50},"\\u0000":1}' % t
    for seq in range(1, 301):
        if seq == 150:
            pub.publish("ankang/v1/bat-1/telemetry", poison)
        pub.publish("ankang/v1/bed-b/telemetry", telemetry(seq, t + seq * 100, hr_bpm=60.0))
    pub.wait_all()
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages") == 300, 30, "the other home's readings"
    )
    assert hub.alive()
    (reason, kind, size, digest, excerpt) = rows(
        database, "SELECT reason, kind, payload_size, payload_sha256, payload FROM quarantine"
    )[0]
    assert reason == "unknown field(s): \\x00"  # escaped: printable, storable
    assert kind == "contract"
    assert (size, bytes(digest), bytes(excerpt)) == (len(poison), hashlib.sha256(poison).digest(), poison)
    assert hub.stop() == 0
    # it was acknowledged: a restarted hub gets nothing again, and keeps running
    again = hub_factory(database)
    pub.publish("ankang/v1/bed-b/telemetry", telemetry(301, t + 30_200, hr_bpm=61.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 301, 30, "the next reading")
    assert again.alive()
    assert scalar(database, "SELECT count(*) FROM quarantine") == 1
    pub.close()


def test_one_homes_sos_button_cannot_hide_another_homes_fire(broker, database, hub_factory):
    """Home A's button sends presses with NUL in their detail, 4 ms apart; halfway, home B's
    smoke detector alarms. The fire must open, whatever A sends."""
    apply(database, TWO_HOMES)
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    now = time.time()
    for i in range(300):
        press = b'{"ts":%d,"seq":%d,"event":"sos_pressed","detail":{"note":"a\\u0000b"}}' % (
            int((now - 10 + i * 0.004) * 1000),
            i + 1,
        )
        pub.publish("ankang/v1/sos-a/event", press)
        if i == 150:
            pub.publish("ankang/v1/smoke-b/event", body(1, now, event="smoke_alarm"))
        time.sleep(0.004)
    pub.wait_all()
    wait_until(
        lambda: any(k == "fire" and f == "home-b" for k, _lv, _s, f, *_ in detections(database)),
        20,
        f"home B's fire (hub log: {hub.log()[-1500:]})",
    )
    wait_until(lambda: scalar(database, "SELECT count(*) FROM quarantine") == 300, 20, "300 bad presses")
    assert set(rows(database, "SELECT DISTINCT reason FROM quarantine")) == {
        ("detail.note contains a NUL character",)
    }
    assert rows(database, "SELECT device_id, event FROM events") == [("smoke-b", "smoke_alarm")]
    assert hub.alive()
    pub.close()


def test_topics_under_a_device_outside_the_channels_are_quarantined(broker, database, hub_factory):
    register(database, [("d1", "smoke_detector")])
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 10_000
    pub.publish("ankang/v1/d1/telemetry/extra", telemetry(1, t, temp_c=20.0))
    pub.publish("ankang/v1/d1", telemetry(2, t, temp_c=20.0))
    # the alert service's own topics and the commands to devices are not device input
    pub.publish("ankang/v1/alerts/fac-1/fire", b"{}")
    pub.publish("ankang/v1/d1/command", b'{"cmd": "test"}')
    pub.publish("ankang/v1/d1/telemetry", telemetry(3, t + 1000, temp_c=21.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 1, 20, "the good message")
    wait_until(lambda: scalar(database, "SELECT count(*) FROM quarantine") == 2, 20, "two quarantined")
    got = rows(database, "SELECT topic, device_id, kind FROM quarantine ORDER BY topic")
    assert got == [("ankang/v1/d1", "d1", "topic"), ("ankang/v1/d1/telemetry/extra", "d1", "topic")]
    assert hub.metric("ankang_ingest_messages_total", outcome="foreign") == 2
    pub.close()


def test_a_message_over_the_brokers_size_limit_never_reaches_the_hub(broker, database, hub_factory):
    """The project's broker refuses what the contract would refuse anyway (256 KiB), so the
    hub neither holds it nor has to quarantine a copy of it."""
    register(database, [("d1", "smoke_detector")])
    hub_factory(database)
    big = Publisher(broker.url, client_id="big-sender")
    t = now_ms() - 10_000
    big.publish(
        "ankang/v1/d1/event", b'{"ts":%d,"seq":1,"event":"test","detail":{"x":"%s"}}' % (t, b"x" * 300_000)
    )
    good = Publisher(broker.url)
    good.publish("ankang/v1/d1/telemetry", telemetry(2, t + 1000, temp_c=21.0))
    good.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 1, 20, "the good message")
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    assert scalar(database, "SELECT count(*) FROM events") == 0
    good.close()
    big.close()


# -- what the database refuses, isolated -------------------------------------------------


def _run(database: str, steps: Any, *, engine: bool = False) -> Any:
    async def run() -> Any:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            eng = None
            if engine:
                eng = DetectionEngine(registry.get, None)
                eng.restore(registry.all(), [], {}, time.time())
            return await steps(Ingestor(db, registry, HubMetrics(), engine=eng))

    return asyncio.run(run())


def _refuse(database: str, table: str) -> None:
    """A rule the database enforces and validation does not know: rows whose detail has a
    key "refuse" are refused, as a trigger or a new constraint might refuse them."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuse_marked CHECK (NOT (detail ? 'refuse'))")


def test_sequence_positions_move_only_on_commit(database):
    """seq 5000, an hour ahead, refused by the database; then seq 10-14. Judged against a
    position that was never stored, 10-14 would be quarantined as out of order."""
    register(database, [("d1", "smoke_detector")])
    _refuse(database, "events")
    now = time.time()
    refused = body(5000, now + 3600, event="test", detail={"refuse": 1})

    async def steps(ingest: Ingestor) -> tuple[Any, ...]:
        same_batch = await ingest.prepare(
            [inbound("ankang/v1/d1/event", refused, 1)]
            + [
                inbound("ankang/v1/d1/telemetry", body(s, now - 100 + s, metrics={"temp_c": 20}), s)
                for s in (10, 11)
            ]
        )
        await ingest.commit(same_batch)
        after_same = ingest.position("d1")
        # and across batches: the next one is prepared while the refused one is uncommitted
        first = await ingest.prepare(
            [inbound("ankang/v1/d1/event", body(6000, now + 7200, event="test", detail={"refuse": 2}), 20)]
        )
        second = await ingest.prepare(
            [
                inbound("ankang/v1/d1/telemetry", body(s, now - 100 + s, metrics={"temp_c": 20}), s)
                for s in (12, 13, 14)
            ]
        )
        await ingest.commit(first)
        await ingest.commit(second)
        return after_same, ingest.position("d1"), second

    after_same, position, second = _run(database, steps)
    assert after_same is not None and after_same[0] == 11
    assert position is not None and position[0] == 14
    assert rows(database, "SELECT seq FROM messages ORDER BY seq") == [(10,), (11,), (12,), (13,), (14,)]
    assert rows(
        database, "SELECT kind, reason LIKE 'rejected by the database: CheckViolation%' FROM quarantine"
    ) == [
        ("storage", True),
        ("storage", True),
    ]
    assert second.quarantined == []


def test_a_refused_detection_is_quarantined_alone_and_the_rest_commit(database):
    """An SOS detection the database refuses (it copies the press's detail) is set aside
    alone: the fire of another home in the same batch, and every message, are stored."""
    apply(database, TWO_HOMES)
    _refuse(database, "detections")
    now = time.time()

    async def steps(ingest: Ingestor) -> Any:
        batch = [
            inbound("ankang/v1/sos-a/event", body(1, now - 2, event="sos_pressed", detail={"refuse": 1}), 1),
            inbound("ankang/v1/smoke-b/event", body(1, now - 1, event="smoke_alarm"), 2),
            inbound("ankang/v1/mat-b/telemetry", body(1, now - 1, metrics={"occupied": 1, "hr_bpm": 60}), 3),
        ]
        return await ingest.commit(await ingest.prepare(batch))

    result = _run(database, steps, engine=True)
    assert result is not None and result.stored == 3
    assert [k for k, *_ in detections(database)] == ["fire"]
    assert rows(database, "SELECT topic, device_id, kind FROM quarantine") == [
        ("detection/sos", "sos-a", "detection")
    ]
    assert scalar(database, "SELECT count(*) FROM events") == 2


class _Flaky:
    """The detection engine (a seam the ingest pipeline already has: it is passed in),
    made to fail on one device's messages as a bug of the hub's own would."""

    def __init__(self, engine: DetectionEngine, device_id: str) -> None:
        self._engine = engine
        self._device_id = device_id
        self.calls = 0

    def feed(self, items: Sequence[tuple[Any, float]]) -> Output:
        self.calls += 1
        if any(m.device_id == self._device_id for m, _ in items):
            raise ValueError(f"cannot handle {self._device_id}")
        return self._engine.feed(items)


def test_a_message_that_cannot_be_handled_is_dead_lettered_and_its_neighbours_go_on(database):
    apply(database, TWO_HOMES)
    now = time.time()

    async def steps() -> tuple[int, list[Any]]:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            real = DetectionEngine(registry.get, None)
            real.restore(registry.all(), [], {}, now)
            flaky = _Flaky(real, "sos-a")
            ingest = Ingestor(db, registry, HubMetrics(), engine=flaky)  # type: ignore[arg-type]
            batch = [
                inbound("ankang/v1/smoke-b/event", body(1, now - 3, event="smoke_alarm"), 1),
                inbound("ankang/v1/sos-a/event", body(1, now - 2, event="sos_pressed"), 2),
                inbound("ankang/v1/mat-b/telemetry", body(1, now - 1, metrics={"occupied": 1}), 3),
            ]
            with pytest.raises(ValueError, match="cannot handle"):
                await ingest.prepare(batch)
            parts = await ingest.prepare_isolated(batch)
            for part in parts:
                await ingest.commit(part)
            return flaky.calls, parts

    calls, parts = asyncio.run(steps())
    assert calls == 1 + 1 + MAX_ATTEMPTS + 1  # the batch; then smoke-b, sos-a three times, mat-b
    assert [len(p.inbound) for p in parts] == [1, 1, 1]
    assert rows(database, "SELECT device_id FROM messages ORDER BY device_id") == [("mat-b",), ("smoke-b",)]
    assert rows(database, "SELECT topic, device_id, stage, attempts, reason FROM dead_letters") == [
        ("ankang/v1/sos-a/event", "sos-a", "prepare", MAX_ATTEMPTS, "ValueError: cannot handle sos-a")
    ]
    assert [k for k, *_ in detections(database)] == ["fire"]


def test_quarantine_keeps_a_bounded_excerpt_and_a_hash(database):
    register(database, [("d1", "smoke_detector")])
    payload = b'{"ts": 1, "seq": 1, "metrics": {"temp_c": 20}, "pad": "' + b"x" * 200_000 + b'"}'

    async def steps(ingest: Ingestor) -> Any:
        return await ingest.commit(await ingest.prepare([inbound("ankang/v1/d1/telemetry", payload, 1)]))

    _run(database, steps)
    excerpt, size, digest = rows(database, "SELECT payload, payload_size, payload_sha256 FROM quarantine")[0]
    assert len(excerpt) == PAYLOAD_EXCERPT_BYTES and bytes(excerpt) == payload[:PAYLOAD_EXCERPT_BYTES]
    assert (size, bytes(digest)) == (len(payload), hashlib.sha256(payload).digest())


def test_reasons_echo_device_text_escaped():
    from devices import Rejected, decode

    raw = b'{"ts": %d, "seq": 1, "\\ud83d\\ude00\\u0007": 1, "\\u0000": 2}' % now_ms()
    out = decode("ankang/v1/d1/telemetry", raw)
    assert isinstance(out, Rejected)
    assert out.reason == "unknown field(s): \\x00, \U0001f600\\x07"
    assert json.dumps(out.reason).isascii()
    assert Rejected("t", b"", "a\x00b\ud800").reason == "a\\x00b\\ud800"
