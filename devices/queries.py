"""Reads of the registry for people: facilities with their rooms and beds, residents, and
devices with their live status (``device_health``, which the hub keeps).

Every function that lists takes a :class:`Scope` and reads nothing outside it. A lookup by
id inside a scope answers ``None`` both for an unknown id and for one outside the scope, so
that callers can answer both alike. The scope clauses are fixed SQL fragments composed with
``psycopg.sql``; every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row


class Scope(Protocol):
    """What a caller may read: its facilities, and for an account linked to residents (a
    family's) those residents, which then bound it instead of the facilities."""

    @property
    def facilities(self) -> Collection[str]: ...

    @property
    def residents(self) -> Collection[str] | None: ...


def _scope(scope: Scope, by_resident: str, by_facility: str) -> tuple[sql.Composable, list[str]]:
    """The clause bounding a query to ``scope``, with its one parameter."""
    if scope.residents is not None:
        return sql.SQL(by_resident), sorted(scope.residents)
    return sql.SQL(by_facility), sorted(scope.facilities)


# -- facilities, rooms and beds ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FacilityRow:
    id: str
    name: str
    kind: str
    district: str
    tz: str
    supervisor_id: str | None
    rooms: int
    beds: int
    devices: int
    devices_online: int


@dataclass(frozen=True, slots=True)
class RoomRow:
    id: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class BedRow:
    room_id: str
    id: str
    nursing: bool
    resident_id: str | None
    resident_name: str | None


_FACILITIES: Final = """
    SELECT f.id, f.name, f.kind, f.district, f.tz, f.supervisor_id,
           (SELECT count(*) FROM rooms r WHERE r.facility_id = f.id) AS rooms,
           (SELECT count(*) FROM beds b WHERE b.facility_id = f.id) AS beds,
           (SELECT count(*) FROM devices d WHERE d.facility_id = f.id) AS devices,
           (SELECT count(*) FROM devices d JOIN device_health h ON h.device_id = d.id
            WHERE d.facility_id = f.id AND h.online) AS devices_online
    FROM facilities f
    WHERE f.id = ANY(%s)
    ORDER BY f.id
"""


async def facilities(conn: AsyncConnection[Any], ids: Collection[str]) -> list[FacilityRow]:
    """The facilities among ``ids`` with their room, bed and device counts, by id."""
    async with conn.cursor(row_factory=class_row(FacilityRow)) as cur:
        await cur.execute(_FACILITIES, (sorted(ids),))
        return await cur.fetchall()


async def facility(conn: AsyncConnection[Any], facility_id: str) -> FacilityRow | None:
    found = await facilities(conn, [facility_id])
    return found[0] if found else None


async def facility_kind(conn: AsyncConnection[Any], facility_id: str) -> str | None:
    """'institution' or 'home'; None for an unknown facility."""
    cur = await conn.execute("SELECT kind FROM facilities WHERE id = %s", (facility_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def rooms(conn: AsyncConnection[Any], facility_id: str) -> list[RoomRow]:
    async with conn.cursor(row_factory=class_row(RoomRow)) as cur:
        await cur.execute(
            "SELECT id, name, kind FROM rooms WHERE facility_id = %s ORDER BY id", (facility_id,)
        )
        return await cur.fetchall()


async def beds(conn: AsyncConnection[Any], facility_id: str) -> list[BedRow]:
    """The facility's beds with whoever lies in each, by room and bed."""
    async with conn.cursor(row_factory=class_row(BedRow)) as cur:
        await cur.execute(
            """
            SELECT b.room_id, b.id, b.nursing, b.resident_id, r.name AS resident_name
            FROM beds b LEFT JOIN residents r ON r.id = b.resident_id
            WHERE b.facility_id = %s ORDER BY b.room_id, b.id
            """,
            (facility_id,),
        )
        return await cur.fetchall()


# -- residents ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResidentRow:
    id: str
    name: str
    facility_id: str
    facility_name: str
    facility_kind: str
    tz: str
    room_id: str | None  # of the resident's first bed, if any
    bed_id: str | None


_RESIDENTS: Final = sql.SQL("""
    SELECT r.id, r.name, r.facility_id, f.name AS facility_name, f.kind AS facility_kind, f.tz,
           b.room_id, b.id AS bed_id
    FROM residents r JOIN facilities f ON f.id = r.facility_id
    LEFT JOIN LATERAL (SELECT room_id, id FROM beds WHERE resident_id = r.id ORDER BY id LIMIT 1) b ON true
    WHERE {scope}
""")


def _resident_scope(scope: Scope) -> tuple[sql.Composable, list[str]]:
    return _scope(scope, "r.id = ANY(%s)", "r.facility_id = ANY(%s)")


async def residents(conn: AsyncConnection[Any], scope: Scope) -> list[ResidentRow]:
    """The residents in scope, by facility and id."""
    where, ids = _resident_scope(scope)
    query = _RESIDENTS.format(scope=where) + sql.SQL(" ORDER BY r.facility_id, r.id")
    async with conn.cursor(row_factory=class_row(ResidentRow)) as cur:
        await cur.execute(query, (ids,))
        return await cur.fetchall()


async def resident(conn: AsyncConnection[Any], scope: Scope, resident_id: str) -> ResidentRow | None:
    """One resident, or None when unknown or outside the scope."""
    where, ids = _resident_scope(scope)
    query = _RESIDENTS.format(scope=where) + sql.SQL(" AND r.id = %s")
    async with conn.cursor(row_factory=class_row(ResidentRow)) as cur:
        await cur.execute(query, (ids, resident_id))
        return await cur.fetchone()


async def resident_facility(conn: AsyncConnection[Any], resident_id: str) -> str | None:
    """The facility a resident belongs to; None for an unknown resident."""
    cur = await conn.execute("SELECT facility_id FROM residents WHERE id = %s", (resident_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


# -- devices and their live status ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceStatusRow:
    """A device and how the hub sees it now; ``online`` is None before its first report."""

    id: str
    kind: str
    room_id: str | None
    bed_id: str | None
    resident_id: str | None
    online: bool | None
    since: datetime | None
    last_seen: datetime | None
    battery_low: bool
    tamper: bool
    fault: bool
    stuck: bool


@dataclass(frozen=True, slots=True)
class DeviceDetailRow:
    id: str
    kind: str
    room_id: str | None
    bed_id: str | None
    resident_id: str | None
    facility_id: str
    heartbeat_s: int
    placement: str | None
    online: bool | None
    since: datetime | None
    last_seen: datetime | None
    battery_low: bool
    tamper: bool
    fault: bool
    stuck: bool
    tz: str  # the facility's, for readings bucketed by local day


_STATUS: Final = sql.SQL("""
    SELECT d.id, d.kind, d.room_id, d.bed_id, d.resident_id, h.online, h.since, h.last_seen,
           coalesce(h.battery_low, false) AS battery_low, coalesce(h.tamper, false) AS tamper,
           coalesce(h.fault, false) AS fault, coalesce(h.stuck, false) AS stuck
    FROM devices d LEFT JOIN device_health h ON h.device_id = d.id
    WHERE {where}
    ORDER BY d.id
""")


def _device_scope(scope: Scope) -> tuple[sql.Composable, list[str]]:
    return _scope(scope, "d.resident_id = ANY(%s)", "d.facility_id = ANY(%s)")


async def _statuses(
    conn: AsyncConnection[Any], where: sql.Composable, args: Sequence[object]
) -> list[DeviceStatusRow]:
    async with conn.cursor(row_factory=class_row(DeviceStatusRow)) as cur:
        await cur.execute(_STATUS.format(where=where), args)
        return await cur.fetchall()


async def device_statuses(
    conn: AsyncConnection[Any], scope: Scope, *, facility_id: str | None = None, online: bool | None = None
) -> list[DeviceStatusRow]:
    """Devices in scope, by id; only one facility's, and only those (not) online, if asked.
    A device that never reported counts as not online."""
    where, ids = _device_scope(scope)
    clauses = [where, sql.SQL("(%s::text IS NULL OR d.facility_id = %s)")]
    args: list[object] = [ids, facility_id, facility_id]
    if online is not None:
        clauses.append(sql.SQL("coalesce(h.online, false) = %s"))
        args.append(online)
    return await _statuses(conn, sql.SQL(" AND ").join(clauses), args)


async def facility_devices(conn: AsyncConnection[Any], facility_id: str) -> list[DeviceStatusRow]:
    return await _statuses(conn, sql.SQL("d.facility_id = %s"), (facility_id,))


async def resident_devices(conn: AsyncConnection[Any], resident_id: str) -> list[DeviceStatusRow]:
    return await _statuses(conn, sql.SQL("d.resident_id = %s"), (resident_id,))


_DEVICE: Final = sql.SQL("""
    SELECT d.id, d.kind, d.room_id, d.bed_id, d.resident_id, d.facility_id, d.heartbeat_s,
           d.placement, h.online, h.since, h.last_seen,
           coalesce(h.battery_low, false) AS battery_low, coalesce(h.tamper, false) AS tamper,
           coalesce(h.fault, false) AS fault, coalesce(h.stuck, false) AS stuck, f.tz
    FROM devices d JOIN facilities f ON f.id = d.facility_id
    LEFT JOIN device_health h ON h.device_id = d.id
    WHERE {scope} AND d.id = %s
""")


async def device(conn: AsyncConnection[Any], scope: Scope, device_id: str) -> DeviceDetailRow | None:
    """One device, or None when unknown or outside the scope."""
    where, ids = _device_scope(scope)
    async with conn.cursor(row_factory=class_row(DeviceDetailRow)) as cur:
        await cur.execute(_DEVICE.format(scope=where), (ids, device_id))
        return await cur.fetchone()
