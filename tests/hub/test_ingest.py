"""The spine end to end: paho → Mosquitto → ankang hub → TimescaleDB, on real services."""

from __future__ import annotations

import orjson

from tests.support import Publisher, now_ms, register, rows, scalar, telemetry, wait_until, waveform


def test_messages_arrive_exactly_once(broker, database, hub_factory):
    devices = [(f"w{i}", "wearable") for i in range(5)] + [(f"s{i}", "smoke_detector") for i in range(5)]
    register(database, devices)
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t0 = now_ms() - 60_000
    for seq in range(1, 41):
        for i in range(5):
            pub.publish(f"ankang/v1/w{i}/telemetry", waveform(seq, t0 + seq * 1000))
            pub.publish(f"ankang/v1/s{i}/telemetry", telemetry(seq, t0 + seq * 1000, temp_c=22.0, co_ppm=1.0))
    pub.publish("ankang/v1/s0/event", orjson.dumps({"ts": t0 + 50_000, "seq": 41, "event": "smoke_alarm"}))
    pub.publish(
        "ankang/v1/s1/status",
        orjson.dumps({"ts": t0 + 50_000, "seq": 41, "state": "online", "fw": "1.2.3", "heartbeat_s": 600}),
    )
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 402, 30, "402 messages stored")

    assert rows(database, "SELECT device_id, seq FROM messages GROUP BY 1, 2 HAVING count(*) > 1") == []
    assert scalar(database, "SELECT count(*) FROM waveforms") == 200
    assert scalar(database, "SELECT sum(n) FROM waveforms") == 200 * 50
    # each smoke message carries two metrics, each waveform one (hr_bpm)
    assert scalar(database, "SELECT count(*) FROM readings WHERE metric IN ('temp_c', 'co_ppm')") == 400
    assert scalar(database, "SELECT count(*) FROM readings WHERE metric = 'hr_bpm'") == 200
    assert rows(database, "SELECT device_id, event FROM events") == [("s0", "smoke_alarm")]
    assert rows(database, "SELECT device_id, state, fw, heartbeat_s FROM statuses") == [
        ("s1", "online", "1.2.3", 600)
    ]
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    # the raw samples round-trip exactly (float32 little-endian, n x 3)
    acc = scalar(database, "SELECT acc FROM waveforms WHERE device_id = 'w0' AND seq = 1")
    import numpy as np

    arr = np.frombuffer(acc, dtype="<f4").reshape(-1, 3)
    assert arr.shape == (50, 3)
    assert abs(float(arr[3, 0]) - 0.03) < 1e-6
    assert hub.metric("ankang_ingest_messages_total", outcome="stored") == 402
    pub.close()


def test_bad_input_is_quarantined_with_reasons_and_good_input_still_flows(broker, database, hub_factory):
    register(database, [("d1", "smoke_detector"), ("d2", "bed_sensor")])
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 10_000
    bad = {
        "ankang/v1/d1/telemetry": b"{not json",
        "ankang/v1/d2/telemetry": orjson.dumps({"ts": t, "seq": "7", "metrics": {"hr_bpm": 60}}),
        "ankang/v1/d1/event": orjson.dumps({"ts": t, "seq": 3, "event": "explosion"}),
        "ankang/v1/ghost/telemetry": telemetry(1, t),
        "ankang/v1/d1/diagnostics": telemetry(1, t),
        "ankang/v2/d1/telemetry": telemetry(1, t),
    }
    pub.publish("ankang/v1/d1/telemetry", telemetry(1, t, temp_c=10_000.0))
    for topic, payload in bad.items():
        pub.publish(topic, payload)
    pub.publish("ankang/v1/d2/telemetry", telemetry(1, t, hr_bpm=64.0, rr_rpm=14.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM quarantine") >= 6, 20, "quarantine records")
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 1, 20, "the good message")
    reasons = dict(
        rows(database, "SELECT topic || ' ' || convert_from(payload, 'UTF8'), reason FROM quarantine")
    )
    text = "\n".join(reasons.values())
    assert "malformed JSON" in text
    assert "seq must be an integer" in text
    assert "event must be one of" in text
    assert "unknown device ghost" in text
    assert "unknown channel 'diagnostics'" in text
    assert "temp_c=10000 outside plausible range" in text
    # ankang/v2 is not subscribed to at all: the hub never sees it
    assert not any(k.startswith("ankang/v2") for k in reasons)
    assert scalar(database, "SELECT payload FROM quarantine WHERE reason LIKE 'malformed%'") == b"{not json"
    assert hub.alive()
    assert hub.metric("ankang_quarantine_total", kind="json") == 1
    assert hub.metric("ankang_quarantine_total", kind="unknown_device") == 1
    pub.close()


def test_sequence_rules(broker, database, hub_factory):
    register(database, [("d1", "bed_sensor")])
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 100_000
    sends = [
        (1, t + 1000),  # new
        (2, t + 2000),  # new
        (2, t + 2000),  # exact duplicate: dropped silently (idempotent)
        (2, t + 2500),  # same seq, newer ts: duplicate seq -> quarantine
        (1, t + 500),  # late and older: out of order -> quarantine
        (5, t + 5000),  # gap of 2: accepted, gap counted
        (0, t + 9000),  # reboot: counter restarts with a newer ts -> accepted
        (1, t + 10000),  # after reboot
    ]
    for seq, ts in sends:
        pub.publish("ankang/v1/d1/telemetry", telemetry(seq, ts, hr_bpm=60.0))
        pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 5, 20, "5 accepted messages")
    wait_until(lambda: scalar(database, "SELECT count(*) FROM quarantine") == 2, 20, "2 quarantined")
    stored = [r[0] for r in rows(database, "SELECT seq FROM messages ORDER BY ts")]
    assert stored == [1, 2, 5, 0, 1]
    reasons = sorted(r[0] for r in rows(database, "SELECT reason FROM quarantine"))
    assert reasons[0].startswith("duplicate seq 2")
    assert reasons[1].startswith("out-of-order seq 1")
    assert hub.metric("ankang_seq_gaps_total") == 2
    assert hub.metric("ankang_ingest_messages_total", outcome="redelivered") == 1
    pub.close()


