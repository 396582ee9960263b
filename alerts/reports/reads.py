"""How the figures are read: the facilities in scope with their local windows, one snapshot
per call, and the queries with the parsers that turn their rows into figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Generic

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from alerts.errors import AlertsUnavailable, InvalidInput
from alerts.reports.figures import (
    FAULT_TYPES,
    FIRE_GAS_TYPES,
    MAX_DAYS,
    PRIORITIES,
    AckRow,
    AlarmTests,
    CoverageRow,
    Facility,
    FaultRow,
    NursingRow,
    OnlineRow,
    OpenFault,
    R,
)
from hub.safety import alarm_test_compliance, fire_coverage

# -- context: the facilities in scope and their windows -------------------------------------


class _Context:
    def __init__(
        self, facilities: tuple[Facility, ...], today: dict[str, date], days: int, now: datetime
    ) -> None:
        self.facilities = facilities
        self.by_id = {f.id: f for f in facilities}
        self.ids = [f.id for f in facilities]
        self.today = today  # each facility's local date at ``now``
        self.days = days
        self.now = now

    def first_day(self, facility_id: str) -> date:
        return self.today[facility_id] - timedelta(days=self.days - 1)

    def window_params(self) -> dict[str, Any]:
        return {"ids": self.ids, "firsts": [self.first_day(i) for i in self.ids], "now": self.now}


def _scope_list(scope: Collection[str]) -> list[str]:
    # A string is a collection of its characters: refuse it rather than scope to 'c', 'a', ...
    if isinstance(scope, str | bytes):
        raise InvalidInput("scope is a collection of facility ids, not one string")
    ids = sorted(set(scope))
    if not all(isinstance(i, str) for i in ids):
        raise InvalidInput("scope holds facility ids (strings)")
    return ids


async def _context(
    conn: AsyncConnection[Any],
    scope: Collection[str],
    days: int,
    now: datetime | None,
    *,
    district: str | None = None,
) -> _Context:
    ids = _scope_list(scope)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"a window is 1 to {MAX_DAYS} days, not {days}")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("now must carry a time zone")
    cur = await conn.execute(
        """
        SELECT id, name, kind, district, tz, (%(now)s::timestamptz AT TIME ZONE tz)::date
        FROM facilities
        WHERE id = ANY(%(ids)s::text[]) AND (%(district)s::text IS NULL OR district = %(district)s)
        """,
        {"ids": ids, "now": now, "district": district},
    )
    # Sorted here rather than in SQL: a database collation could order districts otherwise.
    rows = sorted(await cur.fetchall(), key=lambda r: (r[3], r[0]))
    facs = tuple(Facility(r[0], r[1], r[2], r[3], r[4]) for r in rows)
    return _Context(facs, {r[0]: r[5] for r in rows}, days, now)


@asynccontextmanager
async def _reading(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """One snapshot for the queries of a call, and database errors as ``AlertsUnavailable``."""
    try:
        if conn.info.transaction_status == TransactionStatus.IDLE:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield
        else:
            yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc


# -- queries ------------------------------------------------------------------------------

# Each facility's window: from local midnight of its first day (in its own time zone) to now.
_DAILY: Final = """
    WITH w AS (
        SELECT f.id, f.district, f.tz, (s.first_day::timestamp AT TIME ZONE f.tz) AS start
        FROM unnest(%(ids)s::text[], %(firsts)s::date[]) AS s(id, first_day)
        JOIN facilities f ON f.id = s.id
    )
    SELECT a.facility_id, (a.opened_at AT TIME ZONE w.tz)::date AS day,
           count(*) FILTER (WHERE a.type = ANY(%(fire_gas)s::text[])),
           count(*) FILTER (WHERE a.type = 'fall'),
           count(*) FILTER (WHERE a.type <> 'fall' AND a.type <> ALL(%(fire_gas)s::text[])),
           count(*) FILTER (WHERE a.resolution = 'false_alarm'),
           count(*) FILTER (WHERE a.type = 'fire'),
           count(*) FILTER (WHERE a.type = 'fire' AND a.resolution = 'false_alarm'),
           count(*) FILTER (WHERE a.type = 'fire' AND a.resolution = 'real_incident'),
           count(*) FILTER (WHERE a.type = 'fire' AND a.resolution = 'test'),
           count(*) FILTER (WHERE a.type = 'fire' AND a.resolution = 'cleared'),
           count(*) FILTER (WHERE a.type = 'fire' AND a.state <> 'resolved')
    FROM w
    JOIN alarms a ON a.facility_id = w.id AND a.opened_at >= w.start AND a.opened_at < %(now)s
    GROUP BY 1, 2
    ORDER BY 1, 2
