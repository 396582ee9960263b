"""How alarms look to people: one row with the names a console shows, and the SQL that
keeps every list inside the caller's scope. Routes and the live feed share it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.auth import Principal

ALARM_VIEW: Final = """
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
"""

PRIORITY_ORDER: Final = "CASE a.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END"


def alarm_scope(principal: Principal) -> tuple[str, dict[str, Any]]:
    """A WHERE clause (over alias ``a``) for the alarms the caller may see, with its parameters.
    It is the SQL twin of :meth:`Principal.sees_alarm`."""
    if principal.residents is not None:
        return (
            "(a.resident_id = ANY(%(scope_residents)s)"
            " OR (a.resident_id IS NULL AND a.facility_id = ANY(%(scope_homes)s)))",
            {"scope_residents": sorted(principal.residents), "scope_homes": sorted(principal.homes)},
        )
    return "a.facility_id = ANY(%(scope_facilities)s)", {"scope_facilities": sorted(principal.facilities)}


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def serialize(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) for k, v in row.items()}


async def fetch_alarm_views(conn: AsyncConnection[Any], ids: Sequence[int]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(ALARM_VIEW + " WHERE a.id = ANY(%s) ORDER BY a.id", (list(ids),))
        return [serialize(r) for r in await cur.fetchall()]


def for_caller(view: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """What a caller's role may read of an alarm. Regulators get the record without who it
    was about: no resident, bed or detection details (which can carry vital signs); the
    subject is kept only when it is a device."""
    if principal.role == "regulator":
        about_device = view.get("resident_id") is None
        return {
            **view,
            "evidence": {},
            "resident_id": None,
            "resident_name": None,
            "bed_id": None,
            "subject": view.get("subject") if about_device else None,
        }
    return view
