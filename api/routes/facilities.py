"""Facilities with their rooms, beds and devices' live status."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from alerts.queries import open_alarm_counts
from api.auth import Principal
from api.deps import Caller, Conn, Operator, not_found
from devices import queries
from devices.queries import DeviceStatusRow

router = APIRouter(prefix="/facilities", tags=["facilities"])

FacilityId = Annotated[str, Path(min_length=1, max_length=64)]


class Facility(BaseModel):
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
    open_alarms: int


class DeviceStatus(BaseModel):
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


class Bed(BaseModel):
    id: str
    nursing: bool
    resident_id: str | None
    resident_name: str | None


class Room(BaseModel):
    id: str
    name: str
    kind: str
    beds: list[Bed]
    devices: list[DeviceStatus]


class FacilityDetail(Facility):
    room_list: list[Room]


def device_status(row: DeviceStatusRow, caller: Principal) -> DeviceStatus:
    """A device's status as the caller may read it: regulators do not learn who wears it."""
    status = DeviceStatus.model_validate(row, from_attributes=True)
    if caller.role == "regulator":
        status.resident_id = None
    return status


@router.get("")
async def list_facilities(conn: Conn, caller: Caller) -> list[Facility]:
    """The facilities the caller may see, with device and alarm counts."""
    found = await queries.facilities(conn, caller.facilities)
    open_alarms = await open_alarm_counts(conn, [f.id for f in found])
    return [_facility(f, open_alarms.get(f.id, 0)) for f in found]


def _facility(row: queries.FacilityRow, open_alarms: int) -> Facility:
    return Facility(**dataclasses.asdict(row), open_alarms=open_alarms)


@router.get("/{facility_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_facility(facility_id: FacilityId, conn: Conn, caller: Operator) -> FacilityDetail:
    """One facility with its rooms, beds and devices. Regulators see no resident names."""
    if not caller.sees_facility(facility_id):
        raise not_found("facility", facility_id)
    head = await queries.facility(conn, facility_id)
    if head is None:
        raise not_found("facility", facility_id)
    open_alarms = await open_alarm_counts(conn, [facility_id])
    rooms = {
        r.id: Room(id=r.id, name=r.name, kind=r.kind, beds=[], devices=[])
        for r in await queries.rooms(conn, facility_id)
    }
    hidden = caller.role == "regulator"
    for bed in await queries.beds(conn, facility_id):
        rooms[bed.room_id].beds.append(
            Bed(
                id=bed.id,
                nursing=bed.nursing,
                resident_id=None if hidden else bed.resident_id,
                resident_name=None if hidden else bed.resident_name,
            )
        )
    loose: list[DeviceStatus] = []
    for dev in await queries.facility_devices(conn, facility_id):
        room = rooms.get(dev.room_id) if dev.room_id is not None else None
        (room.devices if room is not None else loose).append(device_status(dev, caller))
    room_list = list(rooms.values())
    if loose:
        room_list.append(Room(id="", name="", kind="worn", beds=[], devices=loose))
    return FacilityDetail(
        **dataclasses.asdict(head), open_alarms=open_alarms.get(facility_id, 0), room_list=room_list
    )