"""

# The clock starts when people were (last) called: opened_at, or the priority raise that
# reopened an acknowledged alarm (escalation_from, 0007), which also cleared its old ack.
_ACK: Final = """
    WITH w AS (
        SELECT f.id, f.district, f.tz, (s.first_day::timestamp AT TIME ZONE f.tz) AS start
        FROM unnest(%(ids)s::text[], %(firsts)s::date[]) AS s(id, first_day)
        JOIN facilities f ON f.id = s.id
    )
    SELECT w.district, w.id, a.priority,
           count(a.ack_s),
           count(*) FILTER (WHERE a.state = 'open'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ack_s),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY a.ack_s)
    FROM w
    JOIN LATERAL (
        SELECT priority, state,
               extract(epoch FROM acknowledged_at - coalesce(escalation_from, opened_at))::float8 AS ack_s
        FROM alarms
        WHERE facility_id = w.id AND opened_at >= w.start AND opened_at < %(now)s
    ) a ON true
    GROUP BY GROUPING SETS ((w.district, w.id, a.priority), (w.district, a.priority))
"""

_FAULTS: Final = """
    SELECT a.id, a.facility_id, a.type, a.device_id, a.room_id, a.state, a.opened_at,
           extract(epoch FROM %(now)s::timestamptz - a.opened_at)::float8
    FROM alarms a
    WHERE a.facility_id = ANY(%(ids)s::text[]) AND a.type = ANY(%(types)s::text[])
      AND a.state <> 'resolved' AND a.cleared_at IS NULL AND a.opened_at <= %(now)s
    ORDER BY a.facility_id, a.opened_at, a.id
"""

_ONLINE: Final = """
    SELECT d.facility_id, count(*), count(*) FILTER (WHERE h.online),
           count(*) FILTER (WHERE h.device_id IS NULL)
    FROM devices d
    LEFT JOIN device_health h ON h.device_id = d.id
    WHERE d.facility_id = ANY(%(ids)s::text[])
    GROUP BY d.facility_id
"""

_NURSING: Final = """
    SELECT facility_id, count(*), count(*) FILTER (WHERE nursing)
    FROM beds
    WHERE facility_id = ANY(%(ids)s::text[])
    GROUP BY facility_id
