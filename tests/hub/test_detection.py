"""Detection in the running hub: real Mosquitto, real PostgreSQL, the hub as a process."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import psycopg

from devices.registry import Registry, parse_facility_yaml
from hub.detectors.base import Detection
from hub.detectors.engine import Found, Output
from hub.ingest import Ingestor, add_findings
from hub.safety import alarm_test_compliance, fire_coverage
from hub.storage import Database, StoreBatch
from tests.support import Publisher, rows, scalar, wait_until

FACILITY = """
facilities:
  - id: care-1
    tz: Asia/Shanghai
    rooms:
      - id: "101"
        beds: [{id: A, resident: {id: R1, name: 王秀英}}]
      - id: "102"
        beds: [{id: A, resident: {id: R2}}]
      - id: kitchen
        kind: kitchen
devices:
  - {id: sos-1, kind: sos_button, facility: care-1, room: "101", resident: R1}
  - {id: smoke-101, kind: smoke_detector, facility: care-1, room: "101"}
  - {id: smoke-102, kind: smoke_detector, facility: care-1, room: "102"}
  - {id: mat-1, kind: bed_sensor, facility: care-1, room: "101", bed: A, resident: R1}
  - {id: fast-1, kind: door_contact, facility: care-1, room: "102", heartbeat_s: 2}
  - {id: will-1, kind: water_leak, facility: care-1, room: "102", heartbeat_s: 3600}
