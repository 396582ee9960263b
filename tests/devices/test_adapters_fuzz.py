"""Property-based fuzzing of the adapters: whatever arrives, nothing escapes, and every
value that comes out is one the rest of the hub can trust."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import Device, Event, Message, Rejected, Status, Telemetry
from devices.adapters import ChirpStack, Zigbee2Mqtt
from devices.adapters._common import Scheme
from devices.contract import EVENTS, METRIC_RANGES, STATES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAYLOADS = Path(__file__).parent / "payloads"
DEVICE = Device("d1", "sos_button", "f", None, None, None, 3600, None)


def lookup(_scheme: Scheme, _value: str) -> Device | None:
    return DEVICE  # every address is registered, so the mapping itself is exercised


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)
KEYS = st.sampled_from(
    [
        "smoke", "battery", "battery_low", "tamper", "test", "action", "contact", "water_leak", "occupancy",
        "vibration", "linkquality", "temperature", "last_seen", "time", "fCnt", "object", "rxInfo",
        "deviceInfo", "batteryLevel", "externalPowerSource", "batteryLevelUnavailable", "margin", "state",
        "event", "events", "rssi", "snr", "devEui",
    ]
)  # fmt: skip
objects = st.dictionaries(KEYS | st.text(max_size=8), json_values, max_size=10)
nested = st.builds(
    lambda top, obj, rx: {**top, "object": obj, "rxInfo": rx},
    objects,
    objects,
    st.lists(objects, max_size=3),
)


def dumps(value: object) -> bytes:
    # the standard library, not orjson: it writes integers beyond 64 bits and NaN as they come
    return json.dumps(value, default=str).encode()


bodies = (
    objects.map(dumps)
    | nested.map(dumps)
    | json_values.map(dumps)
    | st.binary(max_size=200)
    | st.sampled_from([p.read_bytes() for p in sorted(PAYLOADS.rglob("*.json"))])
)
Z2M_TOPICS = st.sampled_from(
    [
        "zigbee2mqtt/kitchen",
        "zigbee2mqtt/room/103/sos",
        "zigbee2mqtt/kitchen/availability",
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/bridge/groups",
        "zigbee2mqtt/0x00158d0001a2b3c4",
        "zigbee2mqtt/",
        "zigbee2mqtt/kitchen/set",
    ]
) | st.text(max_size=30).map(lambda t: "zigbee2mqtt/" + t)
CS_TOPICS = st.sampled_from(
    [f"application/app/device/a84041000181c061/event/{e}" for e in ("up", "status", "join", "log", "x")]
) | st.text(max_size=40)


def check(results: list[Message | Rejected]) -> None:
    assert isinstance(results, list)
    keys = set()
    for r in results:
        if isinstance(r, Rejected):
            assert r.reason
            continue
        assert isinstance(r, Message)
        assert r.device_id == "d1"
        assert r.ts.tzinfo is not None
        key = (r.device_id, r.ts, r.seq)
        assert key not in keys  # one foreign message never maps twice onto one key
        keys.add(key)
        if isinstance(r, Telemetry):
            assert r.metrics
            for name, value in r.metrics.items():
                assert math.isfinite(value)
                low, high = METRIC_RANGES.get(name, (-1e9, 1e9))
                assert low <= value <= high
        elif isinstance(r, Event):
            assert r.event in EVENTS
        elif isinstance(r, Status):
            assert r.state in STATES


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(Z2M_TOPICS, bodies), min_size=1, max_size=6))
def test_zigbee2mqtt_never_raises(stream):
    adapter = Zigbee2Mqtt(lookup)
    for topic, body in stream:  # a sequence, so that inventory and transitions are exercised too
        check(adapter.adapt(topic, body, NOW))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CS_TOPICS, bodies), min_size=1, max_size=6))
def test_chirpstack_never_raises(stream):
    adapter = ChirpStack(lookup)
    for topic, body in stream:
        check(adapter.adapt(topic, body, NOW))
