"""Escalation against a real PostgreSQL, on an injected clock: steps, acks, reminders, recipients."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from alerts import InvalidInput, Step, Taken, add_contact, default_steps, escalate, parse_steps, set_policy
from tests.support import rows, scalar

from .test_lifecycle import T0, ack, apply, close

_keys = itertools.count()


def registry(url: str) -> None:
    """One care home (two residents, two rooms) and one home care bed it supervises."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO facilities (id, name, kind, tz) VALUES"
            " ('fac-1', '青岛颐和养老院', 'institution', 'Asia/Shanghai')"
        )
        conn.execute(
            "INSERT INTO facilities (id, name, kind, tz, supervisor_id) VALUES"
            " ('home-1', '张家（家庭养老床位）', 'home', 'Asia/Shanghai', 'fac-1')"
        )
        conn.execute(
            "INSERT INTO rooms (facility_id, id, name) VALUES ('fac-1', '101', '101'),"
            " ('fac-1', '102', '102'), ('home-1', 'bedroom', '卧室')"
        )
        conn.execute(
            "INSERT INTO residents (id, facility_id, name) VALUES ('r-a', 'fac-1', '王芳'),"
            " ('r-b', 'fac-1', '李明'), ('r-h', 'home-1', '张伯')"
        )
        conn.execute(
            "INSERT INTO beds (facility_id, room_id, id, resident_id) VALUES ('fac-1', '101', 'A', 'r-a'),"
            " ('fac-1', '102', 'A', 'r-b'), ('home-1', 'bedroom', '1', 'r-h')"
        )
        conn.execute(
            "INSERT INTO devices (id, kind, facility_id, room_id, bed_id, resident_id, heartbeat_s) VALUES"
            " ('w-a', 'wearable', 'fac-1', '101', 'A', 'r-a', 60),"
            " ('w-b', 'wearable', 'fac-1', '102', 'A', 'r-b', 60),"
            " ('w-h', 'wearable', 'home-1', 'bedroom', '1', 'r-h', 60)"
        )


