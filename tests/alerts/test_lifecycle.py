"""The alarm lifecycle against a real PostgreSQL: episodes, flapping, concurrency, audit, bad input."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from alerts import (
    RULES,
    AlarmNotFound,
    Applied,
    InvalidInput,
    TransitionRefused,
    acknowledge,
    apply_pending,
    resolve,
    route,
    sweep,
)
from hub.detectors.base import KINDS, LEVELS
from tests.support import rows, scalar

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
_keys = itertools.count()


def detect(
    url: str,
    kind: str,
    level: str,
    subject: str,
    t: datetime,
    *,
    conn: psycopg.Connection[Any] | None = None,
    detail: str = "{}",
    window: tuple[datetime, datetime] | None = None,
) -> int:
    """Insert one detection as the hub does (with its NOTIFY); returns its id."""
    params = (
        f"{kind}:{level}:{subject}:{t.isoformat()}:{next(_keys)}",
        kind,
        level,
        t,
        subject,
        "fac-1",
        "101",
        subject,
        0.9,
        window[0] if window else None,
        window[1] if window else None,
        detail,
    )
    query = """
        INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, device_id,
                                confidence, window_start, window_end, detail)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id
    """
    if conn is not None:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(query, params).fetchone()
        c.execute("SELECT pg_notify('ankang_detections', '')")
        assert row is not None
        return int(row[0])


def apply(url: str, limit: int = 500) -> int:
    """Drain every pending detection; returns how many were applied."""

    async def run() -> int:
        total = 0
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while True:
                done: Applied = await apply_pending(conn, limit=limit)
                total += done.detections
                if done.detections < limit:
                    return total

    return asyncio.run(run())


def run_sweep(url: str, now: datetime) -> list[int]:
    async def run() -> list[int]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await sweep(conn, now)

    return asyncio.run(run())


def ack(url: str, alarm_id: int, actor: str = "nurse-li", note: str | None = None) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await acknowledge(conn, alarm_id, actor, "console", note)

    asyncio.run(run())


def close(
    url: str, alarm_id: int, resolution: str = "real_incident", actor: str = "nurse-li", **kw: Any
) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await resolve(conn, alarm_id, actor, "console", resolution, **kw)

    asyncio.run(run())


def alarms(url: str, alarm_type: str | None = None) -> list[tuple[Any, ...]]:
    """(id, type, priority, state, live, count, resolution, resolved_by) ordered by id."""
    return rows(
        url,
        """
        SELECT id, type, priority, state, live, count, resolution, resolved_by FROM alarms
        WHERE %s::text IS NULL OR type = %s ORDER BY id
        """,
        (alarm_type, alarm_type),
    )


def events(url: str, alarm_id: int) -> list[str]:
    return [
        r[0]
        for r in rows(url, "SELECT action FROM alarm_events WHERE alarm_id = %s ORDER BY id", (alarm_id,))
    ]


def test_a_fall_opens_one_high_alarm_with_its_evidence(database):
    window = (T0 - timedelta(seconds=2), T0 + timedelta(seconds=3))
    det = detect(database, "fall", "alarm", "w-101", T0, detail='{"peak_g": 4.2}', window=window)

    assert apply(database) == 1

    ((alarm_id, kind, priority, state, live, count, _, _),) = alarms(database)
    assert (kind, priority, state, live, count) == ("fall", "high", "open", True, 1)
    evidence, opened_at, device = rows(
        database, "SELECT evidence, opened_at, device_id FROM alarms WHERE id = %s", (alarm_id,)
    )[0]
    assert evidence["detection_id"] == det
    assert evidence["detail"] == {"peak_g": 4.2}
    assert evidence["confidence"] == pytest.approx(0.9)
    assert evidence["window"] == [window[0].isoformat(), window[1].isoformat()]
    assert opened_at == T0
    assert device == "w-101"
    assert events(database, alarm_id) == ["opened"]
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0
    assert apply(database) == 0  # nothing is applied twice


def test_repeats_of_an_open_fall_bump_its_count(database):
    detect(database, "fall", "alarm", "w-101", T0)
    detect(database, "fall", "alarm", "w-101", T0 + timedelta(seconds=30))
    apply(database)

    ((alarm_id, _, _, state, _, count, _, _),) = alarms(database)
    assert (state, count) == ("open", 2)
    assert scalar(database, "SELECT last_seen_at FROM alarms WHERE id = %s", (alarm_id,)) == T0 + timedelta(
        seconds=30
    )


def test_a_fall_after_acknowledgement_opens_a_new_alarm(database):
    detect(database, "fall", "alarm", "w-101", T0)
    apply(database)
    ((first, *_),) = alarms(database)
    ack(database, first)

    detect(database, "fall", "alarm", "w-101", T0 + timedelta(minutes=5))
    apply(database)

    (a, b) = alarms(database)
    assert (a[0], a[3], a[4], a[5]) == (first, "acknowledged", False, 1)  # not swallowed
    assert (b[3], b[4], b[5]) == ("open", True, 1)


def test_fire_stays_one_alarm_after_acknowledgement_until_resolved(database):
    room = "fac-1/101"
    detect(database, "fire", "alarm", room, T0)
    apply(database)
    ((fire, *_),) = alarms(database)
    ack(database, fire)

    detect(database, "fire", "alarm", room, T0 + timedelta(seconds=20))
    apply(database)
    ((same, _, _, state, live, count, _, _),) = alarms(database)
    assert (same, state, live, count) == (fire, "acknowledged", True, 2)

    close(database, fire, "real_incident", note="kitchen fire, extinguished")
    detect(database, "fire", "alarm", room, T0 + timedelta(minutes=30))
    apply(database)
    (old, new) = alarms(database)
    assert (old[3], old[4], old[6]) == ("resolved", False, "real_incident")
    assert (new[3], new[5]) == ("open", 1)
    assert events(database, fire) == ["opened", "acknowledged", "resolved"]


def test_a_gas_warning_then_alarm_is_one_alarm_raised_to_high(database):
    room = "fac-1/kitchen"
    detect(database, "gas", "warning", room, T0)
    apply(database)
    assert [a[2] for a in alarms(database)] == ["medium"]

    detect(database, "gas", "alarm", room, T0 + timedelta(seconds=40))
    detect(database, "gas", "warning", room, T0 + timedelta(seconds=50))  # never lowers it
    apply(database)

    ((alarm_id, kind, priority, _, _, count, _, _),) = alarms(database)
    assert (kind, priority, count) == ("gas", "high", 3)
    assert events(database, alarm_id) == ["opened", "raised"]


def test_flapping_device_keeps_one_alarm_then_resolves_after_the_hold_down(database):
    dev = "smoke-101"
    for i, kind in enumerate(["device_offline", "device_online", "device_offline", "device_online"]):
        detect(
            database,
            kind,
            "alarm" if kind == "device_offline" else "clear",
            dev,
            T0 + timedelta(seconds=60 * i),
        )
    apply(database)

    ((alarm_id, kind, priority, state, live, count, _, _),) = alarms(database)
    assert (kind, priority, state, live, count) == ("device_offline", "medium", "open", True, 2)
    back_online = T0 + timedelta(seconds=180)
    assert scalar(database, "SELECT cleared_at FROM alarms WHERE id = %s", (alarm_id,)) == back_online

    # Inside the 600-s hold-down nothing is resolved.
    assert run_sweep(database, back_online + timedelta(seconds=599)) == []
    assert alarms(database)[0][3] == "open"

    assert run_sweep(database, back_online + timedelta(seconds=600)) == [alarm_id]
    ((_, _, _, state, live, _, resolution, by),) = alarms(database)
    assert (state, live, resolution, by) == ("resolved", False, "cleared", "system")
    # applied in one batch, the first raise already finds the newest clear (t=180) recorded, and
    # the older clear and repeat in between leave it as it is: one "cleared" in the audit
    assert events(database, alarm_id) == ["opened", "cleared", "resolved"]

    # The next outage is a new alarm.
    detect(database, "device_offline", "alarm", dev, back_online + timedelta(hours=1))
    apply(database)
    assert [a[3] for a in alarms(database)] == ["resolved", "open"]


def test_a_clear_older_than_the_newest_repeat_does_not_clear(database):
    detect(database, "device_offline", "alarm", "s-1", T0 + timedelta(seconds=100))
    detect(database, "device_online", "clear", "s-1", T0 + timedelta(seconds=50))  # committed late
    apply(database)
    assert scalar(database, "SELECT cleared_at FROM alarms") is None
    assert run_sweep(database, T0 + timedelta(days=1)) == []


def test_fall_fire_gas_and_sos_are_never_auto_resolved(database):
    for kind, subject in [("fall", "w-1"), ("fire", "fac-1/101"), ("gas", "fac-1/102"), ("sos", "b-1")]:
        detect(database, kind, "alarm", subject, T0)
    detect(database, "fire", "clear", "fac-1/101", T0 + timedelta(seconds=60))
    detect(database, "gas", "clear", "fac-1/102", T0 + timedelta(seconds=60))
    apply(database)

    assert run_sweep(database, T0 + timedelta(days=30)) == []
    assert sorted((a[1], a[3], a[4]) for a in alarms(database)) == [
        ("fall", "open", True),
        ("fire", "open", True),
        ("gas", "open", True),
        ("sos", "open", True),
    ]
    # The fire's condition did end, and the console can show it.
    assert scalar(database, "SELECT cleared_at FROM alarms WHERE type = 'fire'") == T0 + timedelta(seconds=60)


def test_detections_that_raise_nothing_are_still_marked_applied(database):
    detect(database, "fire_test", "info", "fac-1/101", T0)
    detect(database, "vitals", "clear", "mat-1", T0)  # nothing to clear
    assert apply(database) == 2
    assert alarms(database) == []
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0


def test_a_detection_committed_late_with_a_lower_id_is_still_applied(database):
    with psycopg.connect(database) as slow:  # a hub transaction that commits late
        late = detect(database, "sos", "alarm", "b-7", T0, conn=slow)
        early = detect(database, "fall", "alarm", "w-1", T0 + timedelta(seconds=1))
        assert late < early
        assert apply(database) == 1  # the uncommitted one is invisible, not skipped for ever
        slow.commit()
    assert apply(database) == 1
    assert sorted(a[1] for a in alarms(database)) == ["fall", "sos"]
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0


def test_two_consumers_apply_every_detection_exactly_once(database):
    rng = random.Random(5)
    subjects = [f"dev-{i}" for i in range(6)]
    menu = [
        ("fall", "alarm"),
        ("fire", "alarm"),
        ("gas", "warning"),
        ("gas", "alarm"),
        ("device_offline", "alarm"),
        ("device_online", "clear"),
        ("fire_test", "info"),
    ]
    raising = 0
    with psycopg.connect(database, autocommit=True) as conn, conn.cursor() as cur:
        batch = []
        for i in range(200):
            kind, level = rng.choice(menu)
            subject = rng.choice(subjects)
            effect = route(kind, level)
            raising += effect is not None and effect.raise_
            batch.append((f"k{i}", kind, level, T0 + timedelta(seconds=i), subject, 0.9))
        cur.executemany(
            "INSERT INTO detections (key, kind, level, t, subject, confidence)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            batch,
        )

    start = threading.Barrier(2)
    applied: list[int] = []
    failures: list[BaseException] = []

    def consumer() -> None:
        try:
            start.wait()
            applied.append(apply(database, limit=7))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=consumer, name=f"consumer-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert sum(applied) == 200
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0
    assert scalar(database, "SELECT sum(count) FROM alarms") == raising
    # Nobody acknowledged, so each (subject, type) has exactly one alarm, and it is live.
    per_key = rows(database, "SELECT subject, type, count(*), bool_and(live) FROM alarms GROUP BY 1, 2")
    assert per_key
    assert all(n == 1 and live for _, _, n, live in per_key)


def test_the_audit_log_refuses_update_delete_and_truncate(database):
    detect(database, "sos", "alarm", "b-1", T0)
    apply(database)
    for statement in (
        "UPDATE alarm_events SET actor = 'someone-else'",
        "DELETE FROM alarm_events",
        "TRUNCATE alarm_events",
    ):
        with (
            psycopg.connect(database, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    assert rows(database, "SELECT action, actor FROM alarm_events") == [("opened", "system")]


def _snapshot(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return (
        rows(url, "SELECT * FROM alarms ORDER BY id"),
        rows(url, "SELECT * FROM alarm_events ORDER BY id"),
    )


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda url, a: ack(url, a + 1000), AlarmNotFound),
        (lambda url, a: close(url, a + 1000), AlarmNotFound),
        (lambda url, a: close(url, a, "cleared"), InvalidInput),  # reserved for the sweep
        (lambda url, a: close(url, a, "oops"), InvalidInput),
        (lambda url, a: close(url, a, note="x" * 2001), InvalidInput),
        (lambda url, a: ack(url, a, note="x" * 2001), InvalidInput),
        (lambda url, a: ack(url, a, actor="  "), InvalidInput),
        (lambda url, a: close(url, a, actor=""), InvalidInput),
    ],
    ids=[
        "ack-unknown",
        "resolve-unknown",
        "resolution-cleared",
        "resolution-bad",
        "resolve-note-2001",
        "ack-note-2001",
        "ack-empty-actor",
        "resolve-empty-actor",
    ],
)
def test_bad_requests_are_refused_and_change_nothing(database, action, error):
    detect(database, "fall", "alarm", "w-1", T0)
    apply(database)
    ((alarm_id, *_),) = alarms(database)
    before = _snapshot(database)
    with pytest.raises(error):
        action(database, alarm_id)
    assert _snapshot(database) == before


def test_transitions_out_of_order_are_refused_and_change_nothing(database):
    detect(database, "fall", "alarm", "w-1", T0)
    apply(database)
    ((alarm_id, *_),) = alarms(database)
    ack(database, alarm_id, note="x" * 2000)  # exactly the limit is fine

    before = _snapshot(database)
    with pytest.raises(TransitionRefused, match="already acknowledged"):
        ack(database, alarm_id)
    assert _snapshot(database) == before

    close(database, alarm_id, "false_alarm")
    before = _snapshot(database)
    with pytest.raises(TransitionRefused, match="already resolved"):
        close(database, alarm_id, "test")
    with pytest.raises(TransitionRefused, match="already resolved"):
        ack(database, alarm_id)
    assert _snapshot(database) == before
    assert rows(
        database,
        "SELECT action, actor, channel FROM alarm_events WHERE alarm_id = %s ORDER BY id",
        (alarm_id,),
    ) == [
        ("opened", "system", "detector"),
        ("acknowledged", "nurse-li", "console"),
        ("resolved", "nurse-li", "console"),
    ]


def test_every_detection_kind_is_routed_and_every_alarm_type_is_reachable():
    raised = set()
    for kind in KINDS:
        effects = [e for level in LEVELS if (e := route(kind, level)) is not None]
        if kind == "fire_test":
            assert effects == []  # an info, counted for GB 50440, not an alarm
            continue
        assert effects, f"detections of kind {kind} would be ignored"
        for effect in effects:
            if effect.raise_:
                assert effect.type in RULES
                raised.add(effect.type)
            else:
                assert set(effect.clears) <= set(RULES)
    assert raised == set(RULES)
    for alarm_type in ("fall", "fire", "gas", "sos"):
        assert RULES[alarm_type].priority == "high"
        assert RULES[alarm_type].auto_resolve_after_s is None  # a person resolves them


def test_the_database_itself_refuses_a_second_live_alarm_for_one_episode(database):
    insert = (
        "INSERT INTO alarms (type, priority, subject, opened_at, last_seen_at)"
        " VALUES ('fall', 'high', 'w-1', now(), now())"
    )
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)  # whatever code path tries it, not only the service's
        conn.execute("UPDATE alarms SET live = false, state = 'acknowledged', acknowledged_at = now()")
        conn.execute(insert)  # a new episode once the first is no longer live
    assert scalar(database, "SELECT count(*) FROM alarms") == 2


def test_a_back_online_applied_before_the_older_offline_still_clears_it(database):
    detect(database, "device_online", "clear", "s-2", T0 + timedelta(seconds=12))  # committed first
    apply(database)
    detect(database, "device_offline", "alarm", "s-2", T0 + timedelta(seconds=10))  # committed late
    apply(database)
    ((alarm_id, *_),) = alarms(database)
    assert scalar(database, "SELECT cleared_at FROM alarms") == T0 + timedelta(seconds=12)
    assert run_sweep(database, T0 + timedelta(seconds=12 + 600)) == [alarm_id]
    assert events(database, alarm_id) == ["opened", "cleared", "resolved"]
