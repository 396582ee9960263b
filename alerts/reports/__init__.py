"""Figures for regulators: fire safety, device health, faults, false alarms, response times,
monthly tests and nursing beds, per facility and per district (docs/alerts.md, "Regulator
figures").

Every function takes a **scope**, the set of facility ids the caller may see (a regulator's
district, a manager's facilities), and reads nothing outside it: each query is bounded by the
ids of the scope's facilities. An id in the scope that names no facility is ignored, and an
empty scope gives empty figures. ``facility_summary`` answers ``None`` both for a facility
outside the scope and for one that does not exist, so that the answer does not tell which.

Windows are whole local days in each facility's own time zone (``facilities.tz``): the last
``days`` calendar days up to ``now``, today included, so a false alarm at 00:30 in Qingdao
counts on that day and not on the UTC day before (docs/standards.md). ``now`` is injectable; it
defaults to the wall clock.

A district figure is computed over the facilities of that district *in the scope*: a caller
who sees two of a district's five facilities gets the total of those two. Counts are summed;
percentiles are computed over the pooled alarms, never averaged from the facilities'.

Summaries read in one snapshot: on an idle connection they open a read-only repeatable-read
transaction, so the figures of one page agree with each other; inside a caller's transaction
they use that one. A summary takes nine queries in five round trips (five of the queries share
one pipeline), whatever the number of facilities. A database that cannot be reached raises
``AlertsUnavailable``; a bad scope, window or clock raises ``InvalidInput``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection

from alerts.reports.figures import (
    DEFAULT_DAYS,
    FALSE_ALARMS_PER_DAY_LIMIT,
    FAULT_LIMIT_S,
    FAULT_TYPES,
    FIRE_GAS_TYPES,
    MAX_DAYS,
    NURSING_GOAL,
    PRIORITIES,
    AckRow,
    AlarmTests,
    CoverageRow,
    DayRow,
    DistrictSummary,
    Facility,
    FalseAlarmDay,
    FaultRow,
    Figures,
    FireRow,
    NursingRow,
    OnlineRow,
    OpenFault,
    Summary,
)
from alerts.reports.reads import (
    _ack,
    _context,
    _coverage,
    _daily,
    _faults,
    _nursing,
    _online,
    _reading,
    _run,
    _scope_list,
    _tests,
)
from alerts.reports.totals import (
    _build,
    _day_rows,
    _figures,
    _fire_rows,
    _sum_coverage,
    _sum_days,
    _sum_faults,
    _sum_fire,
    _sum_nursing,
    _sum_online,
    _sum_tests,
)

__all__ = [
    "DEFAULT_DAYS",
    "FALSE_ALARMS_PER_DAY_LIMIT",
    "FAULT_LIMIT_S",
    "FAULT_TYPES",
    "FIRE_GAS_TYPES",
    "MAX_DAYS",
    "NURSING_GOAL",
    "PRIORITIES",
    "AckRow",
    "AlarmTests",
    "CoverageRow",
    "DayRow",
    "DistrictSummary",
    "Facility",
    "FalseAlarmDay",
    "FaultRow",
    "Figures",
    "FireRow",
    "NursingRow",
    "OnlineRow",
    "OpenFault",
    "Summary",
    "ack_times",
    "coverage",
    "daily_series",
    "device_online",
    "district_summaries",
    "district_summary",
    "facilities",
    "facility_summary",
    "fire_alarms",
    "monthly_tests",
    "nursing_beds",
    "open_faults",
]


# -- public functions ----------------------------------------------------------------------


async def facilities(conn: AsyncConnection[Any], scope: Collection[str]) -> tuple[Facility, ...]:
    """The facilities in scope, sorted by (district, id)."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, None)
    return ctx.facilities


async def coverage(conn: AsyncConnection[Any], scope: Collection[str]) -> Figures[CoverageRow]:
    """Smoke-detector coverage of rooms (``hub.safety.fire_coverage``)."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, None)
        rows = await _coverage(conn, ctx)
    return _figures(ctx, rows, _sum_coverage)


async def device_online(conn: AsyncConnection[Any], scope: Collection[str]) -> Figures[OnlineRow]:
    """Share of registered devices that are online now (``device_health``)."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, None)
        rows = await _run(conn, _online(ctx))
    return _figures(ctx, rows, _sum_online)


async def open_faults(
    conn: AsyncConnection[Any], scope: Collection[str], *, now: datetime | None = None
) -> Figures[FaultRow]:
    """Unresolved, uncleared ``fault`` and ``device_offline`` alarms, and those open over 2 h."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, now)
        rows = await _run(conn, _faults(ctx))
    return _figures(ctx, rows, _sum_faults)


async def fire_alarms(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Figures[FireRow]:
    """Fire alarms of the window by resolution, and the days with more than 5 false ones."""
    async with _reading(conn):
        ctx = await _context(conn, scope, days, now)
        daily = await _run(conn, _daily(ctx))
    return _figures(ctx, _fire_rows(ctx, daily), _sum_fire)


async def ack_times(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Figures[AckRow]:
    """Median and p90 time to acknowledge per priority (rows high, medium, low per place)."""
    async with _reading(conn):
        ctx = await _context(conn, scope, days, now)
        fac_rows, district_rows = await _run(conn, _ack(ctx))
    return Figures(fac_rows, district_rows)


async def monthly_tests(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    *,
    month: date | None = None,
    now: datetime | None = None,
) -> Figures[AlarmTests]:
    """Monthly test alarms (``hub.safety.alarm_test_compliance``); ``month`` defaults to each
    facility's current local month."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, now)
        rows = await _tests(conn, ctx, month_offset=0, month=month)
    return _figures(ctx, rows, _sum_tests)


async def nursing_beds(conn: AsyncConnection[Any], scope: Collection[str]) -> Figures[NursingRow]:
    """Nursing-type beds among institution beds, against the 80 % goal."""
    async with _reading(conn):
        ctx = await _context(conn, scope, DEFAULT_DAYS, None)
        rows = await _run(conn, _nursing(ctx))
    return _figures(ctx, rows, _sum_nursing)


async def daily_series(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Figures[DayRow]:
    """Alarms per local day of the window by type group, and false alarms; every day is
    present, zeros included. Rows are sorted by (district, facility, day)."""
    async with _reading(conn):
        ctx = await _context(conn, scope, days, now)
        daily = await _run(conn, _daily(ctx))
    rows = _day_rows(ctx, daily)
    return Figures(rows, _sum_days(rows))


async def facility_summary(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    facility_id: str,
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Summary | None:
    """Every figure of one facility; None when it is not in scope (or does not exist)."""
    if facility_id not in _scope_list(scope):
        return None
    async with _reading(conn):
        ctx = await _context(conn, [facility_id], days, now)
        if not ctx.facilities:
            return None
        built = await _build(conn, ctx)
    return built[0].facilities[0]


async def district_summary(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    district: str,
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> DistrictSummary | None:
    """Every figure of a district's facilities in scope, in total and per facility; None when
    no facility of the district is in scope."""
    async with _reading(conn):
        ctx = await _context(conn, scope, days, now, district=district)
        if not ctx.facilities:
            return None
        built = await _build(conn, ctx)
    return built[0]


async def district_summaries(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> tuple[DistrictSummary, ...]:
    """``district_summary`` for every district in scope, sorted by district."""
    async with _reading(conn):
        ctx = await _context(conn, scope, days, now)
        if not ctx.facilities:
            return ()
        return await _build(conn, ctx)
