"""Two ingest lanes: events and statuses never wait behind bulk telemetry (docs/devices.md).

Real Mosquitto, real TimescaleDB, the hub as a process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.hub.test_detection import apply, body, detections
from tests.support import Publisher, rows, scalar, telemetry, wait_until

HOME = """
facilities:
  - id: care-1
    tz: Asia/Shanghai
    rooms:
      - id: "101"
      - id: "102"
devices:
  - {id: smoke-101, kind: smoke_detector, facility: care-1, room: "101"}
  - {id: smoke-102, kind: smoke_detector, facility: care-1, room: "102"}
  - {id: sos-102, kind: sos_button, facility: care-1, room: "102"}
  - {id: band-101, kind: wearable, facility: care-1, room: "101", heartbeat_s: 60}
  - {id: band-102, kind: wearable, facility: care-1, room: "102", heartbeat_s: 60}
"""
WEARABLES = 100


def _fillers(database: str, n: int, heartbeat_s: int = 600) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (id, kind, facility_id, heartbeat_s)"
            " VALUES (%s, 'bed_sensor', 'care-1', %s)",
            [(f"mat-{i}", heartbeat_s) for i in range(n)],
        )


def _backlog(t0: float, blocks: int) -> Iterator[tuple[str, bytes]]:
    """Bed-sensor telemetry, ``blocks`` messages for each of the WEARABLES fillers, an hour old."""
    for seq in range(1, blocks // WEARABLES + 1):
        for i in range(WEARABLES):
            yield f"ankang/v1/mat-{i}/telemetry", telemetry(seq, int((t0 + seq) * 1000), hr_bpm=60.0)


@pytest.mark.slow
def test_fire_sos_and_a_reported_fall_behind_a_100k_bulk_backlog_come_first(broker, database, hub_factory):
    """A hub back from a stop finds 100,000 blocks queued for it in the broker, then a smoke
    alarm, an SOS and a fall that a wearable reported. The three are detected before the
    backlog has drained; the technical alarm opens while the hub is behind and clears once
    it has caught up; the backlog is stored once, all of it."""
    apply(database, HOME)
    _fillers(database, WEARABLES)
    hub = hub_factory(database, ANKANG_LAG_ALARM_S="5")
    assert set(hub.health()["lanes"]) == {"urgent", "bulk"}
    assert hub.stop() == 0  # both sessions persist: the broker queues for them meanwhile
    pub = Publisher(broker.url)
    pub.publish_many(_backlog(time.time() - 3600, 100_000))
    now = time.time()
    pub.publish("ankang/v1/smoke-101/event", body(1, now, event="smoke_alarm"))
    pub.publish("ankang/v1/sos-102/event", body(1, now, event="sos_pressed"))
    pub.publish("ankang/v1/band-101/event", body(1, now, event="fall", detail={"confidence": 0.9}))
    pub.wait_all()
    again = hub_factory(database, ANKANG_LAG_ALARM_S="5")
    urgent = {"fire", "sos", "fall"}
    wait_until(
        lambda: urgent <= {k for k, level, *_ in detections(database) if level == "alarm"},
        30,
        f"fire, SOS and the reported fall (hub log: {again.log()[-1500:]})",
        interval=0.05,
    )
    stored_then = scalar(database, "SELECT count(*) FROM messages WHERE device_id LIKE 'mat-%%'")
    assert stored_then < 50_000, f"the urgent events waited for {stored_then} bulk messages"
    fall = rows(database, "SELECT confidence, detail FROM detections WHERE kind = 'fall'")
    assert fall == [(pytest.approx(0.9), {"source": "device", "confidence": 0.9})]
    # the hub says it is behind, by the devices' clocks: an hour, not the moments since receipt
    wait_until(
        lambda: rows(database, "SELECT level, facility_id FROM detections WHERE kind = 'ingest_delayed'"),
        15,
        "the technical alarm",
    )
    opened = rows(
        database,
        "SELECT level, detail FROM detections WHERE kind = 'ingest_delayed' ORDER BY id LIMIT 1",
    )[0]
    assert opened[0] == "warning", "fire, gas and SOS are not delayed: only bulk data is"
    assert opened[1]["lanes"]["bulk"] > 1000 and opened[1]["urgent_delayed"] is False
    # the bulk lane loses nothing and stores nothing twice
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages WHERE device_id LIKE 'mat-%%'") == 100_000,
        240,
        "the whole backlog",
    )
    assert rows(database, "SELECT device_id, seq FROM messages GROUP BY 1, 2 HAVING count(*) > 1") == []
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    wait_until(
        lambda: (
            scalar(
                database, "SELECT count(*) FROM detections WHERE kind = 'ingest_delayed' AND level = 'clear'"
            )
            == 1
        ),
        15,
        "the technical alarm to clear after the catch-up",
    )
    assert again.health()["lag_alarm"] is None
    pub.close()


@pytest.mark.slow
def test_a_last_will_is_not_undone_by_older_telemetry_still_queued(broker, database, hub_factory):
    """The will comes through the urgent lane while the device's last blocks still wait in
    the bulk lane behind a backlog. Those blocks were sent before the connection dropped:
    they are stored, and the device stays offline."""
    apply(database, HOME)
    _fillers(database, WEARABLES)
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    now = time.time()
    pub.publish("ankang/v1/band-101/status", body(1, now - 120, state="online"))
    pub.publish("ankang/v1/band-101/telemetry", telemetry(2, int((now - 60) * 1000), hr_bpm=70.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 2, 20, "the device online")
    assert hub.stop() == 0
    pub.publish_many(_backlog(now - 3600, 30_000))
    for seq in range(3, 13):  # its last blocks, sent just before it dropped off
        pub.publish("ankang/v1/band-101/telemetry", telemetry(seq, int((now - 15 + seq) * 1000), hr_bpm=70.0))
    # the will, composed when the device connected
    pub.publish("ankang/v1/band-101/status", body(0, now - 119, state="offline"))
    pub.wait_all()
    hub_factory(database)
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages WHERE device_id = 'band-101'") == 13,
        120,
        "the device's queued blocks",
    )
    kinds = [k for k, _l, _s, _f, _r, _res, device in detections(database) if device == "band-101"]
    assert "device_offline" in kinds
    assert "device_online" not in kinds, "older telemetry brought a device back that had dropped off"
    assert scalar(database, "SELECT online FROM device_health WHERE device_id = 'band-101'") is False
    # and when it comes back, it is back
    pub.publish("ankang/v1/band-101/status", body(14, time.time(), state="online"))
    pub.wait_all()
    wait_until(
        lambda: scalar(database, "SELECT online FROM device_health WHERE device_id = 'band-101'") is True,
        20,
        "the device back online",
    )
    pub.close()


@pytest.mark.slow
def test_a_device_is_not_offline_because_its_telemetry_waits_in_the_bulk_lane(broker, database, hub_factory):
    """A wearable is due every second (offline after 1.5 s without a message). Its
    blocks sit in a backlog that takes far longer than that to drain, while the urgent lane
    is idle and up to date: silence is the hub's, not the device's."""
    apply(database, HOME)
    _fillers(database, WEARABLES)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE devices SET heartbeat_s = 1 WHERE id = 'band-102'")
    hub = hub_factory(database, ANKANG_DETECT_TICK_S="0.2")
    assert hub.stop() == 0
    pub = Publisher(broker.url)
    now = time.time()
    seq = 0

    def interleaved() -> Iterator[tuple[str, bytes]]:
        nonlocal seq
        for n, message in enumerate(_backlog(now - 3600, 60_000)):
            yield message
            if n % 1000 == 0:
                seq += 1
                yield (
                    "ankang/v1/band-102/telemetry",
                    telemetry(seq, int((now - 60 + seq) * 1000), hr_bpm=70.0),
                )

    pub.publish_many(interleaved())
    started = time.monotonic()
    hub_factory(database, ANKANG_DETECT_TICK_S="0.2")
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages WHERE device_id LIKE 'mat-%%'") == 60_000,
        240,
        "the backlog",
    )
    assert time.monotonic() - started > 1.5, "the backlog drained too fast to show anything"
    kinds = [k for k, _l, _s, _f, _r, _res, device in detections(database) if device == "band-102"]
    assert "device_offline" not in kinds
    pub.close()


def test_a_counter_shared_across_lanes_is_judged_per_lane(broker, database, hub_factory):
    """A smoke detector numbers its telemetry and its events with one counter. The urgent
    lane gets ahead of the bulk lane; neither lane's messages are out of order for that."""
    apply(database, HOME)
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    now = time.time()
    seq = 0
    for i in range(40):
        seq += 1
        pub.publish("ankang/v1/smoke-102/telemetry", telemetry(seq, int((now - 60 + i) * 1000), temp_c=22.0))
        if i % 10 == 9:
            seq += 1
            pub.publish("ankang/v1/smoke-102/event", body(seq, now - 60 + i + 0.5, event="test"))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == seq, 30, f"all {seq} messages")
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    assert scalar(database, "SELECT count(*) FROM events") == 4
    # a restarted hub loads each lane's position from its own channels: redelivered or late
    # messages of the other lane are not judged against it
    assert hub.stop() == 0
    hub_factory(database)
    seq += 1
    pub.publish("ankang/v1/smoke-102/event", body(seq, now, event="test"))
    pub.publish("ankang/v1/smoke-102/telemetry", telemetry(seq + 1, int(now * 1000) + 500, temp_c=22.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == seq + 1, 30, "the last two")
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    pub.close()


def test_one_lane_when_asked(broker, database, hub_factory):
    """ANKANG_URGENT_LANE=false: one session for everything, as before the lanes."""
    hub = hub_factory(database, ANKANG_URGENT_LANE="false")
    assert set(hub.health()["lanes"]) == {"all"}
