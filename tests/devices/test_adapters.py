"""The Zigbee2MQTT and ChirpStack adapters, on recorded real-world-shaped payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from devices import Device, Event, Message, Rejected, Status, Telemetry
from devices.adapters import Adapters, ChirpStack, Zigbee2Mqtt, kind_from_exposes
from devices.adapters._common import Scheme
from devices.registry import RegistryError, parse_device_csv, parse_facility_yaml

PAYLOADS = Path(__file__).parent / "payloads"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def device(device_id: str, kind: str) -> Device:
    return Device(device_id, kind, "care-1", "101", None, None, 3600, None)


DEVICES = {
    ("zigbee_name", "kitchen_smoke"): device("smoke-201", "smoke_detector"),
    ("zigbee_ieee", "0x54ef441000a1b2c3"): device("sos-7", "sos_button"),  # registered by IEEE only
    ("zigbee_name", "front_door"): device("door-1", "door_contact"),
    ("zigbee_name", "bathroom_leak"): device("leak-1", "water_leak"),
    ("zigbee_name", "corridor_motion"): device("motion-1", "motion_sensor"),
    ("zigbee_ieee", "0x00158d00deadbeef"): device("smoke-9", "smoke_detector"),  # never renamed
    ("lorawan_dev_eui", "a84041000181c061"): device("climate-103", "motion_sensor"),
    ("lorawan_dev_eui", "70b3d57ed0051a2b"): device("smoke-lora", "smoke_detector"),
}


def lookup(scheme: Scheme, value: str) -> Device | None:
    return DEVICES.get((scheme, value))


@pytest.fixture
def z2m() -> Zigbee2Mqtt:
    adapter = Zigbee2Mqtt(lookup)
    assert adapter.adapt("zigbee2mqtt/bridge/devices", payload("zigbee2mqtt/bridge_devices.json"), NOW) == []
    return adapter


@pytest.fixture
def cs() -> ChirpStack:
    return ChirpStack(lookup)


def messages(results: list[Message | Rejected]) -> list[Message]:
    assert not [r for r in results if isinstance(r, Rejected)], results
    return [r for r in results if not isinstance(r, Rejected)]


def events(results: list[Message | Rejected]) -> list[str]:
    return [m.event for m in messages(results) if isinstance(m, Event)]


def rejected(results: list[Message | Rejected]) -> Rejected:
    found = [r for r in results if isinstance(r, Rejected)]
    assert len(found) == 1, results
    return found[0]


# -- Zigbee2MQTT --------------------------------------------------------------------------


def test_kinds_come_from_exposes_not_models():
    inventory = orjson.loads(payload("zigbee2mqtt/bridge_devices.json"))
    kinds = {d["friendly_name"]: kind_from_exposes((d["definition"] or {}).get("exposes")) for d in inventory}
    assert kinds == {
        "Coordinator": None,
        "kitchen_smoke": "smoke_detector",
        "room_103/sos": "sos_button",
        "front_door": "door_contact",
        "bathroom_leak": "water_leak",
        "corridor_motion": "motion_sensor",
        "lounge_lamp": None,  # a light: nothing ankang watches
    }
    # a model nobody has listed is still a smoke detector if it says it detects smoke
    assert kind_from_exposes([{"type": "binary", "property": "smoke", "value_on": True}]) == "smoke_detector"


def test_smoke_snapshot_becomes_telemetry_then_alarm_on_the_transition(z2m):
    topic = "zigbee2mqtt/kitchen_smoke"
    idle = messages(z2m.adapt(topic, payload("zigbee2mqtt/smoke_idle.json"), NOW))
    assert [type(m) for m in idle] == [Telemetry]
    tel = idle[0]
    assert isinstance(tel, Telemetry)
    assert tel.device_id == "smoke-201"
    assert tel.ts == datetime(2026, 3, 1, 11, 58, 30, 114000, tzinfo=UTC)  # last_seen, not arrival
    assert tel.seq < 0  # unsequenced: Zigbee2MQTT has no counter
    assert dict(tel.metrics) == {"battery_pct": 100, "battery_low": 0, "linkquality": 132, "smoke": 0}

    # repeated snapshots: the alarm is an event once, on false -> true
    alarm = z2m.adapt(topic, payload("zigbee2mqtt/smoke_alarm.json"), NOW)
    assert events(alarm) == ["smoke_alarm"]
    assert [m.channel for m in messages(alarm)] == ["event", "telemetry"]
    assert events(z2m.adapt(topic, payload("zigbee2mqtt/smoke_alarm.json"), NOW)) == []
    cleared = z2m.adapt(topic, payload("zigbee2mqtt/smoke_cleared.json"), NOW)
    assert events(cleared) == ["smoke_alarm_cleared"]


def test_keys_are_stable_so_a_redelivery_maps_to_the_same_key(z2m):
    topic = "zigbee2mqtt/kitchen_smoke"
    first = messages(z2m.adapt(topic, payload("zigbee2mqtt/smoke_alarm.json"), NOW))
    again = messages(Zigbee2Mqtt(lookup).adapt(topic, payload("zigbee2mqtt/smoke_alarm.json"), NOW))
    assert {(m.device_id, m.ts, m.seq) for m in again} == {(m.device_id, m.ts, m.seq) for m in first}
    assert len({m.seq for m in first}) == len(first)  # distinct keys within one snapshot


def test_first_snapshot_in_alarm_raises_at_once(z2m):
    # a hub that starts while a detector is sounding must not wait for a transition
    assert events(z2m.adapt("zigbee2mqtt/kitchen_smoke", payload("zigbee2mqtt/smoke_alarm.json"), NOW)) == [
        "smoke_alarm"
    ]


def test_test_button_comes_before_the_smoke_it_causes(z2m):
    out = events(z2m.adapt("zigbee2mqtt/kitchen_smoke", payload("zigbee2mqtt/smoke_test.json"), NOW))
    assert out == [
        "test",
        "smoke_alarm",
    ]  # the fire detector takes a smoke alarm right after a test as the test


def test_sos_button_registered_by_ieee_and_renamed(z2m):
    out = messages(z2m.adapt("zigbee2mqtt/room_103/sos", payload("zigbee2mqtt/sos_emergency.json"), NOW))
    sos = [m for m in out if isinstance(m, Event)]
    assert [(m.device_id, m.event, dict(m.detail or {})) for m in sos] == [
        ("sos-7", "sos_pressed", {"action": "emergency"})
    ]
    assert out[0].ts == NOW  # no last_seen: the hub's receive time
    # every press is a call, not only the first
    again = z2m.adapt("zigbee2mqtt/room_103/sos", payload("zigbee2mqtt/sos_emergency.json"), NOW)
    assert events(again) == ["sos_pressed"]


def test_action_from_a_device_that_is_not_a_button_is_no_sos(z2m):
    out = z2m.adapt("zigbee2mqtt/front_door", orjson.dumps({"action": "single", "contact": True}), NOW)
    assert "sos_pressed" not in events(out)


def test_door_contact_opens_and_closes(z2m):
    topic = "zigbee2mqtt/front_door"
    first = messages(z2m.adapt(topic, payload("zigbee2mqtt/door_closed.json"), NOW))
    assert events(first) == []  # a first value is not a movement
    assert dict(first[0].metrics)["contact"] == 1  # type: ignore[attr-defined]
    assert events(z2m.adapt(topic, payload("zigbee2mqtt/door_open.json"), NOW)) == ["door_open"]
    assert events(z2m.adapt(topic, payload("zigbee2mqtt/door_closed.json"), NOW)) == ["door_closed"]


def test_water_leak_and_its_end(z2m):
    topic = "zigbee2mqtt/bathroom_leak"
    wet = messages(z2m.adapt(topic, payload("zigbee2mqtt/leak_wet.json"), NOW))
    assert [(m.channel, getattr(m, "event", None)) for m in wet] == [
        ("event", "water_leak"),
        ("telemetry", None),
    ]
    dry = messages(z2m.adapt(topic, orjson.dumps({"water_leak": False, "battery": 100}), NOW))
    leak = [m for m in dry if isinstance(m, Event)]
    assert [(m.event, dict(m.detail or {})) for m in leak] == [("water_leak", {"active": False})]


def test_motion_and_unmapped_keys(z2m):
    out = messages(z2m.adapt("zigbee2mqtt/corridor_motion", payload("zigbee2mqtt/motion_occupied.json"), NOW))
    assert len(out) == 1
    assert dict(out[0].metrics) == {  # type: ignore[attr-defined]
        "motion": 1,
        "temp_c": 21.62,
        "battery_pct": 76,
        "linkquality": 104,
    }


def test_availability_both_forms(z2m):
    for body, state in ((b'{"state":"offline"}', "offline"), (b"online", "online")):
        out = messages(z2m.adapt("zigbee2mqtt/kitchen_smoke/availability", body, NOW))
        assert [(type(m), m.device_id, m.state) for m in out if isinstance(m, Status)] == [
            (Status, "smoke-201", state)
        ]


def test_a_device_never_renamed_is_found_by_its_ieee_address(z2m):
    out = messages(z2m.adapt("zigbee2mqtt/0x00158d00DEADBEEF", b'{"smoke": true}', NOW))
    assert [m.device_id for m in out] == ["smoke-9", "smoke-9"]


def test_bridge_traffic_commands_groups_and_attribute_topics_are_not_device_data(z2m):
    assert z2m.adapt("zigbee2mqtt/bridge/state", b'{"state":"online"}', NOW) == []
    assert z2m.adapt("zigbee2mqtt/bridge/logging", b'{"level":"info","message":"x"}', NOW) == []
    assert z2m.adapt("zigbee2mqtt/kitchen_smoke/set", b'{"test": true}', NOW) == []
    assert z2m.adapt("zigbee2mqtt/bridge/groups", b'[{"id": 1, "friendly_name": "lounge"}]', NOW) == []
    assert z2m.adapt("zigbee2mqtt/lounge", b'{"state": "ON"}', NOW) == []
    assert z2m.adapt("zigbee2mqtt/kitchen_smoke/smoke", b"true", NOW) == []


def test_inventory_values_on_and_off_are_honoured():
    adapter = Zigbee2Mqtt(lookup)
    inventory = [
        {
            "ieee_address": "0x00158d0001a2b3c4",
            "friendly_name": "kitchen_smoke",
            "definition": {
                "exposes": [{"type": "binary", "property": "smoke", "value_on": "ALARM", "value_off": "IDLE"}]
            },
        }
    ]
    adapter.adapt("zigbee2mqtt/bridge/devices", orjson.dumps(inventory), NOW)
    out = adapter.adapt("zigbee2mqtt/kitchen_smoke", b'{"smoke": "ALARM"}', NOW)
    assert events(out) == ["smoke_alarm"]


# -- ChirpStack ---------------------------------------------------------------------------

UP = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/a84041000181c061/event/up"
SMOKE_UP = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/70b3d57ed0051a2b/event/up"


def test_uplink_becomes_readings_with_fcnt_as_seq(cs):
    out = messages(cs.adapt(UP, payload("chirpstack/up_temperature.json"), NOW))
    assert len(out) == 1
    tel = out[0]
    assert isinstance(tel, Telemetry)
    assert (tel.device_id, tel.seq) == ("climate-103", 4211)
    assert tel.ts == datetime(2026, 3, 1, 11, 59, 12, 708616, tzinfo=UTC)
    # codec names mapped onto ankang's; the loudest gateway's radio figures
    assert dict(tel.metrics) == {
        "temp_c": 23.1,
        "humidity_pct": 41.2,
        "battery_v": 3.05,
        "rssi_dbm": -97,
        "snr_db": 6.5,
    }


def test_smoke_uplink_raises_and_latches(cs):
    out = messages(cs.adapt(SMOKE_UP, payload("chirpstack/up_smoke_alarm.json"), NOW))
    assert [(m.channel, m.seq >= 0) for m in out] == [("event", False), ("telemetry", True)]
    assert events(out) == ["smoke_alarm"]
    assert dict(out[1].metrics)["smoke"] == 1  # type: ignore[attr-defined]


def test_status_gives_battery_and_join_gives_online(cs):
    status = messages(cs.adapt(UP.replace("/up", "/status"), payload("chirpstack/status.json"), NOW))
    assert [dict(m.metrics) for m in status if isinstance(m, Telemetry)] == [
        {"external_power": 0, "battery_pct": 86.61, "snr_margin_db": 7}
    ]
    assert status[0].seq < 0  # no counter: it must not disturb the fCnt sequence
    join = messages(cs.adapt(UP.replace("/up", "/join"), payload("chirpstack/join.json"), NOW))
    assert [(type(m), m.state) for m in join if isinstance(m, Status)] == [(Status, "online")]


def test_mains_powered_status_has_no_battery(cs):
    body = orjson.dumps({"time": "2026-03-01T11:59:00Z", "externalPowerSource": True, "margin": 3})
    out = messages(cs.adapt(UP.replace("/up", "/status"), body, NOW))
    assert dict(out[0].metrics) == {"external_power": 1, "snr_margin_db": 3}  # type: ignore[attr-defined]


def test_downlink_and_log_events_are_not_device_data(cs):
    assert cs.adapt(UP.replace("/up", "/txack"), payload("chirpstack/txack.json"), NOW) == []
    assert cs.adapt(UP.replace("/up", "/log"), payload("chirpstack/log.json"), NOW) == []
    assert cs.adapt(UP.replace("/up", "/ack"), b"{}", NOW) == []


def test_codec_may_name_ankang_events(cs):
    body = orjson.loads(payload("chirpstack/up_temperature.json"))
    body["object"] = {"event": "sos_pressed", "battery": 90}
    out = cs.adapt(UP, orjson.dumps(body), NOW)
    assert events(out) == ["sos_pressed"]


def test_fcnt_absent_is_zero_as_protobuf_json_leaves_defaults_out(cs):
    body = orjson.loads(payload("chirpstack/up_temperature.json"))
    del body["fCnt"]
    assert [m.seq for m in messages(cs.adapt(UP, orjson.dumps(body), NOW))] == [0]


def test_router_and_custom_prefix():
    adapters = Adapters(
        [
            Zigbee2Mqtt(lookup, base_topic="z2m"),
            ChirpStack(lookup, topic_filter="cs/" + "application/+/device/+/event/+"),
        ]
    )
    assert adapters.subscriptions == ("z2m/#", "cs/application/+/device/+/event/+")
    assert adapters.for_topic("z2m/kitchen_smoke").name == "zigbee2mqtt"  # type: ignore[union-attr]
    assert adapters.for_topic("cs/" + UP).name == "chirpstack"  # type: ignore[union-attr]
    assert adapters.for_topic(UP) is None
    assert adapters.for_topic("ankang/v1/d1/telemetry") is None
    with pytest.raises(ValueError, match="base topic"):
        Zigbee2Mqtt(lookup, base_topic="z2m/#")
    with pytest.raises(ValueError, match="application"):
        ChirpStack(lookup, topic_filter="application/#")


# -- bad input: each kind quarantined with a reason ---------------------------------------


@pytest.mark.parametrize(
    ("topic", "body", "reason", "kind"),
    [
        # unregistered devices
        (
            "zigbee2mqtt/hallway_smoke",
            b'{"smoke": true}',
            "unknown device: no ankang device has Zigbee",
            "unknown_device",
        ),
        (
            UP.replace("a84041000181c061", "0004a30b001c0530"),
            b"{}",
            "unknown device: no ankang device has LoRaWAN DevEUI 0004a30b001c0530",
            "unknown_device",
        ),
        # missing fields
        (UP, b'{"fCnt": 3, "object": {"temperature": 20}}', "missing time", "contract"),
        (
            "zigbee2mqtt/kitchen_smoke/availability",
            b"{}",
            "availability must be online or offline",
            "contract",
        ),
        # wrongly typed
        (UP, b'{"time": "2026-03-01T11:59:00Z", "fCnt": "12"}', "fCnt must be an integer", "contract"),
        (UP, b'{"time": 1772366340000.5}', "time must be an RFC 3339 string", "contract"),
        ("zigbee2mqtt/kitchen_smoke", b'["smoke", true]', "must be a JSON object, not list", "contract"),
        (
            UP,
            b'{"time": "2026-03-01T11:59:00Z", "deviceInfo": {"devEui": "0000000000000001"}}',
            "does not match the topic",
            "contract",
        ),
        # malformed and too large
        ("zigbee2mqtt/kitchen_smoke", b'{"smoke": tru', "malformed JSON", "json"),
        (UP, b'{"time": "' + b"x" * 300_000 + b'"}', "payload of 300012 bytes exceeds 262144", "contract"),
        ("zigbee2mqtt/kitchen_smoke", b'{"pad": "' + b"x" * 300_000 + b'"}', "exceeds 262144", "contract"),
        # implausible time and bad topics
        (UP, b'{"time": "2031-01-01T00:00:00Z"}', "more than 24 h ahead", "contract"),
        ("application/x/device/not-an-eui/event/up", b"{}", "topic DevEUI must be 16 hex digits", "topic"),
        (UP.replace("/up", "/mystery"), b"{}", "topic names an unknown ChirpStack event", "topic"),
    ],
)
def test_bad_input_is_quarantined_with_a_reason(z2m, cs, topic, body, reason, kind):
    adapter = z2m if topic.startswith("zigbee2mqtt/") else cs
    out = adapter.adapt(topic, body, NOW)
    assert len(out) == 1
    assert isinstance(out[0], Rejected)
    assert reason in out[0].reason
    assert out[0].kind == kind


def test_a_bad_value_is_dropped_but_the_smoke_alarm_beside_it_still_counts(z2m):
    out = z2m.adapt("zigbee2mqtt/kitchen_smoke", b'{"smoke": true, "battery": "low", "tamper": 3}', NOW)
    assert events(out[:-1]) == ["smoke_alarm"]
    bad = rejected(out)
    assert bad.device_id == "smoke-201"
    assert "battery_pct must be a finite number" in bad.reason
    assert "tamper must be true or false" in bad.reason
    assert "the rest of the state was taken in" in bad.reason


def test_implausible_metric_from_a_codec_is_dropped_with_a_reason(cs):
    body = orjson.loads(payload("chirpstack/up_temperature.json"))
    body["object"] = {"temperature": 5000}
    out = cs.adapt(UP, orjson.dumps(body), NOW)
    assert "temp_c=5000 outside plausible range" in rejected(out).reason
    assert "temp_c" not in dict(out[0].metrics)  # type: ignore[union-attr]


def test_inventory_of_the_wrong_shape_is_quarantined(z2m):
    out = z2m.adapt("zigbee2mqtt/bridge/devices", b'{"devices": []}', NOW)
    assert "bridge/devices must be a JSON list" in rejected(out).reason


# -- registration -------------------------------------------------------------------------


def test_facility_yaml_registers_foreign_addresses():
    spec = parse_facility_yaml(
        """
