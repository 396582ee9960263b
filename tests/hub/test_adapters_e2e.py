"""Zigbee2MQTT and ChirpStack through a real Mosquitto into the database and the detectors,
and the sequence rules for adapted messages in the ingest pipeline."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from alerts.lifecycle import apply_pending
from devices.adapters import Adapters, ChirpStack, Zigbee2Mqtt
from devices.registry import Registry, parse_facility_yaml
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import Database
from tests.support import Publisher, rows, scalar, wait_until

PAYLOADS = Path(__file__).resolve().parent.parent / "devices" / "payloads"
APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
CLIMATE = f"application/{APP}/device/a84041000181c061/event"

FACILITY = """
facilities:
  - id: care-1
    rooms:
      - {id: kitchen, kind: kitchen}
      - id: "103"
        beds: [{id: A, resident: {id: R3}}]
devices:
  - {id: smoke-201, kind: smoke_detector, facility: care-1, room: kitchen,
     zigbee: {friendly_name: kitchen_smoke, ieee: "0x00158d0001a2b3c4"}}
  - {id: sos-7, kind: sos_button, facility: care-1, room: "103", resident: R3,
     zigbee: {ieee: "0x54ef441000a1b2c3"}}
  - {id: climate-103, kind: motion_sensor, facility: care-1, room: "103",
     lorawan: {dev_eui: a84041000181c061}}
