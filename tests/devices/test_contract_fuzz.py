"""Property-based fuzzing of the decoder: nothing escapes, bad input gets a reason, good input flows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devices import Message, Rejected, decode

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp() * 1000) - 5_000
TOPICS = st.sampled_from(
    ["ankang/v1/d1/telemetry", "ankang/v1/d1/event", "ankang/v1/d1/status", "ankang/v1/d1/x", "junk", ""]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)

good_telemetry = st.builds(
    lambda seq, temp, hr, n: {
        "ts": T,
        "seq": seq,
        "metrics": {"temp_c": temp, "hr_bpm": hr},
        **({"rate_hz": 50, "acc_g": [[0.0, 0.1, 0.99]] * n} if n else {}),
    },
    st.integers(0, 2**40),
    st.floats(-60, 1200),
    st.floats(0, 300),
    st.integers(0, 200),
)


def _mutate(body: dict, key: str, value: object) -> bytes:
    mutated = dict(body)
    mutated[key] = value
    return orjson.dumps(mutated)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, st.binary(max_size=2000))
@example("ankang/v1/d1/telemetry", b"\xff\xfe")
@example("ankang/v1/d1/telemetry", b'{"ts": 1e400, "seq": 1}')
@example("ankang/v1/d1/telemetry", b"[" * 5000)
@example(
    "ankang/v1/d1/telemetry",
    b'{"ts": 1772366395000, "seq": 99999999999999999999999999, "metrics": {"temp_c": 1}}',
)
def test_random_bytes_never_escape(topic, payload):
    result = decode(topic, payload, now=NOW)
    assert isinstance(result, Message | Rejected)
    if isinstance(result, Rejected):
        assert result.reason
        assert result.payload == payload and result.topic == topic


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, json_values)
def test_random_json_never_escapes(topic, value):
    payload = orjson.dumps(value)
    result = decode(topic, payload, now=NOW)
    assert isinstance(result, Message | Rejected)
    if isinstance(result, Rejected):
        assert result.reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    good_telemetry,
    st.sampled_from(["ts", "seq", "metrics", "rate_hz", "acc_g", "gyro_dps", "extra"]),
    json_values,
)
def test_mutated_good_payloads_are_either_valid_or_quarantined_with_a_reason(body, key, value):
    result = decode("ankang/v1/d1/telemetry", _mutate(body, key, value), now=NOW)
    assert isinstance(result, Message | Rejected)
    if isinstance(result, Rejected):
        assert result.reason and result.device_id == "d1"


@settings(max_examples=200)
@given(good_telemetry)
def test_good_payloads_always_flow(body):
    result = decode("ankang/v1/d1/telemetry", orjson.dumps(body), now=NOW)
    assert isinstance(result, Message), result
    assert result.seq == body["seq"]
