"""Episodes that end while an alarm stays acknowledged, and priority raises after an
acknowledgement, against a real PostgreSQL on an injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg

from alerts import apply_pending
from tests.support import rows, scalar

from .test_escalation import outbox, raise_alarm, registry, run_escalate, staff
from .test_lifecycle import T0, ack, alarms, apply, events


def clear(url: str, kind: str, subject: str, t: object) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, confidence)"
            " VALUES (%s, %s, 'clear', %s, %s, 'fac-1', '101', 0.9)",
            (f"clear:{kind}:{subject}:{t}", kind, t, subject),
        )
    apply(url)


def test_a_fire_after_an_acknowledged_fire_was_cleared_is_a_new_alarm_that_escalates(database):
    registry(database)
    staff(database)
    first = raise_alarm(database, "fire", "fac-1/101", T0)
    run_escalate(database, T0)
    ack(database, first)
    clear(database, "fire", "fac-1/101", T0 + timedelta(minutes=10))

    day = T0 + timedelta(days=1)
    second = raise_alarm(database, "fire", "fac-1/101", day)
    run_escalate(database, day)

    assert second != first
    (old, new) = alarms(database, "fire")
    # (id, type, priority, state, live, count, resolution, resolved_by)
    assert (old[0], old[3], old[4], old[5], old[6], old[7]) == (
        first,
        "resolved",
        False,
        1,
        "cleared",
        "system",
    )
    assert (new[0], new[3], new[4], new[5]) == (second, "open", True, 1)
    assert events(database, first)[-1] == "resolved"
    assert outbox(database, second) == [("care", "alarm", 0, "pending")]  # somebody is told


def test_a_fire_that_keeps_alarming_before_any_clear_is_still_the_same_alarm(database):
    registry(database)
    first = raise_alarm(database, "fire", "fac-1/101", T0)
    ack(database, first)
    # A clear older than the repeat's predecessor does not matter; no clear at all: a repeat.
    assert raise_alarm(database, "fire", "fac-1/101", T0 + timedelta(minutes=1)) == first
    # A repeat older than the clear (out of order) belongs to the old episode too.
    clear(database, "fire", "fac-1/101", T0 + timedelta(minutes=10))
    assert raise_alarm(database, "fire", "fac-1/101", T0 + timedelta(minutes=5)) == first
    ((alarm_id, _, _, state, live, count, _, _),) = alarms(database, "fire")
    assert (alarm_id, state, live, count) == (first, "acknowledged", True, 3)


def test_racing_workers_open_exactly_one_new_episode(database):
    registry(database)
    first = raise_alarm(database, "fire", "fac-1/101", T0)
    ack(database, first)
    clear(database, "fire", "fac-1/101", T0 + timedelta(minutes=10))
    with psycopg.connect(database, autocommit=True) as conn:
        for i in range(20):
            conn.execute(
                "INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, confidence)"
                " VALUES (%s, 'fire', 'alarm', %s, 'fac-1/101', 'fac-1', '101', 0.9)",
                (f"race{i}", T0 + timedelta(days=1, seconds=i)),
            )

    async def drain(conn: psycopg.AsyncConnection[object]) -> None:
        while (await apply_pending(conn, limit=1)).detections:
            pass

    async def race() -> None:
        conns = [await psycopg.AsyncConnection.connect(database, autocommit=True) for _ in range(4)]
        try:
            await asyncio.gather(*(drain(c) for c in conns))
        finally:
            for c in conns:
                await c.close()

    asyncio.run(race())
    apply(database)
    assert [(r[3], r[4], r[5]) for r in alarms(database, "fire")] == [
        ("resolved", False, 1),
        ("open", True, 20),
    ]


def test_a_gas_alarm_after_an_acknowledged_warning_reopens_it_and_escalates_again(database):
    registry(database)
    staff(database)
    gas = raise_alarm(database, "gas", "fac-1/101", T0, level="warning")
    run_escalate(database, T0)
    run_escalate(database, T0 + timedelta(seconds=60))
    ack(database, gas)

    raised_at = T0 + timedelta(minutes=10)
    assert raise_alarm(database, "gas", "fac-1/101", raised_at, level="alarm") == gas
    ((_, _, priority, state, live, count, _, _),) = alarms(database, "gas")
    assert (priority, state, live, count) == ("high", "open", True, 2)
    assert events(database, gas)[-2:] in (["raised", "reopened"], ["reopened", "raised"])
    assert scalar(database, "SELECT acknowledged_by FROM alarms WHERE id = %s", (gas,)) is None

    # Escalation starts again from step 0, counted from the raise, not from opened_at.
    run_escalate(database, raised_at)
    assert outbox(database, gas)[2:] == [("care", "alarm", 0, "pending")]
    assert run_escalate(database, raised_at + timedelta(seconds=59)) == []
    run_escalate(database, raised_at + timedelta(seconds=60))
    assert outbox(database, gas)[3:] == [("super", "escalation", 1, "pending")]
    assert rows(database, "SELECT escalation_level FROM alarms WHERE id = %s", (gas,)) == [(2,)]


def test_a_cleared_condition_is_not_escalated_further_until_it_repeats(database):
    registry(database)
    staff(database)
    offline = raise_alarm(database, "device_offline", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    clear(database, "device_online", "w-a", T0 + timedelta(seconds=30))

    for s in (60, 180, 480, 590):
        run_escalate(database, T0 + timedelta(seconds=s))
    assert outbox(database, offline) == [("care", "alarm", 0, "pending")]

    # It goes offline again within the hold-down: the escalation resumes.
    again = T0 + timedelta(seconds=595)
    assert raise_alarm(database, "device_offline", "w-a", again, device="w-a") == offline
    run_escalate(database, T0 + timedelta(seconds=600))
    assert sorted(r[0] for r in outbox(database, offline)) == ["care", "family-a", "manager", "super"]


def test_an_alarm_cleared_before_its_first_step_still_tells_the_first_step(database):
    registry(database)
    staff(database)
    offline = raise_alarm(database, "device_offline", "w-a", T0, resident="r-a", device="w-a")
    clear(database, "device_online", "w-a", T0 + timedelta(seconds=1))
    run_escalate(database, T0 + timedelta(seconds=300))
    assert outbox(database, offline) == [("care", "alarm", 0, "pending")]
