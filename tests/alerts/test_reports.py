"""Regulator figures against a real PostgreSQL: two districts, four facilities, alarms with known
times, resolutions and acknowledgements, and exact figures computed by hand."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg
import pytest

from alerts import AlertsUnavailable, InvalidInput
from alerts.reports import (
    FalseAlarmDay,
    Figures,
    ack_times,
    coverage,
    daily_series,
    device_online,
    district_summaries,
    district_summary,
    facilities,
    facility_summary,
    fire_alarms,
    monthly_tests,
    nursing_beds,
    open_faults,
)
from alerts.rules import RULES
from devices.registry import Registry, parse_facility_yaml

T = TypeVar("T")
CST = ZoneInfo("Asia/Shanghai")
# 12:00 in Qingdao on 29 November; a 30-day window runs from 31 October 00:00 local.
NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
A, B = "市南区", "崂山区"
SCOPE_A = {"care-a1", "care-a2", "home-a3"}
EVERYTHING = SCOPE_A | {"care-b1"}

REGISTRY = f"""
facilities:
  - id: care-a1
    name: 颐和养老院
    district: {A}
    rooms:
      - id: "101"
        beds: [{{id: A, nursing: true}}, {{id: B, nursing: true}}]
      - id: "102"
        beds: [{{id: A, nursing: true}}, {{id: B}}]
      - id: kitchen
        kind: kitchen
  - id: care-a2
    district: {A}
    rooms:
      - id: "201"
        beds: [{{id: A, nursing: true}}, {{id: B, nursing: true}}]
  - id: home-a3
    kind: home
    district: {A}
    supervisor: care-a1
    rooms:
      - id: home
        beds: [{{id: A}}]
  - id: care-b1
    district: {B}
    rooms:
      - id: "301"
        beds: [{{id: A}}]
devices:
  - {{id: smoke-a1-101, kind: smoke_detector, facility: care-a1, room: "101"}}
  - {{id: smoke-a1-102, kind: smoke_detector, facility: care-a1, room: "102"}}
  - {{id: mat-a1, kind: bed_sensor, facility: care-a1, room: "101", bed: A}}
  - {{id: sos-a1, kind: sos_button, facility: care-a1, room: "102"}}
  - {{id: wear-a1, kind: wearable, facility: care-a1}}
  - {{id: smoke-a2-201, kind: smoke_detector, facility: care-a2, room: "201"}}
  - {{id: smoke-a3, kind: smoke_detector, facility: home-a3, room: home}}
  - {{id: smoke-b1-301, kind: smoke_detector, facility: care-b1, room: "301"}}
  - {{id: gas-b1, kind: gas_detector, facility: care-b1, room: "301"}}
"""

_subjects = itertools.count()


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CST)


def alarm(
    conn: psycopg.Connection[Any],
    alarm_type: str,
    facility: str,
    opened: datetime,
    *,
    ack_s: float | None = None,
    resolution: str | None = None,
    cleared: datetime | None = None,
    escalation_from: datetime | None = None,
    device: str | None = None,
) -> None:
    """One alarm as the lifecycle leaves it: acknowledged ``ack_s`` after it was called,
    resolved 10 min after it opened when it has a resolution."""
    called = escalation_from or opened
    acked = None if ack_s is None else called + timedelta(seconds=ack_s)
    resolved = None if resolution is None else opened + timedelta(minutes=10)
    state = "resolved" if resolution else "acknowledged" if acked else "open"
    conn.execute(
        """
        INSERT INTO alarms (type, priority, subject, facility_id, device_id, state, live, opened_at,
                            last_seen_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by,
                            resolution, cleared_at, escalation_from)
        VALUES (%s, %s, %s, %s, %s, %s, false, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            alarm_type,
            RULES[alarm_type].priority,
            f"{facility}/{next(_subjects)}",
            facility,
            device,
            state,
            opened,
            opened,
            acked,
            "nurse-li" if acked else None,
            resolved,
            "nurse-li" if resolved else None,
            resolution,
            cleared,
            escalation_from,
        ),
    )