def test_conflict_not_foreseen_falls_back_to_staged_insert(broker, database, hub_factory):
    """A key already stored that the sequence state could not predict is still stored once."""
    register(database, [("d1", "bed_sensor")])
    t = now_ms() - 100_000
    with __import__("psycopg").connect(database, autocommit=True) as conn:
        # newest stored is seq 3 at t+10s; an older (t+5s, seq 5) row also exists
        conn.execute(
            "INSERT INTO messages (device_id, ts, seq, channel, received_at) VALUES "
            "('d1', to_timestamp(%s / 1000.0), 3, 'telemetry', now()),"
            "('d1', to_timestamp(%s / 1000.0), 5, 'telemetry', now())",
            (t + 10_000, t + 5_000),
        )
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    pub.publish("ankang/v1/d1/telemetry", telemetry(5, t + 5_000, hr_bpm=61.0))  # seq 5 > 3: looks new
    pub.publish("ankang/v1/d1/telemetry", telemetry(6, t + 11_000, hr_bpm=62.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 3, 20, "3 messages")
    assert rows(database, "SELECT seq, count(*) FROM messages GROUP BY 1 ORDER BY 1") == [
        (3, 1),
        (5, 1),
        (6, 1),
    ]
    # only the new message's reading was written
    assert rows(database, "SELECT value FROM readings") == [(62.0,)]
    assert hub.metric("ankang_ingest_messages_total", outcome="redelivered") == 1
    pub.close()


def test_registry_changes_reach_a_running_hub(broker, database, hub_factory):
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 10_000
    pub.publish("ankang/v1/late-1/telemetry", telemetry(1, t))
    pub.wait_all()
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM quarantine") == 1, 20, "quarantined unknown device"
    )
    register(database, [("late-1", "water_leak")])
    # the negative cache lasts a few seconds; after the NOTIFY the device is known at once
    wait_until(
        lambda: (
            (
                pub.publish("ankang/v1/late-1/telemetry", telemetry(2 + int(now_ms() % 1_000_000), now_ms())),
                pub.wait_all(),
                scalar(database, "SELECT count(*) FROM messages"),
            )[-1]
            >= 1
        ),
        20,
        "messages from the newly registered device",
        interval=0.5,
    )
    assert hub.alive()
    pub.close()


def test_a_stale_last_will_is_still_stored(broker, database, hub_factory):
    register(database, [("d1", "door_contact")])
    hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 100_000
    will = orjson.dumps({"ts": t, "seq": 0, "state": "offline"})  # composed at connect time
    pub.publish("ankang/v1/d1/status", orjson.dumps({"ts": t, "seq": 1, "state": "online"}))
    pub.publish("ankang/v1/d1/telemetry", telemetry(2, t + 60_000, contact=1))
    pub.wait_all()
    pub.publish("ankang/v1/d1/status", will)
    pub.publish("ankang/v1/d1/status", will)  # retained and delivered again
    pub.publish("ankang/v1/d1/telemetry", telemetry(3, t + 90_000, contact=0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 4, 20, "4 messages")
    assert rows(database, "SELECT seq, state FROM statuses ORDER BY seq") == [(0, "offline"), (1, "online")]
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    pub.close()


def test_committed_messages_are_acknowledged_and_not_redelivered(broker, database, hub_factory):
    register(database, [("d1", "bed_sensor")])
    hub = hub_factory(database)
    pub = Publisher(broker.url)
    t = now_ms() - 100_000
    for seq in range(1, 301):
        pub.publish("ankang/v1/d1/telemetry", telemetry(seq, t + seq * 100, hr_bpm=60.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 300, 20, "300 stored")
    assert hub.stop() == 0
    hub.start()  # the same persistent session: anything unacknowledged would come back now
    pub.publish("ankang/v1/d1/telemetry", telemetry(301, t + 40_000, hr_bpm=60.0))
    pub.wait_all()
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 301, 20, "the new message")
    assert hub.metric("ankang_ingest_messages_total", outcome="redelivered") == 0
    assert hub.metric("ankang_ingest_messages_total", outcome="stored") == 1
    pub.close()
