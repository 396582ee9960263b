"""Two ingest lanes: events and statuses never wait behind bulk telemetry (docs/devices.md).

Real Mosquitto, real TimescaleDB, the hub as a process.
"""

from __future__ import annotations

import time

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
"""
WEARABLES = 100


@pytest.mark.slow
def test_a_fire_behind_a_100k_bulk_backlog_is_detected_before_the_backlog_drains(
    broker, database, hub_factory
):
    apply(database, HOME)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (id, kind, facility_id, heartbeat_s) VALUES (%s, 'bed_sensor', 'care-1', 600)",
            [(f"mat-{i}",) for i in range(WEARABLES)],
        )
    hub = hub_factory(database)
    assert set(hub.health()["lanes"]) == {"urgent", "bulk"}
    assert hub.stop() == 0  # both sessions persist: the broker queues for them meanwhile
    pub = Publisher(broker.url)
    t0 = time.time() - 3600
    for seq in range(1, 100_000 // WEARABLES + 1):
        for i in range(WEARABLES):
            pub.publish(f"ankang/v1/mat-{i}/telemetry", telemetry(seq, int((t0 + seq) * 1000), hr_bpm=60.0))
    pub.publish("ankang/v1/smoke-101/event", body(1, time.time(), event="smoke_alarm"))
    pub.wait_all(timeout=180)
    again = hub_factory(database)
    wait_until(
        lambda: any(k == "fire" for k, *_ in detections(database)),
        30,
        f"the fire (hub log: {again.log()[-1500:]})",
        interval=0.05,
    )
    stored_at_fire = scalar(database, "SELECT count(*) FROM messages WHERE device_id LIKE 'mat-%%'")
    assert stored_at_fire < 50_000, f"the fire waited for {stored_at_fire} bulk messages"
    # and the bulk lane loses nothing, and stores nothing twice
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages WHERE device_id LIKE 'mat-%%'") == 100_000,
        240,
        "the whole backlog",
    )
    assert rows(database, "SELECT device_id, seq FROM messages GROUP BY 1, 2 HAVING count(*) > 1") == []
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
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


def test_one_lane_when_the_urgent_session_has_no_account_of_its_own(broker, database, hub_factory):
    """With an account in ANKANG_MQTT_URL and none for the urgent lane, a second session
    would fight the first over one client id: the hub runs one lane and says so."""
    hub = hub_factory(database, ANKANG_URGENT_LANE="false")
    assert set(hub.health()["lanes"]) == {"all"}
