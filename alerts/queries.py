"""Reads of alarms for people: alarms as a console shows them (with the names of the place,
the resident and the device), their audit trail, and contacts and policies.

Every list takes an :class:`AlarmScope` and reads nothing outside it; a lookup by id inside a
scope answers ``None`` both for an unknown alarm and for one outside it. The scope clause is
the SQL twin of the API's ``Principal.sees_alarm``. Optional filters are fixed fragments
composed with ``psycopg.sql``; every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row


class AlarmScope(Protocol):
    """Whose alarms a caller may read: its facilities; or, for an account linked to residents
    (a family's), those residents' alarms and the resident-less alarms of ``homes``."""

    @property
    def facilities(self) -> Collection[str]: ...

    @property
    def residents(self) -> Collection[str] | None: ...

    @property
    def homes(self) -> Collection[str]: ...


@dataclass(frozen=True, slots=True)
class AlarmView:
    """An alarm with the names a console shows. ``bed_id`` is the device's bed, else the
    resident's first."""

    id: int
    type: str
    priority: str
    state: str
    resolution: str | None
    subject: str
    facility_id: str | None
    facility_name: str | None
    facility_kind: str | None
    district: str | None
    room_id: str | None
    room_name: str | None
    resident_id: str | None
    resident_name: str | None
    bed_id: str | None
    device_id: str | None
    device_kind: str | None
    opened_at: datetime
    last_seen_at: datetime
    count: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    cleared_at: datetime | None
    escalation_level: int
    updated_at: datetime
    evidence: dict[str, Any]


_VIEW: Final = sql.SQL("""
    SELECT a.id, a.type, a.priority, a.state, a.resolution, a.subject,
           a.facility_id, f.name AS facility_name, f.kind AS facility_kind, f.district,
           a.room_id, rm.name AS room_name, a.resident_id, r.name AS resident_name,
           coalesce(d.bed_id, (SELECT b.id FROM beds b WHERE b.resident_id = a.resident_id
                               ORDER BY b.id LIMIT 1)) AS bed_id,
           a.device_id, d.kind AS device_kind,
           a.opened_at, a.last_seen_at, a.count, a.acknowledged_at, a.acknowledged_by,
           a.resolved_at, a.resolved_by, a.cleared_at, a.escalation_level, a.updated_at, a.evidence
    FROM alarms a
    LEFT JOIN facilities f ON f.id = a.facility_id
    LEFT JOIN rooms rm ON rm.facility_id = a.facility_id AND rm.id = a.room_id
    LEFT JOIN residents r ON r.id = a.resident_id
    LEFT JOIN devices d ON d.id = a.device_id
    WHERE {where}
""")

_PRIORITY_ORDER: Final = sql.SQL("CASE a.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END")


def _scope(scope: AlarmScope) -> tuple[sql.Composable, dict[str, Any]]:
    """The clause (over alias ``a``) for the alarms ``scope`` may see, with its parameters."""
    if scope.residents is not None:
        return (
            sql.SQL(
                "(a.resident_id = ANY(%(scope_residents)s)"
                " OR (a.resident_id IS NULL AND a.facility_id = ANY(%(scope_homes)s)))"
            ),
            {"scope_residents": sorted(scope.residents), "scope_homes": sorted(scope.homes)},
        )
    return sql.SQL("a.facility_id = ANY(%(scope_facilities)s)"), {
        "scope_facilities": sorted(scope.facilities)
    }


async def _views(
    conn: AsyncConnection[Any], where: sql.Composable, tail: sql.Composable, args: Any
) -> list[AlarmView]:
    async with conn.cursor(row_factory=class_row(AlarmView)) as cur:
        await cur.execute(_VIEW.format(where=where) + tail, args)
        return await cur.fetchall()


async def alarm_views(conn: AsyncConnection[Any], ids: Sequence[int]) -> list[AlarmView]:
    """The alarms ``ids``, unscoped (the live feed filters per subscriber), by id."""
    return await _views(conn, sql.SQL("a.id = ANY(%s)"), sql.SQL(" ORDER BY a.id"), (list(ids),))


async def scoped_alarm(conn: AsyncConnection[Any], scope: AlarmScope, alarm_id: int) -> AlarmView | None:
    """One alarm, or None when unknown or outside ``scope``."""
    where, args = _scope(scope)
    found = await _views(
        conn, sql.SQL("{} AND a.id = %(alarm_id)s").format(where), sql.SQL(""), {**args, "alarm_id": alarm_id}
    )
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Which alarms of a scope to list. ``state`` 'unresolved' is open or acknowledged;
    ``since``/``until`` bound the opening time."""

    state: str = "unresolved"
    type: str | None = None
    priority: str | None = None
    facility_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200


async def scoped_alarms(
    conn: AsyncConnection[Any], scope: AlarmScope, wanted: AlarmFilter
) -> list[AlarmView]:
    """Alarms in ``scope``, the most urgent first (priority, then newest)."""
    where, args = _scope(scope)
    clauses = [where]
    if wanted.state == "unresolved":
        clauses.append(sql.SQL("a.state <> 'resolved'"))
    else:
        clauses.append(sql.SQL("a.state = %(state)s"))
    for name, value, clause in (
        ("type", wanted.type, "a.type = %(type)s"),
        ("priority", wanted.priority, "a.priority = %(priority)s"),
        ("facility", wanted.facility_id, "a.facility_id = %(facility)s"),
        ("since", wanted.since, "a.opened_at >= %(since)s"),
        ("until", wanted.until, "a.opened_at < %(until)s"),
    ):
        if value is not None:
            clauses.append(sql.SQL(clause))
            args[name] = value
    args.update(state=wanted.state, limit=wanted.limit)
    tail = sql.SQL(" ORDER BY {}, a.opened_at DESC, a.id DESC LIMIT %(limit)s").format(_PRIORITY_ORDER)
    return await _views(conn, sql.SQL(" AND ").join(clauses), tail, args)


async def resident_alarms(
    conn: AsyncConnection[Any], resident_id: str, *, limit: int = 50
) -> list[AlarmView]:
    """The resident's alarms opened in the last 7 days, newest first."""
    return await _views(
        conn,
        sql.SQL("a.resident_id = %s AND a.opened_at > now() - interval '7 days'"),
        sql.SQL(" ORDER BY a.opened_at DESC LIMIT %s"),
        (resident_id, limit),
    )


async def open_alarm_counts(conn: AsyncConnection[Any], facility_ids: Collection[str]) -> dict[str, int]:
    """Unresolved alarms per facility, for the facilities among ``facility_ids`` that have any."""
    cur = await conn.execute(
        "SELECT facility_id, count(*) FROM alarms WHERE facility_id = ANY(%s) AND state <> 'resolved'"
        " GROUP BY facility_id",
        (sorted(facility_ids),),
    )
    return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


# -- the audit trail ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition or escalation step. ``actor`` is a username or 'system'; ``note`` what
    a person wrote; ``detail`` what the system recorded (which can name contacts)."""

    at: datetime
    action: str
    actor: str
    channel: str
    note: str | None
    detail: dict[str, Any]


async def alarm_events(conn: AsyncConnection[Any], alarm_id: int) -> list[AlarmEvent]:
    """The alarm's audit trail, oldest first."""
    async with conn.cursor(row_factory=class_row(AlarmEvent)) as cur:
        await cur.execute(
            "SELECT at, action, actor, channel, note, detail FROM alarm_events"
            " WHERE alarm_id = %s ORDER BY id",
            (alarm_id,),
        )
        return await cur.fetchall()


# -- contacts and policies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactRow:
    id: int
    facility_id: str
    name: str
    role: str
    url: str  # an apprise URL, which can carry credentials
    language: str
    resident_id: str | None
    active: bool


async def contacts(
    conn: AsyncConnection[Any], facility_ids: Collection[str], *, facility_id: str | None = None
) -> list[ContactRow]:
    """Contacts of the facilities among ``facility_ids`` (only ``facility_id``'s, if given),
    inactive ones included, by facility and id."""
    async with conn.cursor(row_factory=class_row(ContactRow)) as cur:
        await cur.execute(
            "SELECT id, facility_id, name, role, url, language, resident_id, active FROM contacts"
            " WHERE facility_id = ANY(%s) AND (%s::text IS NULL OR facility_id = %s)"
            " ORDER BY facility_id, id",
            (sorted(facility_ids), facility_id, facility_id),
        )
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class PolicyRow:
    alarm_type: str  # or '*': every type without its own
    steps: list[dict[str, Any]]  # as stored; ``alerts.escalation.parse_steps`` reads them


async def policies(conn: AsyncConnection[Any], facility_id: str) -> list[PolicyRow]:
    """The facility's own escalation policies, by alarm type."""
    async with conn.cursor(row_factory=class_row(PolicyRow)) as cur:
        await cur.execute(
            "SELECT alarm_type, steps FROM escalation_policies WHERE facility_id = %s ORDER BY alarm_type",
            (facility_id,),
        )
        return await cur.fetchall()