"""


def apply(url: str, text: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await Registry(conn).apply(parse_facility_yaml(text))

    asyncio.run(run())


def recorded(name: str, **fields: object) -> bytes:
    body = orjson.loads((PAYLOADS / name).read_bytes())
    body.update(fields)
    return orjson.dumps(body)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_zigbee_smoke_and_lorawan_uplinks_end_to_end(broker, database, hub_factory):
    apply(database, FACILITY)
    hub = hub_factory(
        database,
        ANKANG_ZIGBEE2MQTT="true",
        ANKANG_CHIRPSTACK="true",
        ANKANG_DETECT_TICK_S="0.2",
        ANKANG_DETECT_SLOW_TICK_S="0.5",
    )
    pub = Publisher(broker.url)
    now = time.time()
    try:
        pub.publish("zigbee2mqtt/bridge/devices", (PAYLOADS / "zigbee2mqtt/bridge_devices.json").read_bytes())
        pub.publish(
            "zigbee2mqtt/kitchen_smoke", recorded("zigbee2mqtt/smoke_idle.json", last_seen=iso(now - 2))
        )
        alarm = recorded("zigbee2mqtt/smoke_alarm.json", last_seen=iso(now - 1))
        pub.publish("zigbee2mqtt/kitchen_smoke", alarm)
        pub.wait_all()

        # a Zigbee smoke detector's smoke: true is a fire in its room, at once
        wait_until(
            lambda: scalar(
                database,
                "SELECT count(*) FROM detections WHERE kind = 'fire' AND level = 'alarm'"
                " AND subject = 'care-1/kitchen' AND device_id = 'smoke-201'",
            ),
            15,
            "a fire detection from the Zigbee smoke detector",
        )
        assert rows(database, "SELECT event FROM events WHERE device_id = 'smoke-201'") == [("smoke_alarm",)]

        # and the alert service makes an alarm of it
        async def alarms() -> None:
            async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
                await apply_pending(conn)

        asyncio.run(alarms())
        assert rows(
            database, "SELECT type, priority, facility_id, room_id FROM alarms WHERE type = 'fire'"
        ) == [("fire", "high", "care-1", "kitchen")]

        # the same snapshot again (Zigbee2MQTT republishing, or a redelivery): stored once
        pub.publish("zigbee2mqtt/kitchen_smoke", alarm)
        # an SOS button registered by its IEEE address only, under its Zigbee2MQTT name
        pub.publish("zigbee2mqtt/room_103/sos", recorded("zigbee2mqtt/sos_emergency.json"))
        # a LoRaWAN uplink, its device status and a join
        pub.publish(f"{CLIMATE}/join", recorded("chirpstack/join.json", time=iso(now - 30)))
        pub.publish(f"{CLIMATE}/up", recorded("chirpstack/up_temperature.json", time=iso(now - 1)))
        pub.publish(f"{CLIMATE}/status", recorded("chirpstack/status.json", time=iso(now - 1)))
        pub.publish(f"{CLIMATE}/txack", recorded("chirpstack/txack.json"))
        # and devices nobody registered
        pub.publish("zigbee2mqtt/hallway_smoke", b'{"smoke": true}')
        pub.publish(
            f"application/{APP}/device/0004a30b001c0530/event/up", recorded("chirpstack/up_temperature.json")
        )
        pub.wait_all()

        wait_until(
            lambda: (
                ("sos", "alarm", "sos-7", "R3")
                in rows(database, "SELECT kind, level, device_id, resident_id FROM detections")
            ),
            15,
            "an SOS from the Zigbee button",
        )
        wait_until(
            lambda: scalar(database, "SELECT count(*) FROM quarantine") >= 2,
            15,
            "unknown devices quarantined",
        )
        wait_until(
            lambda: scalar(
                database,
                "SELECT count(*) FROM readings WHERE metric = 'battery_pct' AND device_id = 'climate-103'",
            ),
            15,
            "the LoRaWAN device's battery",
        )
        readings = dict(rows(database, "SELECT metric, value FROM readings WHERE device_id = 'climate-103'"))
        assert readings == {
            "temp_c": 23.1,
            "humidity_pct": 41.2,
            "battery_v": 3.05,
            "rssi_dbm": -97,
            "snr_db": 6.5,
            "battery_pct": 86.61,
            "external_power": 0,
            "snr_margin_db": 7,
        }
        # seq is fCnt for the uplink; the status and join carry no counter
        assert rows(
            database, "SELECT channel, seq FROM messages WHERE device_id = 'climate-103' ORDER BY ts, seq"
        ) == [("status", -2), ("telemetry", -1), ("telemetry", 4211)]
        assert rows(database, "SELECT state FROM statuses WHERE device_id = 'climate-103'") == [("online",)]
        reasons = [r[0] for r in rows(database, "SELECT reason FROM quarantine ORDER BY reason")]
        assert len(reasons) == 2
        assert reasons[0].startswith("unknown device: no ankang device has LoRaWAN DevEUI 0004a30b001c0530")
        assert reasons[1].startswith(
            "unknown device: no ankang device has Zigbee friendly name 'hallway_smoke'"
        )
        assert rows(database, "SELECT event FROM events WHERE device_id = 'smoke-201'") == [("smoke_alarm",)]
        assert hub.metric("ankang_seq_gaps_total") == 0

        # the detector's own low-battery flag (its percentage still reads high) is a low-battery warning
        pub.publish(
            "zigbee2mqtt/kitchen_smoke",
            recorded("zigbee2mqtt/smoke_alarm.json", last_seen=iso(time.time()), battery_low=True),
        )
        pub.wait_all()
        wait_until(
            lambda: scalar(
                database,
                "SELECT count(*) FROM detections WHERE kind = 'low_battery' AND level = 'warning'"
                " AND device_id = 'smoke-201'",
            ),
            15,
            "a low-battery warning from the Zigbee flag",
        )
    finally:
        pub.close()


def _inbound(topic: str, payload: bytes, mid: int) -> Inbound:
    return Inbound(topic, payload, mid, 1, time.time(), 1)


def test_sequence_rules_for_adapted_messages(database):
    apply(database, FACILITY)
    t = time.time() - 60

    def up(fcnt: int, at: float, mid: int) -> Inbound:
        return _inbound(
            f"{CLIMATE}/up", recorded("chirpstack/up_temperature.json", fCnt=fcnt, time=iso(at)), mid
        )

    def status(at: float, mid: int) -> Inbound:
        return _inbound(f"{CLIMATE}/status", recorded("chirpstack/status.json", time=iso(at)), mid)

    def smoke(value: bool, at: float, mid: int) -> Inbound:
        return _inbound(
            "zigbee2mqtt/kitchen_smoke", orjson.dumps({"smoke": value, "last_seen": iso(at)}), mid
        )

    async def run() -> None:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            adapters = Adapters([Zigbee2Mqtt(registry.alias), ChirpStack(registry.alias)])
            metrics = HubMetrics()
            ingest = Ingestor(db, registry, metrics, adapters=adapters)
            # a status between uplinks does not disturb the fCnt sequence; a lost uplink is a gap
            first = await ingest.prepare(
                [up(10, t, 1), status(t + 0.5, 2), up(11, t + 1, 3), up(13, t + 3, 4)]
            )
            assert (first.gaps, first.quarantined) == (1, [])
            await ingest.commit(first)
            # redelivered after the commit: recognised from the database, counted or not
            again = await ingest.prepare([up(11, t + 1, 5), status(t + 0.5, 6)])
            assert (again.redelivered, again.accepted, again.quarantined) == (2, [], [])
            # a rejoin restarts fCnt at 0: a reboot, not an out-of-order message
            rejoin = await ingest.prepare([up(0, t + 10, 7)])
            assert (len(rejoin.accepted), rejoin.quarantined) == (1, [])
            await ingest.commit(rejoin)
            # Zigbee2MQTT snapshots: no counter, keyed by last_seen; a repeat is stored once
            z = await ingest.prepare([smoke(False, t, 8), smoke(True, t + 1, 9), smoke(True, t + 1, 10)])
            assert z.redelivered == 1  # the repeat maps to the same telemetry key (and no new event)
            await ingest.commit(z)
            z2 = await ingest.prepare([smoke(True, t + 1, 11)])
            assert (z2.redelivered, z2.accepted) == (1, [])  # the event is not made again: no transition

            # a restarted hub: the newest stored message of the LoRaWAN device is its status
            await ingest.commit(await ingest.prepare([status(t + 20, 12)]))
            restarted = Ingestor(db, registry, metrics, adapters=adapters)
            after = await restarted.prepare([up(1, t + 20, 13), up(2, t + 21, 14)])
            assert (len(after.accepted), after.quarantined, after.gaps) == (2, [], 0)
            await restarted.commit(after)

    asyncio.run(run())
    seqs = rows(database, "SELECT seq FROM messages WHERE device_id = 'climate-103' AND seq >= 0 ORDER BY ts")
    assert [s for (s,) in seqs] == [10, 11, 13, 0, 1, 2]
    assert scalar(database, "SELECT count(*) FROM events WHERE device_id = 'smoke-201'") == 1
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0


def test_with_several_workers_each_keeps_the_devices_it_owns(database):
    apply(database, FACILITY)
    t = time.time() - 60
    batch = [
        _inbound("zigbee2mqtt/kitchen_smoke", orjson.dumps({"smoke": True, "last_seen": iso(t)}), 1),
        _inbound(f"{CLIMATE}/up", recorded("chirpstack/up_temperature.json", time=iso(t)), 2),
        _inbound("zigbee2mqtt/0x54ef441000a1b2c3", b'{"action": "emergency"}', 3),
        _inbound("zigbee2mqtt/hallway_smoke", b'{"smoke": true}', 4),
    ]

    async def run() -> list[tuple[list[str], int]]:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            out = []
            for partition in range(2):
                adapters = Adapters([Zigbee2Mqtt(registry.alias), ChirpStack(registry.alias)])
                ingest = Ingestor(
                    db, registry, HubMetrics(), partition=partition, partitions=2, adapters=adapters
                )
                prepared = await ingest.prepare(batch)
                out.append((sorted({m.device_id for _, m in prepared.accepted}), len(prepared.quarantined)))
        return out

    (first, quarantined_0), (second, quarantined_1) = asyncio.run(run())
    assert sorted(first + second) == ["climate-103", "smoke-201", "sos-7"]  # each device on one worker
    assert not set(first) & set(second)
    assert (quarantined_0, quarantined_1) == (1, 0)  # the unknown device, by worker 0 only
