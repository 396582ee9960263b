"""The v1 decoder, and its agreement with the published JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest

from devices import Event, Rejected, Status, Telemetry, decode, device_id_from_topic, json_schema

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp() * 1000) - 5_000


def _decode(channel: str, body: dict, device: str = "dev-1"):
    return decode(f"ankang/v1/{device}/{channel}", orjson.dumps(body), now=NOW)


def _validator(channel: str) -> jsonschema.Draft202012Validator:
    schema = json_schema()
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{channel}", "$defs": schema["$defs"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


GOOD = [
    ("telemetry", {"ts": T, "seq": 0, "metrics": {"temp_c": 21.5, "smoke": 0, "co_ppm": 3}}),
    ("telemetry", {"ts": "2026-03-01T19:59:00+08:00", "seq": 7, "metrics": {"occupied": True, "hr_bpm": 61}}),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, 1]] * 50}),
    (
        "telemetry",
        {
            "ts": T,
            "seq": 2,
            "rate_hz": 100,
            "acc_g": [[0.1, 0.2, 0.9]] * 3,
            "gyro_dps": [[1, 2, 3]] * 3,
            "metrics": {"hr_bpm": 80},
        },
    ),
    ("event", {"ts": T, "seq": 3, "event": "smoke_alarm"}),
    ("event", {"ts": T, "seq": 4, "event": "sos_pressed", "detail": {"button": "left"}}),
    ("status", {"ts": T, "seq": 5, "state": "online", "fw": "2.1.0", "heartbeat_s": 600}),
    ("status", {"ts": "2026-03-01T11:59:00Z", "seq": 6, "state": "offline"}),
]

BAD = [
    ("telemetry", {"ts": T, "seq": 1}, "neither metrics nor acc_g"),
    ("telemetry", {"ts": T, "seq": -1, "metrics": {"temp_c": 1}}, "seq out of range"),
    ("telemetry", {"ts": T, "seq": 1.5, "metrics": {"temp_c": 1}}, "seq must be an integer"),
    ("telemetry", {"ts": T, "seq": True, "metrics": {"temp_c": 1}}, "seq must be an integer"),
    ("telemetry", {"seq": 1, "metrics": {"temp_c": 1}}, "missing ts"),
    ("telemetry", {"ts": "yesterday", "seq": 1, "metrics": {"temp_c": 1}}, "not an RFC 3339"),
    ("telemetry", {"ts": "2026-03-01T12:00:00", "seq": 1, "metrics": {"temp_c": 1}}, "UTC offset"),
    ("telemetry", {"ts": T + 86_400_000 * 2, "seq": 1, "metrics": {"temp_c": 1}}, "ahead of the hub clock"),
    ("telemetry", {"ts": 1_000, "seq": 1, "metrics": {"temp_c": 1}}, "after 2000-01-01"),
    ("telemetry", {"ts": T, "seq": 1, "metrics": {"temp_c": 10_000}}, "outside plausible range"),
    ("telemetry", {"ts": T, "seq": 1, "metrics": {"temp_c": "hot"}}, "must be a number"),
    ("telemetry", {"ts": T, "seq": 1, "metrics": {"smoke": 0.5}}, "must be 0 or 1"),
    ("telemetry", {"ts": T, "seq": 1, "metrics": {"Temp C": 1}}, "must match"),
    ("telemetry", {"ts": T, "seq": 1, "metrics": [1, 2]}, "metrics must be an object"),
    ("telemetry", {"ts": T, "seq": 1, "metric": {"temp_c": 1}}, "unknown field"),
    ("telemetry", {"ts": T, "seq": 1, "acc_g": [[0, 0, 1]]}, "numeric rate_hz"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 5000, "acc_g": [[0, 0, 1]]}, "rate_hz"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 1]]}, "[x, y, z]"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, "1"]]}, "[x, y, z]"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, True]]}, "[x, y, z]"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, 1], [0, 0]]}, "[x, y, z]"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, 100]]}, "beyond ±64"),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": []}, "non-empty"),
    (
        "telemetry",
        {"ts": T, "seq": 1, "rate_hz": 50, "acc_g": [[0, 0, 1]] * 2, "gyro_dps": [[0, 0, 1]]},
        "as many samples",
    ),
    ("telemetry", {"ts": T, "seq": 1, "rate_hz": 50, "metrics": {"temp_c": 1}}, "need acc_g"),
    ("event", {"ts": T, "seq": 1, "event": "fire!!"}, "event must be one of"),
    ("event", {"ts": T, "seq": 1, "event": "test", "detail": "x"}, "detail must be an object"),
    ("event", {"ts": T, "seq": 1, "event": "test", "detail": {"x": "y" * 5000}}, "detail larger"),
    ("status", {"ts": T, "seq": 1, "state": "sleepy"}, "online or offline"),
    ("status", {"ts": T, "seq": 1, "state": "online", "heartbeat_s": 0}, "heartbeat_s"),
    ("status", {"ts": T, "seq": 1, "state": "online", "fw": "\x00"}, "fw must be"),
]


@pytest.mark.parametrize(("channel", "body"), GOOD)
def test_good_payloads_decode_and_validate(channel, body):
    msg = _decode(channel, body)
    assert not isinstance(msg, Rejected), msg
    assert msg.channel == channel
    assert msg.device_id == "dev-1"
    _validator(channel).validate(body)


@pytest.mark.parametrize(("channel", "body", "reason"), BAD)
def test_bad_payloads_are_rejected_with_a_reason(channel, body, reason):
    msg = _decode(channel, body)
    assert isinstance(msg, Rejected)
    assert reason in msg.reason
    assert msg.device_id == "dev-1"


SCHEMA_CATCHES = [
    b
    for b in BAD
    if "ahead" not in b[2]
    and "2000" not in b[2]
    and "as many" not in b[2]
    and "beyond" not in b[2]
    and "larger" not in b[2]
]


@pytest.mark.parametrize(("channel", "body", "reason"), SCHEMA_CATCHES)
def test_schema_rejects_what_the_decoder_rejects(channel, body, reason):
    assert not _validator(channel).is_valid(body), reason


def test_values_are_parsed_once_into_typed_frozen_objects():
    msg = _decode("telemetry", GOOD[3][1])
    assert isinstance(msg, Telemetry)
    assert msg.acc_g is not None and msg.acc_g.shape == (3, 3)
    assert msg.acc_g.dtype.name == "float32"
    assert not msg.acc_g.flags.writeable
    assert msg.n_samples == 3
    with pytest.raises(AttributeError):
        msg.seq = 9  # type: ignore[misc]
    rfc = _decode("telemetry", GOOD[1][1])
    assert rfc.ts == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    assert isinstance(_decode("event", GOOD[4][1]), Event)
    status = _decode("status", GOOD[6][1])
    assert isinstance(status, Status) and status.heartbeat_s == 600


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("ankang/v1/dev-1/telemetry/extra", "ankang/v1/{device_id}/{channel}"),
        ("ankang/v1/dev 1/telemetry", "device id must match"),
        ("ankang/v1/" + "x" * 65 + "/telemetry", "device id must match"),
        ("ankang/v1/dev-1/commands", "unknown channel"),
        ("zigbee2mqtt/kitchen", "outside the v1 contract"),
    ],
)
def test_topics_outside_the_contract(topic, reason):
    msg = decode(topic, b'{"ts": 1, "seq": 1}', now=NOW)
    assert isinstance(msg, Rejected)
    assert reason in msg.reason


def test_oversized_and_non_object_payloads():
    big = decode("ankang/v1/d/telemetry", b" " * (256 * 1024 + 1), now=NOW)
    assert isinstance(big, Rejected) and "exceeds" in big.reason
    arr = decode("ankang/v1/d/telemetry", b"[1, 2]", now=NOW)
    assert isinstance(arr, Rejected) and "JSON object" in arr.reason
    nan = decode("ankang/v1/d/telemetry", b'{"ts": %d, "seq": 1, "metrics": {"temp_c": NaN}}' % T, now=NOW)
    assert isinstance(nan, Rejected) and "malformed JSON" in nan.reason


def test_old_timestamps_are_rejected():
    old = int((NOW - timedelta(days=400)).timestamp() * 1000)
    msg = _decode("telemetry", {"ts": old, "seq": 1, "metrics": {"temp_c": 1}})
    assert isinstance(msg, Rejected) and "more than a year old" in msg.reason


def test_device_id_from_topic():
    assert device_id_from_topic("ankang/v1/bed-12/status") == "bed-12"
    assert device_id_from_topic("ankang/v1/bed-12/other") == "bed-12"  # its own, quarantined as its own
    assert device_id_from_topic("ankang/v1/bed 12/status") is None
    assert device_id_from_topic("other/v1/bed-12/status") is None


def test_schema_metric_ranges_match_the_decoder():
    from devices.contract import _BOOLEAN_METRICS, METRIC_RANGES

    props = json_schema()["$defs"]["telemetry"]["properties"]["metrics"]["properties"]
    assert set(props) == set(METRIC_RANGES)
    for name, (low, high) in METRIC_RANGES.items():
        if name in _BOOLEAN_METRICS:
            assert props[name] == {"enum": [0, 1, True, False]}
        else:
            assert (props[name]["minimum"], props[name]["maximum"]) == (low, high)
