"""Residents and how they are today: the family view's data."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

import hub.queries
from alerts.queries import resident_alarms
from api.deps import Caller, Conn, not_found
from api.routes.facilities import DeviceStatus
from api.views import for_caller, serialize
from devices import queries

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


def _check_role(caller: Caller) -> None:
    if caller.role == "regulator":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "residents are not available to regulators")


@router.get("")
async def list_residents(conn: Conn, caller: Caller) -> list[Resident]:
    _check_role(caller)
    return [Resident.model_validate(r, from_attributes=True) for r in await queries.residents(conn, caller)]


@router.get("/{resident_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_resident(resident_id: ResidentId, conn: Conn, caller: Caller) -> ResidentToday:
    """A resident today: devices, the newest reading of each vital sign in the last hour, and
    the alarms of the last 7 days with what was done about them."""
    _check_role(caller)
    head = await queries.resident(conn, caller, resident_id)
    if head is None:
        raise not_found("resident", resident_id)
    devices = [
        DeviceStatus.model_validate(d, from_attributes=True)
        for d in await queries.resident_devices(conn, resident_id)
    ]
    latest = [
        Latest.model_validate(r, from_attributes=True)
        for r in await hub.queries.latest_of_resident(conn, resident_id)
    ]
    alarms = [for_caller(serialize(a), caller) for a in await resident_alarms(conn, resident_id)]
    return ResidentToday(**dataclasses.asdict(head), devices=devices, latest=latest, alarms=alarms)
