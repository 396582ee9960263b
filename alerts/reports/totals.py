"""From facility rows to district totals, and every figure of a place in one summary.

Counts are summed over the facilities of a district in scope; percentiles are never
averaged here, they are computed over the pooled alarms in SQL (``reads._ack``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from psycopg import AsyncConnection

from alerts.reports.figures import (
    FALSE_ALARMS_PER_DAY_LIMIT,
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
    R,
    Summary,
)
from alerts.reports.reads import (
    _ack,
    _Context,
    _coverage,
    _Daily,
    _daily,
    _Day,
    _faults,
    _nursing,
    _online,
    _tests,
)

# -- shaping: facility rows from the daily counts, and district totals ----------------------


def _fire_rows(ctx: _Context, daily: _Daily) -> dict[str, FireRow]:
    out: dict[str, FireRow] = {}
    for fac in ctx.facilities:
        days = daily.get(fac.id, {})
        review = tuple(
            FalseAlarmDay(fac.id, day, d.fire_false)
            for day, d in sorted(days.items())
            if d.fire_false > FALSE_ALARMS_PER_DAY_LIMIT
        )
        out[fac.id] = FireRow(
            fac.district,
            fac.id,
            ctx.first_day(fac.id),
            ctx.today[fac.id],
            sum(d.fire for d in days.values()),
            sum(d.fire_false for d in days.values()),
            sum(d.fire_real for d in days.values()),
            sum(d.fire_test for d in days.values()),
            sum(d.fire_cleared for d in days.values()),
            sum(d.fire_open for d in days.values()),
            review,
        )
    return out


def _day_rows(ctx: _Context, daily: _Daily) -> tuple[DayRow, ...]:
    rows: list[DayRow] = []
    empty = _Day(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    for fac in ctx.facilities:
        days = daily.get(fac.id, {})
        first = ctx.first_day(fac.id)
        for i in range(ctx.days):
            day = first + timedelta(days=i)
            d = days.get(day, empty)
            rows.append(DayRow(fac.district, fac.id, day, d.fire_gas, d.fall, d.other, d.false_alarms))
    return tuple(rows)


def _figures(ctx: _Context, rows: dict[str, R], total: Callable[[str, Sequence[R]], R]) -> Figures[R]:
    fac_rows = tuple(rows[f.id] for f in ctx.facilities if f.id in rows)
    by_district: dict[str, list[R]] = defaultdict(list)
    for f in ctx.facilities:
        if f.id in rows:
            by_district[f.district].append(rows[f.id])
    return Figures(fac_rows, tuple(total(d, by_district[d]) for d in sorted(by_district)))


def _sum_coverage(district: str, rows: Sequence[CoverageRow]) -> CoverageRow:
    return CoverageRow(
        district,
        None,
        sum(r.rooms for r in rows),
        sum(r.covered for r in rows),
        tuple(sorted(u for r in rows for u in r.uncovered)),
    )


def _sum_online(district: str, rows: Sequence[OnlineRow]) -> OnlineRow:
    return OnlineRow(
        district,
        None,
        sum(r.registered for r in rows),
        sum(r.online for r in rows),
        sum(r.never_seen for r in rows),
    )


def _sum_faults(district: str, rows: Sequence[FaultRow]) -> FaultRow:
    return FaultRow(
        district,
        None,
        sum(r.open for r in rows),
        sum(r.over_limit for r in rows),
        tuple(f for r in rows for f in r.faults),
    )


def _sum_fire(district: str, rows: Sequence[FireRow]) -> FireRow:
    return FireRow(
        district,
        None,
        min(r.first_day for r in rows),
        max(r.last_day for r in rows),
        sum(r.total for r in rows),
        sum(r.false_alarm for r in rows),
        sum(r.real_incident for r in rows),
        sum(r.test for r in rows),
        sum(r.cleared for r in rows),
        sum(r.open for r in rows),
        # GB 50440 counts per site: a district lists its sites' days, it does not pool them.
        tuple(d for r in rows for d in r.review_days),
    )


def _sum_tests(district: str, rows: Sequence[AlarmTests]) -> AlarmTests:
    return AlarmTests(
        district,
        None,
        min(r.month for r in rows),
        sum(r.facilities for r in rows),
        sum(r.compliant for r in rows),
        sum(r.detectors for r in rows),
        sum(r.detectors_tested for r in rows),
        sum(r.tests for r in rows),
    )


def _sum_nursing(district: str, rows: Sequence[NursingRow]) -> NursingRow:
    return NursingRow(district, None, sum(r.beds for r in rows), sum(r.nursing for r in rows))


def _sum_days(rows: Iterable[DayRow]) -> tuple[DayRow, ...]:
    totals: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        t = totals[r.district, r.day]
        t[0] += r.fire_gas
        t[1] += r.fall
        t[2] += r.other
        t[3] += r.false_alarms
    return tuple(DayRow(district, None, day, *t) for (district, day), t in sorted(totals.items()))


# -- summaries ------------------------------------------------------------------------------


async def _build(conn: AsyncConnection[Any], ctx: _Context) -> tuple[DistrictSummary, ...]:
    """Every figure of every facility in ``ctx``: eight queries after the facilities' (one
    more when their local months differ), in four round trips."""
    q_online, q_faults, q_daily, q_ack, q_nursing = (
        _online(ctx),
        _faults(ctx),
        _daily(ctx),
        _ack(ctx),
        _nursing(ctx),
    )
    # One round trip for the five queries of this module: all are sent before any is read.
    async with conn.pipeline():
        c_online = await conn.execute(q_online.sql, q_online.params)
        c_faults = await conn.execute(q_faults.sql, q_faults.params)
        c_daily = await conn.execute(q_daily.sql, q_daily.params)
        c_ack = await conn.execute(q_ack.sql, q_ack.params)
        c_nursing = await conn.execute(q_nursing.sql, q_nursing.params)
        online = _figures(ctx, q_online.parse(await c_online.fetchall()), _sum_online)
        faults = _figures(ctx, q_faults.parse(await c_faults.fetchall()), _sum_faults)
        daily = q_daily.parse(await c_daily.fetchall())
        ack_fac, ack_district = q_ack.parse(await c_ack.fetchall())
        nursing = _figures(ctx, q_nursing.parse(await c_nursing.fetchall()), _sum_nursing)
    fire = _figures(ctx, _fire_rows(ctx, daily), _sum_fire)
    day_rows = _day_rows(ctx, daily)
    cover = _figures(ctx, await _coverage(conn, ctx), _sum_coverage)
    this_month = _figures(ctx, await _tests(conn, ctx, month_offset=0), _sum_tests)
    last_month = _figures(ctx, await _tests(conn, ctx, month_offset=1), _sum_tests)

    # Rows by (district, facility id or None), so that a summary of many facilities stays linear.
    def index(figures: Figures[R]) -> dict[tuple[str, str | None], R]:
        return {_place(r): r for r in (*figures.facilities, *figures.districts)}

    covers, onlines, faultss, fires = index(cover), index(online), index(faults), index(fire)
    this_months, last_months, nursings = index(this_month), index(last_month), index(nursing)
    acks: dict[tuple[str, str | None], list[AckRow]] = defaultdict(list)
    for a in (*ack_fac, *ack_district):
        acks[_place(a)].append(a)
    days_of: dict[str | None, list[DayRow]] = defaultdict(list)
    for d in day_rows:
        days_of[d.facility_id].append(d)

    def summary(district: str, facility_id: str | None) -> Summary:
        place = (district, facility_id)
        facs = tuple(by_district[district]) if facility_id is None else (ctx.by_id[facility_id],)
        days = _sum_days(d for f in facs for d in days_of[f.id])
        return Summary(
            district=district,
            facility_id=facility_id,
            facilities=facs,
            first_day=fires[place].first_day,
            last_day=fires[place].last_day,
            coverage=covers[place],
            online=onlines[place],
            faults=faultss[place],
            fire=fires[place],
            ack=tuple(acks[place]),
            tests_this_month=this_months[place],
            tests_last_month=last_months[place],
            nursing=nursings.get(place),
            daily=tuple(
                DayRow(d.district, facility_id, d.day, d.fire_gas, d.fall, d.other, d.false_alarms)
                for d in days
            ),
        )

    by_district: dict[str, list[Facility]] = defaultdict(list)
    for f in ctx.facilities:
        by_district[f.district].append(f)
    return tuple(
        DistrictSummary(
            district,
            summary(district, None),
            tuple(summary(district, f.id) for f in by_district[district]),
        )
        for district in sorted(by_district)
    )


def _place(row: Any) -> tuple[str, str | None]:
    return (row.district, row.facility_id)