def seed(url: str) -> None:
    async def registry() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await Registry(conn).apply(parse_facility_yaml(REGISTRY))

    asyncio.run(registry())
    with psycopg.connect(url, autocommit=True) as conn:
        # device health: smoke-a1-102 online but faulty, mat-a1 and smoke-a3 offline,
        # wear-a1 never seen
        for device, online, fault in [
            ("smoke-a1-101", True, False),
            ("smoke-a1-102", True, True),
            ("mat-a1", False, False),
            ("sos-a1", True, False),
            ("smoke-a2-201", True, False),
            ("smoke-a3", False, False),
            ("smoke-b1-301", True, False),
            ("gas-b1", True, False),
        ]:
            conn.execute(
                "INSERT INTO device_health (device_id, online, since, fault) VALUES (%s, %s, %s, %s)",
                (device, online, NOW - timedelta(days=1), fault),
            )
        # simulated-alarm tests: 00:30 on 1 November in Qingdao is still October in UTC
        for seq, (device, ts) in enumerate(
            [
                ("smoke-a1-101", local(11, 1, 0, 30)),
                ("smoke-a1-101", local(11, 12, 10)),
                ("smoke-a1-102", local(10, 15, 10)),
                ("smoke-a2-201", local(11, 5, 10)),
                ("smoke-b1-301", local(11, 5, 10)),
                ("smoke-b1-301", local(11, 6, 10)),
                ("smoke-b1-301", local(11, 7, 10)),
            ]
        ):
            conn.execute(
                "INSERT INTO events (device_id, ts, seq, event) VALUES (%s, %s, %s, 'test')",
                (device, ts, seq),
            )

        # care-a1: six false fire alarms on 20 November in local time. 00:30 local is
        # 19 November in UTC, so a UTC day would hold only five of them and list nothing.
        for hour, minute in [(0, 30), (9, 0), (10, 0), (11, 0), (12, 0), (23, 30)]:
            alarm(conn, "fire", "care-a1", local(11, 20, hour, minute), resolution="false_alarm")
        for hour in (9, 10, 11, 12, 13):  # exactly five on 22 November: no review
            alarm(conn, "fire", "care-a1", local(11, 22, hour), resolution="false_alarm")
        alarm(conn, "fire", "care-a1", local(11, 25, 10), ack_s=20, resolution="real_incident")
        alarm(conn, "fire", "care-a1", local(11, 26, 10), ack_s=40, resolution="test")
        alarm(conn, "fire", "care-a1", local(11, 27, 8), ack_s=30, resolution="cleared")
        alarm(conn, "fire", "care-a1", local(11, 28, 20))  # open, nobody has acknowledged it
        # the window's edge: 31 October 00:10 local is in, 30 October 23:50 local is out
        # (both are 30 October in UTC)
        alarm(conn, "fire", "care-a1", local(10, 31, 0, 10), resolution="test")
        alarm(conn, "fire", "care-a1", local(10, 30, 23, 50), resolution="false_alarm")
        alarm(conn, "fall", "care-a1", local(11, 27, 9), ack_s=10, resolution="real_incident")
        alarm(conn, "fall", "care-a1", local(11, 28, 9), ack_s=100)
        for hour, ack in zip((2, 3, 4, 5, 6), (30, 60, 90, 120, 600), strict=True):
            alarm(
                conn,
                "bed_exit",
                "care-a1",
                local(11, 24, hour),
                ack_s=ack,
                resolution="false_alarm" if ack == 600 else "real_incident",
            )
        # device faults: open 3 h, 2.5 h (offline), 1 h, and since 20 October; not counted:
        # one whose condition cleared, one resolved, a tamper
        alarm(conn, "fault", "care-a1", NOW - timedelta(hours=3), device="smoke-a1-102")
        alarm(conn, "device_offline", "care-a1", NOW - timedelta(hours=2, minutes=30), device="mat-a1")
        alarm(conn, "fault", "care-a1", NOW - timedelta(hours=1), device="sos-a1")
        alarm(conn, "fault", "care-a1", local(10, 20, 8), device="wear-a1")
        alarm(
            conn,
            "fault",
            "care-a1",
            NOW - timedelta(hours=4),
            cleared=NOW - timedelta(minutes=30),
            device="mat-a1",
        )
        alarm(conn, "fault", "care-a1", local(11, 27, 10), resolution="cleared", device="mat-a1")
        alarm(conn, "tamper", "care-a1", NOW - timedelta(hours=5), device="smoke-a1-101")

        # care-a2: one false fire alarm on the same day (the district's days are per site)
        alarm(conn, "fire", "care-a2", local(11, 20, 10), resolution="false_alarm")
        alarm(conn, "fall", "care-a2", local(11, 21, 8), ack_s=50, resolution="real_incident")
        # a gas warning acknowledged, then raised to an alarm at 10:05, which reopened it:
        # its time to acknowledge counts from the raise, 45 s, not from 10:00
        alarm(
            conn,
            "gas",
            "care-a2",
            local(11, 26, 10),
            escalation_from=local(11, 26, 10, 5),
            ack_s=45,
            resolution="real_incident",
        )

        # care-b1, the other district: more of everything, none of which district A may see
        for hour in range(10, 17):
            alarm(conn, "fire", "care-b1", local(11, 20, hour), resolution="false_alarm")
        alarm(conn, "fault", "care-b1", NOW - timedelta(hours=5), device="gas-b1")
        alarm(conn, "fall", "care-b1", local(11, 21, 8), ack_s=1000)