"""


def apply(url: str, text: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await Registry(conn).apply(parse_facility_yaml(text))

    asyncio.run(run())


def body(seq: int, ts: float, **fields: object) -> bytes:
    return orjson.dumps({"ts": int(ts * 1000), "seq": seq, **fields})


def detections(url: str) -> list[tuple]:
    return rows(
        url, "SELECT kind, level, subject, facility_id, room_id, resident_id, device_id FROM detections"
    )


def test_detections_end_to_end(broker, database, hub_factory):
    apply(database, FACILITY)
    hub = hub_factory(database, ANKANG_DETECT_TICK_S="0.2", ANKANG_DETECT_SLOW_TICK_S="0.5")
    pub = Publisher(broker.url)
    now = time.time()
    try:
        with psycopg.connect(database, autocommit=True) as listener:
            listener.execute("LISTEN ankang_detections")
            pub.publish("ankang/v1/sos-1/event", body(1, now, event="sos_pressed"))
            pub.wait_all()
            notes = list(listener.notifies(timeout=10, stop_after=1))
            assert notes, "no NOTIFY ankang_detections after an SOS"
        wait_until(
            lambda: ("sos", "alarm", "sos-1", "care-1", "101", "R1", "sos-1") in detections(database),
            10,
            "sos",
        )

        # a detector's own alarm is a fire in its room at once
        pub.publish(
            "ankang/v1/smoke-101/event", body(1, now, event="smoke_alarm", detail={"obscuration_pct_m": 5})
        )
        pub.wait_all()
        wait_until(
            lambda: any(
                k == "fire" and lv == "alarm" and s == "care-1/101" for k, lv, s, *_ in detections(database)
            ),
            10,
            "fire in room 101",
        )

        # a bed exit at night, in the facility's time zone
        night = datetime.combine(
            date.today() - timedelta(days=1), datetime.min.time(), ZoneInfo("Asia/Shanghai")
        )
        t = night.replace(hour=23).timestamp()
        for i in range(6):
            pub.publish(
                "ankang/v1/mat-1/telemetry", body(1 + i, t + 5 * i, metrics={"occupied": 1, "hr_bpm": 60})
            )
        pub.publish("ankang/v1/mat-1/telemetry", body(7, t + 30, metrics={"occupied": 0}))
        pub.wait_all()
        wait_until(
            lambda: ("bed_exit", "alarm") in [(k, lv) for k, lv, *_ in detections(database)], 10, "bed exit"
        )

        # silence past heartbeat × 1.5 is offline within a tick or two of the deadline
        pub.publish("ankang/v1/fast-1/telemetry", body(1, time.time(), metrics={"contact": 1}))
        pub.wait_all()
        wait_until(
            lambda: ("device_offline", "alarm", "fast-1") in [r[:3] for r in detections(database)],
            10,
            "offline",
        )
        late = scalar(
            database,
            "SELECT extract(epoch FROM detected_at - t) FROM detections WHERE kind = 'device_offline'"
            " AND subject = 'fast-1'",
        )
        assert 0 <= float(late) < 2.0, f"offline detected {late} s after the deadline"
        # and back online
        pub.publish("ankang/v1/fast-1/telemetry", body(2, time.time(), metrics={"contact": 1}))
        pub.wait_all()
        wait_until(
            lambda: ("device_online", "clear", "fast-1") in [r[:3] for r in detections(database)],
            10,
            "online",
        )

        # a last will is offline at once
        pub.publish("ankang/v1/will-1/status", body(1, time.time(), state="online", heartbeat_s=3600))
        pub.publish("ankang/v1/will-1/status", body(0, time.time() - 100, state="offline"))
        pub.wait_all()
        wait_until(
            lambda: ("device_offline", "alarm", "will-1") in [r[:3] for r in detections(database)], 10, "will"
        )
        assert scalar(database, "SELECT online FROM device_health WHERE device_id = 'will-1'") is False
    finally:
        pub.close()
    # each happened once
    kinds = [(k, lv, s) for k, lv, s, *_ in detections(database)]
    assert len(kinds) == len(set(kinds)), kinds
    assert hub.healthy()


def test_detections_survive_a_kill_and_are_not_duplicated(broker, database, hub_factory):
    apply(database, FACILITY)
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    now = time.time()
    try:
        for i in range(20):
            pub.publish("ankang/v1/sos-1/event", body(i + 1, now + i, event="sos_pressed"))
        pub.wait_all()
        wait_until(
            lambda: scalar(database, "SELECT count(*) FROM detections WHERE kind = 'sos'") == 20, 15, "20 sos"
        )
        hub.kill()
        for i in range(20, 30):
            pub.publish("ankang/v1/sos-1/event", body(i + 1, now + i, event="sos_pressed"))
        pub.wait_all()
        hub.start()
        wait_until(
            lambda: scalar(database, "SELECT count(*) FROM detections WHERE kind = 'sos'") == 30, 20, "30 sos"
        )
    finally:
        pub.close()
    assert scalar(database, "SELECT count(DISTINCT key) FROM detections WHERE kind = 'sos'") == 30


def test_the_same_findings_written_twice_are_stored_once(database):
    apply(database, FACILITY)
    out = Output(
        found=[
            Found(
                Detection("sos", "alarm", 1_780_000_000.5, "sos-1", device_id="sos-1"), "care-1", "101", "R1"
            )
        ]
    )

    async def run() -> None:
        async with Database(database) as db:
            for _ in range(2):
                batch = StoreBatch()
                add_findings(batch, out)
                await db.write_findings(batch)

    asyncio.run(run())
    assert scalar(database, "SELECT count(*) FROM detections") == 1


def test_coverage_and_monthly_tests(database):
    apply(database, FACILITY)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device_health (device_id, online, since) VALUES ('smoke-101', true, now()),"
            " ('smoke-102', true, now())"
        )
        conn.execute("UPDATE device_health SET fault = true WHERE device_id = 'smoke-102'")
        # two tests this month from smoke-101, one from smoke-102 last month
        this_month = datetime.now(ZoneInfo("Asia/Shanghai")).replace(day=1, hour=12)
        conn.execute(
            "INSERT INTO events (device_id, ts, seq, event) VALUES ('smoke-101', %s, 1, 'test'),"
            " ('smoke-101', %s, 2, 'test'), ('smoke-102', %s, 3, 'test')",
            (this_month, this_month + timedelta(hours=1), this_month - timedelta(days=3)),
        )

    async def run() -> tuple:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            month = datetime.now(ZoneInfo("Asia/Shanghai")).date()
            return await fire_coverage(conn), await alarm_test_compliance(conn, month)

    coverage, tests = asyncio.run(run())
    (cov,) = coverage
    assert (cov.rooms, cov.covered, cov.uncovered_rooms) == (3, 1, ("102", "kitchen"))
    (tc,) = tests
    assert (tc.detectors, tc.detectors_tested, tc.tests, tc.compliant) == (2, 1, 2, True)


def test_a_missing_fall_model_turns_off_fall_detection_only(broker, database, hub_factory, tmp_path):
    apply(database, FACILITY)
    hub = hub_factory(database, ANKANG_FALL_MODEL=str(tmp_path / "missing.skops"))
    assert hub.health()["fall_detection"] is False
    pub = Publisher(broker.url)
    try:
        pub.publish("ankang/v1/sos-1/event", body(1, time.time(), event="sos_pressed"))
        pub.wait_all()
        wait_until(
            lambda: scalar(database, "SELECT count(*) FROM detections WHERE kind = 'sos'") == 1, 10, "sos"
        )
    finally:
        pub.close()
    assert "fall detection is OFF" in hub.log()


def test_findings_with_nan_and_stale_health_are_stored_safely(database):
    from hub.detectors.health import HealthRow

    apply(database, FACILITY)
    t = 1_780_000_000.0
    odd = Detection("fault", "warning", t, "sos-1", device_id="sos-1", detail={"reading": float("nan")})
    newer = HealthRow("sos-1", online=True, since=t + 60, last_seen=t + 60)
    stale = HealthRow("sos-1", online=False, since=t, last_seen=t)

    async def run() -> None:
        async with Database(database) as db:
            for health in ([newer], [stale]):  # the stale state arrives second
                batch = StoreBatch()
                add_findings(batch, Output(found=[Found(odd, "care-1", "101", "R1")], health=health))
                await db.write_findings(batch)

    asyncio.run(run())
    assert rows(database, "SELECT detail FROM detections") == [({"reading": None},)]
    assert scalar(database, "SELECT online FROM device_health WHERE device_id = 'sos-1'") is True


def test_a_redelivered_last_will_is_not_detected_again(database):
    from hub.detectors.engine import DetectionEngine
    from hub.metrics import HubMetrics
    from hub.mqtt import Inbound
    from hub.registry import RegistryCache

    apply(database, FACILITY)
    now = time.time()
    will = body(0, now - 3600, state="offline")

    def inbound(topic: str, payload: bytes, mid: int) -> Inbound:
        return Inbound(topic, payload, mid, 1, time.time(), 1)

    async def run() -> tuple[int, list]:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            engine = DetectionEngine(registry.get, None)
            engine.restore(registry.all(), [], {}, now)
            ingest = Ingestor(db, registry, HubMetrics(), engine=engine)
            online = inbound("ankang/v1/will-1/status", body(5, now, state="online", heartbeat_s=3600), 1)
            first = await ingest.prepare([online, inbound("ankang/v1/will-1/status", will, 2)])
            await ingest.commit(first)
            back = inbound("ankang/v1/will-1/status", body(6, now + 5, state="online", heartbeat_s=3600), 3)
            await ingest.commit(await ingest.prepare([back]))
            again = await ingest.prepare(
                [inbound("ankang/v1/will-1/status", will, 4)]
            )  # the broker resends it
            await ingest.commit(again)
            return again.redelivered, [
                f.detection.kind for f in (again.findings.found if again.findings else [])
            ]

    redelivered, kinds = asyncio.run(run())
    assert redelivered == 1 and kinds == []
    assert rows(database, "SELECT kind FROM detections WHERE subject = 'will-1' ORDER BY t") == [
        ("device_offline",),
        ("device_online",),
    ]
