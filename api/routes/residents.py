"""Residents and how they are today: the family view's data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from psycopg.rows import dict_row
from pydantic import BaseModel

from api.deps import Caller, Conn, not_found
from api.routes.facilities import DEVICE_STATUS, DeviceStatus
from api.views import ALARM_VIEW, for_caller, serialize

router = APIRouter(prefix="/residents", tags=["residents"])

ResidentId = Annotated[str, Path(min_length=1, max_length=64)]


class Resident(BaseModel):
    id: str
    name: str
    facility_id: str
    facility_name: str
    facility_kind: str
    tz: str
    room_id: str | None
    bed_id: str | None


class Latest(BaseModel):
    metric: str
    value: float
    ts: datetime


class ResidentToday(Resident):
    devices: list[DeviceStatus]
    latest: list[Latest]
    alarms: list[dict[str, object]]


_RESIDENTS = """
    SELECT r.id, r.name, r.facility_id, f.name AS facility_name, f.kind AS facility_kind, f.tz,
           b.room_id, b.id AS bed_id
    FROM residents r JOIN facilities f ON f.id = r.facility_id
    LEFT JOIN LATERAL (SELECT room_id, id FROM beds WHERE resident_id = r.id ORDER BY id LIMIT 1) b ON true
"""


def _scope(caller: Caller) -> tuple[str, list[str]]:
    if caller.role == "regulator":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "residents are not available to regulators")
    if caller.residents is not None:
        return "r.id = ANY(%s)", sorted(caller.residents)
    return "r.facility_id = ANY(%s)", sorted(caller.facilities)


@router.get("")
async def list_residents(conn: Conn, caller: Caller) -> list[Resident]:
    where, ids = _scope(caller)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_RESIDENTS} WHERE {where} ORDER BY r.facility_id, r.id", (ids,))
        return [Resident(**r) for r in await cur.fetchall()]


@router.get("/{resident_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_resident(resident_id: ResidentId, conn: Conn, caller: Caller) -> ResidentToday:
    """A resident today: devices, the newest reading of each vital sign in the last hour, and
    the alarms of the last 7 days with what was done about them."""
    where, ids = _scope(caller)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_RESIDENTS} WHERE {where} AND r.id = %s", (ids, resident_id))
        head = await cur.fetchone()
        if head is None:
            raise not_found("resident", resident_id)
        await cur.execute(DEVICE_STATUS + " WHERE d.resident_id = %s ORDER BY d.id", (resident_id,))
        devices = [DeviceStatus(**d) for d in await cur.fetchall()]
        await cur.execute(
            """
            SELECT DISTINCT ON (metric) metric, value, ts FROM readings
            WHERE device_id IN (SELECT id FROM devices WHERE resident_id = %s)
              AND ts > now() - interval '1 hour'
              AND metric IN ('hr_bpm', 'rr_rpm', 'occupied', 'movement', 'motion', 'battery_pct')
            ORDER BY metric, ts DESC
            """,
            (resident_id,),
        )
        latest = [Latest(**r) for r in await cur.fetchall()]
        await cur.execute(
            ALARM_VIEW + " WHERE a.resident_id = %s AND a.opened_at > now() - interval '7 days'"
            " ORDER BY a.opened_at DESC LIMIT 50",
            (resident_id,),
        )
        alarms = [for_caller(serialize(r), caller) for r in await cur.fetchall()]
    return ResidentToday(**head, devices=devices, latest=latest, alarms=alarms)