def query(url: str, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await fn(conn)

    return asyncio.run(run())


def places(figures: Figures[Any]) -> tuple[list[str | None], list[str]]:
    return [r.facility_id for r in figures.facilities], [r.district for r in figures.districts]


def test_coverage_online_faults_nursing_and_tests(database):
    seed(database)
    cov = query(database, lambda c: coverage(c, EVERYTHING))
    assert [(r.facility_id, r.rooms, r.covered, r.uncovered) for r in cov.facilities] == [
        ("care-b1", 1, 1, ()),
        ("care-a1", 3, 1, (("care-a1", "102"), ("care-a1", "kitchen"))),
        ("care-a2", 1, 1, ()),
        ("home-a3", 1, 0, (("home-a3", "home"),)),
    ]
    (cov_b, cov_a) = cov.districts
    assert (cov_a.district, cov_a.facility_id, cov_a.rooms, cov_a.covered) == (A, None, 5, 2)
    assert cov_a.uncovered == (("care-a1", "102"), ("care-a1", "kitchen"), ("home-a3", "home"))
    assert cov_a.ratio == pytest.approx(0.4)
    assert (cov_b.district, cov_b.ratio) == (B, 1.0)

    online = query(database, lambda c: device_online(c, SCOPE_A))
    assert [(r.facility_id, r.registered, r.online, r.never_seen) for r in online.facilities] == [
        ("care-a1", 5, 3, 1),
        ("care-a2", 1, 1, 0),
        ("home-a3", 1, 0, 0),
    ]
    (online_a,) = online.districts
    assert (online_a.registered, online_a.online, online_a.never_seen) == (7, 4, 1)
    assert online_a.rate == pytest.approx(4 / 7)
    assert online.facilities[0].rate == pytest.approx(0.6)

    faults = query(database, lambda c: open_faults(c, SCOPE_A, now=NOW))
    a1 = faults.facilities[0]
    assert (a1.facility_id, a1.open, a1.over_limit) == ("care-a1", 4, 3)
    # oldest first; the cleared fault, the resolved one and the tamper are not there
    assert [(f.type, f.device_id, f.age_s, f.over_limit) for f in a1.faults] == [
        ("fault", "wear-a1", (NOW - local(10, 20, 8)).total_seconds(), True),
        ("fault", "smoke-a1-102", 3 * 3600.0, True),
        ("device_offline", "mat-a1", 2.5 * 3600, True),
        ("fault", "sos-a1", 3600.0, False),
    ]
    assert [(r.facility_id, r.open, r.over_limit) for r in faults.facilities[1:]] == [
        ("care-a2", 0, 0),
        ("home-a3", 0, 0),
    ]
    (faults_a,) = faults.districts
    assert (faults_a.facility_id, faults_a.open, faults_a.over_limit, len(faults_a.faults)) == (None, 4, 3, 4)
    # a fault that opened one hour ago is over the limit an hour and a half later
    later = query(database, lambda c: open_faults(c, {"care-a1"}, now=NOW + timedelta(minutes=90)))
    assert later.facilities[0].over_limit == 4

    nursing = query(database, lambda c: nursing_beds(c, EVERYTHING))
    # home-a3 is a family care bed: the 80 % goal is about institution beds
    assert [(r.facility_id, r.beds, r.nursing, r.share, r.meets_goal) for r in nursing.facilities] == [
        ("care-b1", 1, 0, 0.0, False),
        ("care-a1", 4, 3, 0.75, False),
        ("care-a2", 2, 2, 1.0, True),
    ]
    assert [(r.district, r.beds, r.nursing, r.meets_goal) for r in nursing.districts] == [
        (B, 1, 0, False),
        (A, 6, 5, True),
    ]
    assert nursing.districts[1].share == pytest.approx(5 / 6)

    tests = query(database, lambda c: monthly_tests(c, SCOPE_A, now=NOW))
    assert [
        (r.facility_id, r.month, r.detectors, r.detectors_tested, r.tests, r.compliant)
        for r in tests.facilities
    ] == [
        ("care-a1", date(2026, 11, 1), 2, 1, 2, 1),
        ("care-a2", date(2026, 11, 1), 1, 1, 1, 0),
        ("home-a3", date(2026, 11, 1), 1, 0, 0, 0),
    ]
    (tests_a,) = tests.districts
    assert (tests_a.facilities, tests_a.compliant, tests_a.detectors, tests_a.tests) == (3, 1, 4, 3)
    assert not tests_a.all_compliant
    october = query(database, lambda c: monthly_tests(c, {"care-a1"}, month=date(2026, 10, 9)))
    assert [(r.month, r.tests, r.compliant) for r in october.facilities] == [(date(2026, 10, 1), 1, 0)]


def test_fire_alarms_and_days_with_more_than_five_false_alarms(database):
    seed(database)
    fire = query(database, lambda c: fire_alarms(c, SCOPE_A, now=NOW))
    a1, a2, a3 = fire.facilities
    assert (a1.first_day, a1.last_day) == (date(2026, 10, 31), date(2026, 11, 29))
    # 6 + 5 false, 1 real, 2 tests (31 October 00:10 local is in the window, 30 October
    # 23:50 is not), 1 cleared for a new episode, 1 open
    assert (a1.total, a1.false_alarm, a1.real_incident, a1.test, a1.cleared, a1.open) == (16, 11, 1, 2, 1, 1)
    assert a1.false_alarm_rate == pytest.approx(11 / 12)
    # the day with six is listed, in local time; the day with five is not
    assert a1.review_days == (FalseAlarmDay("care-a1", date(2026, 11, 20), 6),)
    assert (a2.total, a2.false_alarm, a2.false_alarm_rate, a2.review_days) == (1, 1, 1.0, ())
    assert (a3.total, a3.false_alarm_rate, a3.review_days) == (0, None, ())
    (total,) = fire.districts
    assert (total.district, total.total, total.false_alarm, total.open) == (A, 17, 12, 1)
    # GB 50440 counts per site: care-a2's false alarm on the same day is not pooled in
    assert total.review_days == (FalseAlarmDay("care-a1", date(2026, 11, 20), 6),)

    week = query(database, lambda c: fire_alarms(c, {"care-a1"}, days=7, now=NOW))
    (w,) = week.facilities
    assert (w.first_day, w.total, w.false_alarm, w.real_incident, w.test, w.cleared, w.open) == (
        date(2026, 11, 23),
        4,
        0,
        1,
        1,
        1,
        1,
    )
    assert w.review_days == ()
    # at 23:59 local on 20 November the sixth false alarm (23:30) is in; at 23:00 it is not yet
    at = query(
        database, lambda c: fire_alarms(c, {"care-a1"}, days=1, now=local(11, 20, 23, 59).astimezone(UTC))
    )
    assert at.facilities[0].review_days == (FalseAlarmDay("care-a1", date(2026, 11, 20), 6),)
    before = query(database, lambda c: fire_alarms(c, {"care-a1"}, days=1, now=local(11, 20, 23)))
    assert (before.facilities[0].false_alarm, before.facilities[0].review_days) == (5, ())


def test_time_to_acknowledge_by_priority(database):
    seed(database)
    ack = query(database, lambda c: ack_times(c, SCOPE_A, now=NOW))
    rows = [(r.facility_id, r.priority, r.acknowledged, r.unacknowledged) for r in ack.facilities]
    assert rows == [
        ("care-a1", "high", 5, 1),
        ("care-a1", "medium", 5, 4),
        ("care-a1", "low", 0, 1),
        ("care-a2", "high", 2, 0),
        ("care-a2", "medium", 0, 0),
        ("care-a2", "low", 0, 0),
        ("home-a3", "high", 0, 0),
        ("home-a3", "medium", 0, 0),
        ("home-a3", "low", 0, 0),
    ]
    a1_high, a1_medium, a1_low, a2_high = ack.facilities[:4]
    # high at care-a1: 10, 20, 30, 40, 100 s (the false alarms were resolved unacknowledged)
    # p50 = 30; p90 at rank 0.9 * 4 = 3.6: 40 + 0.6 * (100 - 40) = 76
    assert (a1_high.p50_s, a1_high.p90_s) == (pytest.approx(30), pytest.approx(76))
    # medium: 30, 60, 90, 120, 600 s: p50 = 90; p90 = 120 + 0.6 * 480 = 408
    assert (a1_medium.p50_s, a1_medium.p90_s) == (pytest.approx(90), pytest.approx(408))
    assert (a1_low.p50_s, a1_low.p90_s) == (None, None)
    # care-a2: 50 s, and 45 s for the gas alarm counted from its raise
    assert (a2_high.p50_s, a2_high.p90_s) == (pytest.approx(47.5), pytest.approx(49.5))
    # the district pools the alarms: 10, 20, 30, 40, 45, 50, 100 s: p50 = 40;
    # p90 at rank 5.4: 50 + 0.4 * 50 = 70 (care-b1's 1000 s is another district)
    high, medium, low = ack.districts
    assert (high.district, high.facility_id, high.priority, high.acknowledged, high.unacknowledged) == (
        A,
        None,
        "high",
        7,
        1,
    )
    assert (high.p50_s, high.p90_s) == (pytest.approx(40), pytest.approx(70))
    assert (medium.p50_s, medium.unacknowledged, low.unacknowledged) == (pytest.approx(90), 4, 1)


def test_daily_series_in_local_days(database):
    seed(database)
    series = query(database, lambda c: daily_series(c, {"care-a1", "care-a2"}, now=NOW))
    a1 = {
        r.day: (r.fire_gas, r.fall, r.other, r.false_alarms)
        for r in series.facilities
        if r.facility_id == "care-a1"
    }
    assert len(a1) == 30
    assert min(a1) == date(2026, 10, 31)
    assert max(a1) == date(2026, 11, 29)
    assert a1[date(2026, 11, 19)] == (0, 0, 0, 0)  # 00:30 local on the 20th is the 19th in UTC
    assert a1[date(2026, 11, 20)] == (6, 0, 0, 6)
    assert a1[date(2026, 11, 22)] == (5, 0, 0, 5)
    assert a1[date(2026, 11, 24)] == (0, 0, 5, 1)  # five bed exits, one a false alarm
    assert a1[date(2026, 11, 27)] == (1, 1, 1, 0)
    assert a1[date(2026, 11, 28)] == (1, 1, 0, 0)
    assert a1[date(2026, 11, 29)] == (0, 0, 5, 0)  # faults and a tamper opened this morning
    assert a1[date(2026, 11, 25)] == (1, 0, 0, 0)
    assert a1[date(2026, 11, 26)] == (1, 0, 0, 0)
    assert a1[date(2026, 10, 31)] == (1, 0, 0, 0)
    assert [day for day, v in a1.items() if v != (0, 0, 0, 0)] == [
        date(2026, 10, 31),
        *(date(2026, 11, d) for d in (20, 22, 24, 25, 26, 27, 28, 29)),
    ]
    districts = {r.day: (r.fire_gas, r.fall, r.other, r.false_alarms) for r in series.districts}
    assert {r.district for r in series.districts} == {A}
    assert len(districts) == 30
    assert districts[date(2026, 11, 20)] == (7, 0, 0, 7)
    assert districts[date(2026, 11, 21)] == (0, 1, 0, 0)
    assert districts[date(2026, 11, 26)] == (2, 0, 0, 0)
    assert [r.day for r in series.districts] == sorted(districts)


def test_a_scope_never_returns_another_districts_facilities_or_counts(database):
    seed(database)

    async def everything(conn: psycopg.AsyncConnection[Any]) -> list[Figures[Any]]:
        return [
            await coverage(conn, SCOPE_A),
            await device_online(conn, SCOPE_A),
            await open_faults(conn, SCOPE_A, now=NOW),
            await fire_alarms(conn, SCOPE_A, now=NOW),
            await ack_times(conn, SCOPE_A, now=NOW),
            await monthly_tests(conn, SCOPE_A, now=NOW),
            await nursing_beds(conn, SCOPE_A),
            await daily_series(conn, SCOPE_A, now=NOW),
        ]

    for figures in query(database, everything):
        ids, districts = places(figures)
        assert set(ids) <= SCOPE_A, figures
        assert set(districts) == {A}, figures
    assert [f.id for f in query(database, lambda c: facilities(c, SCOPE_A | {"no-such"}))] == [
        "care-a1",
        "care-a2",
        "home-a3",
    ]
    # one facility's staff: the district row is the total of what they may see
    staff = query(database, lambda c: fire_alarms(c, {"care-a2"}, now=NOW))
    assert [(r.facility_id, r.total) for r in staff.facilities] == [("care-a2", 1)]
    assert [(r.district, r.total, r.review_days) for r in staff.districts] == [(A, 1, ())]
    # summaries refuse what is out of scope, and do not tell whether it exists
    assert query(database, lambda c: facility_summary(c, SCOPE_A, "care-b1", now=NOW)) is None
    assert query(database, lambda c: facility_summary(c, SCOPE_A, "no-such", now=NOW)) is None
    assert query(database, lambda c: district_summary(c, SCOPE_A, B, now=NOW)) is None
    summary = query(database, lambda c: district_summary(c, SCOPE_A, A, now=NOW))
    assert summary is not None
    assert (summary.total.fire.total, summary.total.faults.open, summary.total.online.registered) == (
        17,
        4,
        7,
    )
    # the other district, seen by its own regulator
    b = query(database, lambda c: district_summary(c, {"care-b1"}, B, now=NOW))
    assert b is not None
    assert (b.total.fire.total, b.total.fire.review_days, b.total.faults.over_limit) == (
        7,
        (FalseAlarmDay("care-b1", date(2026, 11, 20), 7),),
        1,
    )
    # an empty scope sees nothing at all
    empty = query(database, lambda c: fire_alarms(c, set(), now=NOW))
    assert (empty.facilities, empty.districts) == ((), ())
    assert query(database, lambda c: district_summaries(c, [], now=NOW)) == ()


def test_summaries_bundle_every_figure(database):
    seed(database)
    both = query(database, lambda c: district_summaries(c, EVERYTHING, now=NOW))
    assert [d.district for d in both] == sorted([A, B])
    a = next(d for d in both if d.district == A)
    assert [s.facility_id for s in a.facilities] == ["care-a1", "care-a2", "home-a3"]
    t = a.total
    assert (t.district, t.facility_id, [f.id for f in t.facilities]) == (
        A,
        None,
        ["care-a1", "care-a2", "home-a3"],
    )
    assert (t.first_day, t.last_day) == (date(2026, 10, 31), date(2026, 11, 29))
    assert (t.coverage.rooms, t.coverage.covered) == (5, 2)
    assert (t.online.registered, t.online.online) == (7, 4)
    assert (t.faults.open, t.faults.over_limit) == (4, 3)
    assert (t.fire.total, t.fire.false_alarm) == (17, 12)
    assert [(r.priority, r.acknowledged) for r in t.ack] == [("high", 7), ("medium", 5), ("low", 0)]
    assert t.ack[0].p50_s == pytest.approx(40)
    assert (t.tests_this_month.month, t.tests_this_month.compliant, t.tests_this_month.facilities) == (
        date(2026, 11, 1),
        1,
        3,
    )
    assert (t.tests_last_month.month, t.tests_last_month.tests, t.tests_last_month.compliant) == (
        date(2026, 10, 1),
        1,
        0,
    )
    assert t.nursing is not None
    assert (t.nursing.beds, t.nursing.nursing, t.nursing.meets_goal) == (6, 5, True)
    assert len(t.daily) == 30
    assert {d.facility_id for d in t.daily} == {None}
    assert next(d for d in t.daily if d.day == date(2026, 11, 20)).false_alarms == 7

    home = a.facilities[2]
    assert (home.facility_id, home.nursing, home.coverage.covered, home.online.rate) == (
        "home-a3",
        None,
        0,
        0.0,
    )

    one = query(database, lambda c: facility_summary(c, SCOPE_A, "care-a1", days=7, now=NOW))
    assert one is not None
    assert (one.facility_id, one.district, one.first_day, len(one.daily)) == (
        "care-a1",
        A,
        date(2026, 11, 23),
        7,
    )
    assert {d.facility_id for d in one.daily} == {"care-a1"}
    assert (one.fire.total, one.faults.open, one.nursing is not None and one.nursing.share) == (4, 4, 0.75)
    assert [(r.priority, r.acknowledged) for r in one.ack] == [("high", 5), ("medium", 5), ("low", 0)]


def test_bad_input_is_refused(database):
    seed(database)
    with pytest.raises(InvalidInput, match="not one string"):
        query(database, lambda c: coverage(c, "care-a1"))
    with pytest.raises(InvalidInput, match="1 to 366 days"):
        query(database, lambda c: fire_alarms(c, SCOPE_A, days=0, now=NOW))
    with pytest.raises(InvalidInput, match="time zone"):
        query(database, lambda c: daily_series(c, SCOPE_A, now=datetime(2026, 11, 29, 12)))


def test_a_callers_transaction_is_used_and_a_lost_connection_is_unavailable(database):
    seed(database)

    async def inside() -> tuple[Any, Any]:
        async with await psycopg.AsyncConnection.connect(database) as conn:
            # a connection that is not in autocommit, already inside a transaction
            await conn.execute("SELECT 1")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            summary = await facility_summary(conn, SCOPE_A, "care-a2", now=NOW)
            still = conn.info.transaction_status
            await conn.rollback()
            return summary, still

    summary, still = asyncio.run(inside())
    assert summary is not None
    assert (summary.fire.total, summary.ack[0].acknowledged) == (1, 2)
    assert still == psycopg.pq.TransactionStatus.INTRANS  # left to its owner

    async def closed() -> None:
        conn = await psycopg.AsyncConnection.connect(database, autocommit=True)
        await conn.close()
        await district_summary(conn, SCOPE_A, A, now=NOW)

    with pytest.raises(AlertsUnavailable):
        asyncio.run(closed())
