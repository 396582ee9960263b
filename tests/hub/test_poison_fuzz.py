"""Arbitrary JSON from devices, through decode, the detectors and storage on the real database.

Every example is one batch: a valid reading from a neighbour, then generated payloads on
contract topics (keys and strings with control characters, NUL and lone surrogates,
deep nesting, odd numbers), then another valid reading. Whatever the generated messages
are, the batch commits, the neighbours' readings are stored, and every generated message
is accounted for: stored, quarantined or dead-lettered, never lost and never an exception.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.detectors.engine import DetectionEngine
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import Database
from tests.hub.test_detection import apply, body
from tests.hub.test_poison import TWO_HOMES

# Every code point, lone surrogates and NUL included (hypothesis leaves surrogates out by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)


def _dumps(obj: Any) -> bytes:
    """JSON as a device might send it: lone surrogates as \\uD8xx escapes, NaN as a bare
    token (not JSON, so it must be refused as such)."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()


def _message(now: float) -> st.SearchStrategy[tuple[str, bytes]]:
    valid_ts = st.integers(int(now * 1000) - 600_000, int(now * 1000))
    ts = valid_ts | valid_ts | st.sampled_from([int(now * 1000) + 86_400_000 * 2, 1, "2026-01-01T00:00:00"])
    seq = st.integers(0, 2**40) | st.integers(0, 2**40) | st.integers(-5, 2**64) | any_text
    detail = st.dictionaries(any_text, json_values, max_size=4) | json_values
    event = st.fixed_dictionaries(
        {"ts": ts, "seq": seq, "event": st.sampled_from(["sos_pressed", "smoke_alarm", "test", "tamper"])},
        optional={"detail": detail},
    ) | st.fixed_dictionaries({"ts": ts, "seq": seq, "event": any_text, "extra": json_values})
    telemetry = st.fixed_dictionaries(
        {
            "ts": ts,
            "seq": seq,
            "metrics": st.dictionaries(st.sampled_from(["temp_c", "occupied", "hr_bpm"]), numbers),
        },
        optional={"rate_hz": numbers, "acc_g": json_values},
    ) | st.fixed_dictionaries({"ts": ts, "seq": seq, "metrics": st.dictionaries(any_text, json_values)})
    status = st.fixed_dictionaries(
        {"ts": ts, "seq": seq, "state": st.sampled_from(["online", "offline"]) | any_text},
        optional={"fw": any_text, "heartbeat_s": json_values},
    )
    # well-formed but for their free text: what reaches the detectors and the database
    pressed = st.fixed_dictionaries(
        {
            "ts": valid_ts,
            "seq": st.integers(0, 2**40),
            "event": st.sampled_from(["sos_pressed", "smoke_alarm", "test"]),
            "detail": st.dictionaries(any_text, json_values, max_size=4),
        }
    )
    return st.one_of(
        st.tuples(st.sampled_from(["ankang/v1/sos-a/event", "ankang/v1/smoke-b/event"]), pressed.map(_dumps)),
        st.tuples(st.sampled_from(["ankang/v1/sos-a/event", "ankang/v1/smoke-b/event"]), pressed.map(_dumps)),
        st.tuples(st.just("ankang/v1/sos-a/event"), event.map(_dumps)),
        st.tuples(st.just("ankang/v1/smoke-b/event"), event.map(_dumps)),
        st.tuples(st.just("ankang/v1/mat-b/telemetry"), telemetry.map(_dumps)),
        st.tuples(st.just("ankang/v1/sos-a/status"), status.map(_dumps)),
        st.tuples(
            st.sampled_from(["ankang/v1/sos-a/telemetry", "ankang/v1/x\u00e9/event"]), json_values.map(_dumps)
        ),
        st.tuples(st.just("ankang/v1/smoke-b/telemetry"), st.binary(max_size=64)),
    )


def test_arbitrary_json_never_stops_ingest_and_never_loses_a_neighbour(database):
    apply(database, TWO_HOMES)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (id, kind, facility_id, heartbeat_s)"
            " VALUES ('good-1', 'smoke_detector', 'home-a', 60)"
        )
    loop = asyncio.new_event_loop()
    db = Database(database)
    loop.run_until_complete(db.__aenter__())
    registry = RegistryCache(db, database)
    loop.run_until_complete(registry.load_all())
    engine = DetectionEngine(registry.get, None)
    now = time.time()
    engine.restore(registry.all(), [], {}, now)
    ingest = Ingestor(db, registry, HubMetrics(), engine=engine)
    state = {"seq": 0, "mid": 0}
    seen = {"accepted": 0, "quarantined": 0, "stored": 0}

    def count(query: str) -> int:
        with psycopg.connect(database) as conn:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(st.lists(_message(now), min_size=1, max_size=6))
    def one_batch(generated: list[tuple[str, bytes]]) -> None:
        def good() -> Inbound:
            state["seq"] += 1
            state["mid"] += 1
            payload = body(state["seq"], now - 3600 + state["seq"], metrics={"temp_c": 21.0})
            return Inbound("ankang/v1/good-1/telemetry", payload, state["mid"], 1, time.time(), 1)

        first = good()
        batch = [first]
        for topic, payload in generated:
            state["mid"] += 1
            batch.append(Inbound(topic, payload, state["mid"], 1, time.time(), 1))
        last = good()
        batch.append(last)
        before = count("SELECT count(*) FROM messages WHERE device_id = 'good-1'")

        async def run() -> Any:
            try:
                parts = [await ingest.prepare(batch)]
            except Exception:  # the hub's own path for a batch that raises
                parts = await ingest.prepare_isolated(batch)
            results = [await ingest.commit(p) for p in parts]
            return parts, results

        parts, results = loop.run_until_complete(run())
        assert all(r is not None for r in results)
        assert count("SELECT count(*) FROM messages WHERE device_id = 'good-1'") == before + 2
        handled = sum(
            len(p.accepted) + len(p.quarantined) + len(p.dead) + p.redelivered + p.foreign for p in parts
        )
        # a raw message maps to exactly one outcome here (no adapters): none went missing
        assert handled == len(batch)
        seen["accepted"] += sum(len(p.accepted) for p in parts) - 2
        seen["quarantined"] += sum(len(p.quarantined) for p in parts)
        seen["stored"] += sum(r.stored for r in results if r is not None) - 2

    try:
        one_batch()
    finally:
        loop.run_until_complete(db.__aexit__(None, None, None))
        loop.close()
    assert count("SELECT count(*) FROM dead_letters") == 0  # nothing needed the last resort
    # the generator reaches both sides of the contract, and storage with what it accepts
    assert seen["accepted"] > 10 and seen["quarantined"] > 100, seen
    # accepted and not already stored (a generated duplicate): stored, exactly once
    assert count("SELECT count(*) FROM messages WHERE device_id <> 'good-1'") == seen["stored"]
