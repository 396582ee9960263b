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
counts on that day and not on the UTC day before (DOMAIN.md). ``now`` is injectable; it
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

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from alerts.errors import AlertsUnavailable, InvalidInput
from hub.safety import alarm_test_compliance, fire_coverage

DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
# Alarm types that mean a device cannot do its job: a fault (or a stuck sensor) and a device
# that stopped reporting. Both need a substitute or manual cover within 2 h (JGJ/T 484-2019).
# ``tamper`` (an opened cover, usually maintenance) and ``low_battery`` (a warning before a
# failure, GB 20517) are low priority, "be aware" (IEC 60601-1-8), and are not counted.
FAULT_TYPES: Final = ("fault", "device_offline")
FAULT_LIMIT_S: Final = 2 * 3600  # JGJ/T 484-2019: a fault not fixed within 2 h needs cover
FALSE_ALARMS_PER_DAY_LIMIT: Final = 5  # GB 50440: more than 5 false alarms a day at a site
NURSING_GOAL: Final = 0.8  # nursing-type beds at 80 % or more of institution beds by 2027
PRIORITIES: Final = ("high", "medium", "low")  # IEC 60601-1-8
FIRE_GAS_TYPES: Final = ("fire", "fire_prealarm", "gas")

R = TypeVar("R")


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str
    kind: str  # 'institution', or 'home' for a family care bed
    district: str
    tz: str


@dataclass(frozen=True, slots=True)
class Figures(Generic[R]):
    """One figure for each facility in scope and for each district they belong to.

    ``facilities`` is sorted by (district, facility id), ``districts`` by district; a
    district row has ``facility_id = None``."""

    facilities: tuple[R, ...]
    districts: tuple[R, ...]


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """Rooms with at least one working smoke detector (view ``room_fire_coverage``)."""

    district: str
    facility_id: str | None
    rooms: int
    covered: int
    uncovered: tuple[tuple[str, str], ...]  # (facility id, room id), sorted

    @property
    def ratio(self) -> float | None:
        """covered / rooms; None when no room is registered."""
        return self.covered / self.rooms if self.rooms else None


@dataclass(frozen=True, slots=True)
class OnlineRow:
    """Registered devices and how many of them the hub sees online now."""

    district: str
    facility_id: str | None
    registered: int
    online: int
    never_seen: int  # registered but without any health row: never reported

    @property
    def rate(self) -> float | None:
        """online / registered; None when no device is registered."""
        return self.online / self.registered if self.registered else None


@dataclass(frozen=True, slots=True)
class OpenFault:
    """An unresolved ``fault`` or ``device_offline`` alarm whose condition has not cleared."""

    alarm_id: int
    district: str
    facility_id: str
    type: str
    device_id: str | None
    room_id: str | None
    state: str  # 'open' or 'acknowledged'
    opened_at: datetime
    age_s: float  # now - opened_at

    @property
    def over_limit(self) -> bool:
        """Open longer than JGJ/T 484's 2 h."""
        return self.age_s > FAULT_LIMIT_S


@dataclass(frozen=True, slots=True)
class FaultRow:
    district: str
    facility_id: str | None
    open: int
    over_limit: int  # open longer than 2 h
    faults: tuple[OpenFault, ...]  # oldest first within a facility; by facility, then age


@dataclass(frozen=True, slots=True)
class FalseAlarmDay:
    """A local day on which a site had more than 5 false fire alarms (GB 50440)."""

    facility_id: str
    day: date
    false_alarms: int


@dataclass(frozen=True, slots=True)
class FireRow:
    """``fire`` alarms opened in the window, by how they ended."""

    district: str
    facility_id: str | None
    first_day: date
    last_day: date
    total: int
    false_alarm: int
    real_incident: int
    test: int
    cleared: int  # resolved by the system when a new episode began; no human verdict
    open: int  # not resolved yet
    review_days: tuple[FalseAlarmDay, ...]  # sorted by (facility, day)

    @property
    def false_alarm_rate(self) -> float | None:
        """false_alarm / (false_alarm + real_incident); None when there is no verdict."""
        judged = self.false_alarm + self.real_incident
        return self.false_alarm / judged if judged else None


@dataclass(frozen=True, slots=True)
class AckRow:
    """Time to acknowledge alarms of one priority opened in the window, in seconds."""

    district: str
    facility_id: str | None
    priority: str
    acknowledged: int  # alarms with a time to acknowledge: the population of p50 and p90
    unacknowledged: int  # still open: nobody has acknowledged them yet
    p50_s: float | None
    p90_s: float | None


@dataclass(frozen=True, slots=True)
class AlarmTests:
    """Simulated-alarm tests in one local month (GB 50440: 2 or more a month)."""

    district: str
    facility_id: str | None
    month: date  # its first day
    facilities: int
    compliant: int  # facilities with at least 2 tests in the month
    detectors: int
    detectors_tested: int
    tests: int

    @property
    def all_compliant(self) -> bool:
        return self.compliant == self.facilities


@dataclass(frozen=True, slots=True)
class NursingRow:
    """Nursing-type beds among an institution's beds (home care beds are not counted)."""

    district: str
    facility_id: str | None
    beds: int
    nursing: int

    @property
    def share(self) -> float | None:
        return self.nursing / self.beds if self.beds else None

    @property
    def meets_goal(self) -> bool:
        share = self.share
        return share is not None and share >= NURSING_GOAL


@dataclass(frozen=True, slots=True)
class DayRow:
    """Alarms opened on one local day, by type group, and how many were false alarms."""

    district: str
    facility_id: str | None
    day: date
    fire_gas: int  # fire, fire_prealarm, gas
    fall: int
    other: int
    false_alarms: int  # of any type

    @property
    def total(self) -> int:
        return self.fire_gas + self.fall + self.other


@dataclass(frozen=True, slots=True)
class Summary:
    """Every figure of one facility, or of a district's facilities in scope."""

    district: str
    facility_id: str | None
    facilities: tuple[Facility, ...]
    first_day: date  # the window's first local day (the earliest, for a district)
    last_day: date  # today, locally (the latest, for a district)
    coverage: CoverageRow
    online: OnlineRow
    faults: FaultRow
    fire: FireRow
    ack: tuple[AckRow, ...]  # high, medium, low
    tests_this_month: AlarmTests
    tests_last_month: AlarmTests
    nursing: NursingRow | None  # None without an institution (home care beds only)
    daily: tuple[DayRow, ...]  # one per local day of the window, oldest first


@dataclass(frozen=True, slots=True)
class DistrictSummary:
    district: str
    total: Summary
    facilities: tuple[Summary, ...]  # sorted by facility id


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


def _month(today: date, months_back: int) -> date:
    index = today.year * 12 + today.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)