def raise_alarm(
    url: str,
    kind: str,
    subject: str,
    t: Any,
    *,
    level: str = "alarm",
    facility: str = "fac-1",
    room: str | None = "101",
    resident: str | None = None,
    device: str | None = None,
) -> int:
    """A detection as the hub writes it, applied; returns the alarm's id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, resident_id,"
            " device_id, confidence) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0.9)",
            (f"k{next(_keys)}", kind, level, t, subject, facility, room, resident, device),
        )
    apply(url)
    return int(scalar(url, "SELECT max(id) FROM alarms WHERE subject = %s", (subject,)))


def contact(
    url: str,
    name: str,
    role: str,
    *,
    facility: str = "fac-1",
    resident: str | None = None,
    language: str = "zh",
    target: str | None = None,
) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await add_contact(
                conn,
                facility,
                name,
                role,
                target or f"json://127.0.0.1:9/{name}",
                language=language,
                resident_id=resident,
            )

    return asyncio.run(run())


def policy(url: str, facility: str, steps: list[dict[str, Any]], alarm_type: str = "*") -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await set_policy(conn, facility, steps, alarm_type)

    asyncio.run(run())


def run_escalate(url: str, now: Any, templates: Mapping[str, tuple[str, str]] | None = None) -> list[Taken]:
    async def run() -> list[Taken]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            if templates is None:
                return await escalate(conn, now)
            return await escalate(conn, now, templates=templates)

    return asyncio.run(run())


def outbox(url: str, alarm_id: int) -> list[tuple[Any, ...]]:
    """(contact name, kind, step, status) in order."""
    return rows(
        url,
        "SELECT c.name, n.kind, n.step, n.status FROM notifications n JOIN contacts c ON c.id = n.contact_id"
        " WHERE n.alarm_id = %s ORDER BY n.id",
        (alarm_id,),
    )


def audit(url: str, alarm_id: int) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT action, detail->>'step' FROM alarm_events WHERE alarm_id = %s"
        " AND action IN ('escalated', 'reminded') ORDER BY id",
        (alarm_id,),
    )


def staff(url: str) -> None:
    contact(url, "care", "care_worker")
    contact(url, "super", "supervisor")
    contact(url, "manager", "manager")
    contact(url, "desk-119", "regulator_desk")
    contact(url, "family-a", "family", resident="r-a")
    contact(url, "family-b", "family", resident="r-b")


def test_the_default_policy_escalates_a_fire_step_by_step_then_reminds(database):
    registry(database)
    staff(database)
    fire = raise_alarm(database, "fire", "fac-1/101", T0)
    s = timedelta(seconds=1)

    run_escalate(database, T0)
    assert outbox(database, fire) == [("care", "alarm", 0, "pending")]
    assert run_escalate(database, T0 + 59 * s) == []
    run_escalate(database, T0 + 60 * s)
    run_escalate(database, T0 + 60 * s)  # the same instant again takes nothing twice
    assert outbox(database, fire)[1:] == [("super", "escalation", 1, "pending")]
    run_escalate(database, T0 + 180 * s)
    # A fire in a care home names no resident, so no family is told.
    assert outbox(database, fire)[2:] == [("manager", "escalation", 2, "pending")]
    run_escalate(database, T0 + 300 * s)
    assert outbox(database, fire)[3:] == [("desk-119", "escalation", 3, "pending")]

    # Reminders to the last step, every 5 min after it, never more often.
    assert run_escalate(database, T0 + 599 * s) == []
    run_escalate(database, T0 + 600 * s)
    run_escalate(database, T0 + 601 * s)
    run_escalate(database, T0 + 899 * s)
    run_escalate(database, T0 + 900 * s)
    assert outbox(database, fire)[4:] == [
        ("desk-119", "reminder", 1, "pending"),
        ("desk-119", "reminder", 2, "pending"),
    ]
    assert audit(database, fire) == [
        ("escalated", "0"),
        ("escalated", "1"),
        ("escalated", "2"),
        ("escalated", "3"),
        ("reminded", "1"),
        ("reminded", "2"),
    ]
    assert scalar(database, "SELECT escalation_level FROM alarms WHERE id = %s", (fire,)) == 4


def test_overdue_steps_are_taken_in_order_and_once_when_sweeps_race(database):
    registry(database)
    staff(database)
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")

    async def race() -> None:
        conns = [await psycopg.AsyncConnection.connect(database, autocommit=True) for _ in range(4)]
        try:
            await asyncio.gather(*(escalate(c, T0 + timedelta(minutes=3)) for c in conns))
        finally:
            for c in conns:
                await c.close()

    asyncio.run(race())
    assert outbox(database, fall) == [
        ("care", "alarm", 0, "pending"),
        ("super", "escalation", 1, "pending"),
        ("manager", "escalation", 2, "pending"),
        ("family-a", "escalation", 2, "pending"),
    ]
    assert [a for a, _ in audit(database, fall)] == ["escalated"] * 3


def test_acknowledgement_stops_the_escalation(database):
    registry(database)
    staff(database)
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    ack(database, fall)
    for minutes in (1, 3, 5, 30):
        assert run_escalate(database, T0 + timedelta(minutes=minutes)) == []
    assert outbox(database, fall) == [("care", "alarm", 0, "pending")]


def test_a_fire_confirmed_as_real_goes_to_the_regulator_desk_once(database):
    registry(database)
    staff(database)
    real = raise_alarm(database, "fire", "fac-1/101", T0)
    false = raise_alarm(database, "fire", "fac-1/102", T0, room="102")
    run_escalate(database, T0)
    for alarm_id in (real, false):
        ack(database, alarm_id)
    close(database, real, "real_incident")
    close(database, false, "false_alarm")

    run_escalate(database, T0 + timedelta(seconds=20))
    run_escalate(database, T0 + timedelta(seconds=21))
    assert outbox(database, real) == [
        ("care", "alarm", 0, "pending"),
        ("desk-119", "escalation", 3, "pending"),
    ]
    assert outbox(database, false) == [("care", "alarm", 0, "pending")]
    assert run_escalate(database, T0 + timedelta(hours=1)) == []


def test_family_hears_only_about_their_own_resident(database):
    registry(database)
    staff(database)
    a = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    b = raise_alarm(database, "fall", "w-b", T0, resident="r-b", device="w-b", room="102")
    run_escalate(database, T0 + timedelta(minutes=3))

    family = rows(
        database,
        "SELECT c.name, n.alarm_id, n.body FROM notifications n JOIN contacts c ON c.id = n.contact_id"
        " WHERE c.role = 'family' ORDER BY c.name",
    )
    assert [(name, alarm_id) for name, alarm_id, _ in family] == [("family-a", a), ("family-b", b)]
    body_a, body_b = family[0][2], family[1][2]
    assert "王芳" in body_a
    assert "李明" not in body_a
    assert "102" not in body_a
    assert "李明" in body_b
    assert "王芳" not in body_b


def test_a_home_care_bed_tells_the_family_first_then_the_supervising_desk(database):
    registry(database)
    staff(database)  # the care home's own staff must not hear about the home bed
    contact(database, "son", "family", facility="home-1", resident="r-h")
    contact(database, "duty-desk", "institution_desk")
    fall = raise_alarm(
        database, "fall", "w-h", T0, facility="home-1", room="bedroom", resident="r-h", device="w-h"
    )
    fire = raise_alarm(database, "fire", "home-1/bedroom", T0, facility="home-1", room="bedroom")

    run_escalate(database, T0)
    assert outbox(database, fall) == [("son", "alarm", 0, "pending")]
    assert outbox(database, fire) == [("son", "alarm", 0, "pending")]  # the home's own fire
    run_escalate(database, T0 + timedelta(seconds=60))
    assert outbox(database, fall)[1:] == [("duty-desk", "escalation", 1, "pending")]
    body = scalar(database, "SELECT body FROM notifications WHERE alarm_id = %s LIMIT 1", (fall,))
    assert "张伯" in body
    assert "张家" in body


def test_a_facility_policy_replaces_the_default_per_type(database):
    registry(database)
    staff(database)
    policy(database, "fac-1", [{"after_s": 0, "roles": ["supervisor"]}])
    policy(
        database,
        "fac-1",
        [{"after_s": 0, "roles": ["care_worker", "supervisor"]}, {"after_s": 30, "roles": ["manager"]}],
        alarm_type="sos",
    )
    sos = raise_alarm(database, "sos", "b-1", T0, resident="r-a")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0 + timedelta(seconds=30))
    assert outbox(database, sos) == [
        ("care", "alarm", 0, "pending"),
        ("super", "alarm", 0, "pending"),
        ("manager", "escalation", 1, "pending"),
    ]
    assert outbox(database, fall) == [("super", "alarm", 0, "pending")]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "non-empty list"),
        ([{"after_s": -1, "roles": ["care_worker"]}], "after_s"),
        ([{"after_s": 0, "roles": ["janitor"]}], "roles"),
        ([{"after_s": 60, "roles": ["care_worker"]}, {"after_s": 10, "roles": ["manager"]}], "earlier"),
        ([{"after_s": 0, "roles": ["manager"], "remind_every_s": 0}], "remind_every_s"),
        ([{"after_s": 0, "roles": ["manager"], "when": "always"}], "unknown keys"),
    ],
)
def test_bad_policies_are_refused(steps, message):
    with pytest.raises(InvalidInput, match=message):
        parse_steps(steps)


def test_bad_contacts_are_refused(database):
    registry(database)
    for kwargs, message in [
        ({"role": "family"}, "family contact"),
        ({"role": "care_worker", "resident": "r-a"}, "family contact"),
        ({"role": "janitor"}, "role"),
        ({"role": "manager", "language": "fr"}, "language"),
        ({"role": "manager", "target": "not a url"}, "apprise URL"),
        ({"role": "manager", "facility": "nowhere"}, "unknown facility"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            contact(database, "x", **kwargs)
    assert scalar(database, "SELECT count(*) FROM contacts") == 0


def test_messages_say_what_who_where_when_and_how_to_acknowledge(database):
    registry(database)
    contact(database, "care-zh", "care_worker")
    contact(database, "care-en", "care_worker", language="en")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    (zh_subject, zh_body), (en_subject, en_body) = rows(
        database, "SELECT subject, body FROM notifications WHERE alarm_id = %s ORDER BY id", (fall,)
    )
    # T0 is 02:00 UTC: 10:00 in the facility's own zone.
    assert zh_subject == "[紧急] 跌倒：王芳，青岛颐和养老院，101 房间，A 床"
    for text in ("王芳", "101 房间", "2026-11-28 10:00:00", "Asia/Shanghai", f"ankang alarms ack {fall}"):
        assert text in zh_body
    assert en_subject == "[URGENT] Fall: 王芳, 青岛颐和养老院, room 101, bed A"
    for text in ("Who: 王芳", "room 101", "2026-11-28 10:00:00", f"ankang alarms ack {fall} --by"):
        assert text in en_body


def test_a_template_that_cannot_render_fails_its_message_with_the_reason(database):
    registry(database)
    contact(database, "care", "care_worker")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    broken = {"zh": ("{type_word} {ward_name}", "{who}"), "en": ("x", "y")}
    taken = run_escalate(database, T0, templates=broken)
    assert [(t.action, t.step, t.notifications) for t in taken] == [("escalated", 0, 1)]
    ((status, error),) = rows(
        database, "SELECT status, last_error FROM notifications WHERE alarm_id = %s", (fall,)
    )
    assert status == "failed"
    assert "{ward_name}" in error
    assert scalar(database, "SELECT escalation_level FROM alarms WHERE id = %s", (fall,)) == 1


def test_the_built_in_default_policy():
    care_home_fire = default_steps("fire", "high", "institution")
    assert [(s.after_s, s.roles) for s in care_home_fire] == [
        (0, ("care_worker",)),
        (60, ("supervisor",)),
        (180, ("family", "manager")),
        (300, ("regulator_desk",)),
    ]
    assert care_home_fire[-1].remind_every_s == 300
    assert "regulator_desk" not in {r for s in default_steps("fall", "high", "institution") for r in s.roles}
    assert default_steps("fall", "high", "home") == (
        Step(0, ("family",)),
        Step(60, ("institution_desk",), 300),
    )
    assert default_steps("low_battery", "low", "institution") == (Step(0, ("care_worker",)),)
    assert default_steps("low_battery", "low", "home") == (Step(0, ("family",)),)
    # Every default is a valid policy.
    for kind in ("institution", "home"):
        for alarm_type, priority in (("fire", "high"), ("bed_exit", "medium"), ("tamper", "low")):
            steps = default_steps(alarm_type, priority, kind)
            assert parse_steps([s.as_json() for s in steps]) == steps