devices:
  - {id: smoke-201, kind: smoke_detector, facility: care-1,
     zigbee: {friendly_name: kitchen_smoke, ieee: "0x00158D0001A2B3C4"}}
  - {id: climate-103, kind: motion_sensor, facility: care-1, lorawan: {dev_eui: "A8-40-41-00-01-81-C0-61"}}
"""
    )
    assert [d.aliases() for d in spec.devices] == [
        [("zigbee_name", "kitchen_smoke"), ("zigbee_ieee", "0x00158d0001a2b3c4")],
        [("lorawan_dev_eui", "a84041000181c061")],
    ]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("zigbee: {ieee: 00158d0001a2b3c4}", "0x and 16 hex digits"),
        ("zigbee: {}", "friendly_name, ieee or both"),
        ("zigbee: {friendly_name: kitchen/+}", "may not contain"),
        ("zigbee: {friendly_name: smoke/set}", "/set"),
        ("lorawan: {dev_eui: a84041}", "16 hex digits"),
        ("zigbee: {ieee: '0x00158d0001a2b3c4'}, lorawan: {dev_eui: a84041000181c061}", "not both"),
    ],
)
def test_bad_foreign_addresses_are_refused(entry, problem):
    with pytest.raises(RegistryError, match=problem):
        parse_facility_yaml(f"devices:\n  - {{id: d1, kind: smoke_detector, facility: f, {entry}}}\n")


def test_one_address_for_two_devices_is_refused():
    text = """
devices:
  - {id: a, kind: smoke_detector, facility: f, lorawan: {dev_eui: a84041000181c061}}
  - {id: b, kind: smoke_detector, facility: f, lorawan: {dev_eui: A84041000181C061}}
"""
    with pytest.raises(RegistryError, match="given to both a and b"):
        parse_facility_yaml(text)


def test_device_csv_takes_foreign_addresses():
    spec = parse_device_csv(
        "id,kind,facility,zigbee_friendly_name,zigbee_ieee,lorawan_dev_eui\n"
        "smoke-201,smoke_detector,care-1,kitchen_smoke,0x00158d0001a2b3c4,\n"
        "climate-103,motion_sensor,care-1,,,a84041000181c061\n"
    )
    assert [d.aliases() for d in spec.devices] == [
        [("zigbee_name", "kitchen_smoke"), ("zigbee_ieee", "0x00158d0001a2b3c4")],
        [("lorawan_dev_eui", "a84041000181c061")],
    ]