"""


@dataclass(frozen=True, slots=True)
class _Day:
    fire_gas: int
    fall: int
    other: int
    false_alarms: int
    fire: int
    fire_false: int
    fire_real: int
    fire_test: int
    fire_cleared: int
    fire_open: int


_Daily = dict[str, dict[date, _Day]]


@dataclass(frozen=True, slots=True)
class _Read(Generic[R]):
    """One query and how its rows become a figure; run alone, or with others in a pipeline."""

    sql: str
    params: dict[str, Any]
    parse: Callable[[list[Any]], R]


async def _run(conn: AsyncConnection[Any], read: _Read[R]) -> R:
    cur = await conn.execute(read.sql, read.params)
    return read.parse(await cur.fetchall())


def _daily(ctx: _Context) -> _Read[_Daily]:
    def parse(rows: list[Any]) -> _Daily:
        out: _Daily = defaultdict(dict)
        for r in rows:
            out[r[0]][r[1]] = _Day(*(int(v) for v in r[2:]))
        return out

    return _Read(_DAILY, {**ctx.window_params(), "fire_gas": list(FIRE_GAS_TYPES)}, parse)


_AckRows = tuple[tuple[AckRow, ...], tuple[AckRow, ...]]


def _ack(ctx: _Context) -> _Read[_AckRows]:
    def parse(rows: list[Any]) -> _AckRows:
        found = {(r[0], r[1], r[2]): r for r in rows}

        def row(district: str, facility_id: str | None, priority: str) -> AckRow:
            r = found.get((district, facility_id, priority))
            if r is None:  # no alarm of that priority in the window
                return AckRow(district, facility_id, priority, 0, 0, None, None)
            return AckRow(district, facility_id, priority, int(r[3]), int(r[4]), _opt(r[5]), _opt(r[6]))

        districts = sorted({f.district for f in ctx.facilities})
        return (
            tuple(row(f.district, f.id, p) for f in ctx.facilities for p in PRIORITIES),
            tuple(row(d, None, p) for d in districts for p in PRIORITIES),
        )

    return _Read(_ACK, ctx.window_params(), parse)


def _faults(ctx: _Context) -> _Read[dict[str, FaultRow]]:
    def parse(rows: list[Any]) -> dict[str, FaultRow]:
        found: dict[str, list[OpenFault]] = defaultdict(list)
        for r in rows:
            fac = ctx.by_id[r[1]]
            fault = OpenFault(int(r[0]), fac.district, fac.id, r[2], r[3], r[4], r[5], r[6], float(r[7]))
            found[fac.id].append(fault)
        out: dict[str, FaultRow] = {}
        for fac in ctx.facilities:
            faults = tuple(found.get(fac.id, ()))
            over = sum(f.over_limit for f in faults)
            out[fac.id] = FaultRow(fac.district, fac.id, len(faults), over, faults)
        return out

    return _Read(_FAULTS, {"ids": ctx.ids, "now": ctx.now, "types": list(FAULT_TYPES)}, parse)


def _online(ctx: _Context) -> _Read[dict[str, OnlineRow]]:
    def parse(rows: list[Any]) -> dict[str, OnlineRow]:
        counts = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
        return {f.id: OnlineRow(f.district, f.id, *counts.get(f.id, (0, 0, 0))) for f in ctx.facilities}

    return _Read(_ONLINE, {"ids": ctx.ids}, parse)


def _nursing(ctx: _Context) -> _Read[dict[str, NursingRow]]:
    def parse(rows: list[Any]) -> dict[str, NursingRow]:
        counts = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        # The 80 % goal is about institution beds; a family care bed is not one.
        return {
            f.id: NursingRow(f.district, f.id, *counts.get(f.id, (0, 0)))
            for f in ctx.facilities
            if f.kind == "institution"
        }

    return _Read(_NURSING, {"ids": ctx.ids}, parse)


async def _coverage(conn: AsyncConnection[Any], ctx: _Context) -> dict[str, CoverageRow]:
    # The scope is always a list here: fire_coverage reads every facility when given None.
    found = {c.facility_id: c for c in await fire_coverage(conn, list(ctx.ids))}
    out: dict[str, CoverageRow] = {}
    for fac in ctx.facilities:
        c = found.get(fac.id)
        if c is None:  # no rooms registered
            out[fac.id] = CoverageRow(fac.district, fac.id, 0, 0, ())
        else:
            uncovered = tuple((fac.id, room) for room in c.uncovered_rooms)
            out[fac.id] = CoverageRow(fac.district, fac.id, c.rooms, c.covered, uncovered)
    return out


async def _tests(
    conn: AsyncConnection[Any], ctx: _Context, *, month_offset: int, month: date | None = None
) -> dict[str, AlarmTests]:
    """Tests in each facility's local month (``month_offset`` months before the current
    one), or in ``month`` for all; one query per distinct month."""
    months: dict[date, list[str]] = defaultdict(list)
    for fac in ctx.facilities:
        first = month.replace(day=1) if month is not None else _month(ctx.today[fac.id], month_offset)
        months[first].append(fac.id)
    out: dict[str, AlarmTests] = {}
    for first, ids in sorted(months.items()):
        for t in await alarm_test_compliance(conn, first, ids):
            fac = ctx.by_id[t.facility_id]
            out[fac.id] = AlarmTests(
                fac.district, fac.id, t.month, 1, int(t.compliant), t.detectors, t.detectors_tested, t.tests
            )
    return out


def _month(today: date, months_back: int) -> date:
    index = today.year * 12 + today.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)
