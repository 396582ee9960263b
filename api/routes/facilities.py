"""Facilities with their rooms, beds and devices' live status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from psycopg.rows import dict_row
from pydantic import BaseModel

from api.deps import Caller, Conn, Operator, not_found

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


_FACILITIES = """
    SELECT f.id, f.name, f.kind, f.district, f.tz, f.supervisor_id,
           (SELECT count(*) FROM rooms r WHERE r.facility_id = f.id) AS rooms,
           (SELECT count(*) FROM beds b WHERE b.facility_id = f.id) AS beds,
           (SELECT count(*) FROM devices d WHERE d.facility_id = f.id) AS devices,
           (SELECT count(*) FROM devices d JOIN device_health h ON h.device_id = d.id
            WHERE d.facility_id = f.id AND h.online) AS devices_online,
           (SELECT count(*) FROM alarms a WHERE a.facility_id = f.id AND a.state <> 'resolved') AS open_alarms
    FROM facilities f
    WHERE f.id = ANY(%s)
"""

DEVICE_STATUS = """
    SELECT d.id, d.kind, d.room_id, d.bed_id, d.resident_id, h.online, h.since, h.last_seen,
           coalesce(h.battery_low, false) AS battery_low, coalesce(h.tamper, false) AS tamper,
           coalesce(h.fault, false) AS fault, coalesce(h.stuck, false) AS stuck
    FROM devices d LEFT JOIN device_health h ON h.device_id = d.id
"""


@router.get("")
async def list_facilities(conn: Conn, caller: Caller) -> list[Facility]:
    """The facilities the caller may see, with device and alarm counts."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_FACILITIES + " ORDER BY f.id", (sorted(caller.facilities),))
        return [Facility(**r) for r in await cur.fetchall()]


@router.get("/{facility_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_facility(facility_id: FacilityId, conn: Conn, caller: Operator) -> FacilityDetail:
    """One facility with its rooms, beds and devices. Regulators see no resident names."""
    if not caller.sees_facility(facility_id):
        raise not_found("facility", facility_id)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_FACILITIES, ([facility_id],))
        head = await cur.fetchone()
        if head is None:
            raise not_found("facility", facility_id)
        await cur.execute(
            "SELECT id, name, kind FROM rooms WHERE facility_id = %s ORDER BY id", (facility_id,)
        )
        rooms = {r["id"]: {**r, "beds": [], "devices": []} for r in await cur.fetchall()}
        await cur.execute(
            """
            SELECT b.room_id, b.id, b.nursing, b.resident_id, r.name AS resident_name
            FROM beds b LEFT JOIN residents r ON r.id = b.resident_id
            WHERE b.facility_id = %s ORDER BY b.room_id, b.id
            """,
            (facility_id,),
        )
        for bed in await cur.fetchall():
            if caller.role == "regulator":
                bed["resident_id"] = bed["resident_name"] = None
            rooms[bed.pop("room_id")]["beds"].append(bed)
        await cur.execute(DEVICE_STATUS + " WHERE d.facility_id = %s ORDER BY d.id", (facility_id,))
        loose: list[dict[str, Any]] = []
        for dev in await cur.fetchall():
            if caller.role == "regulator":
                dev["resident_id"] = None
            (rooms[dev["room_id"]]["devices"] if dev["room_id"] in rooms else loose).append(dev)
    room_list = [Room(**r) for r in rooms.values()]
    if loose:
        room_list.append(
            Room(id="", name="", kind="worn", beds=[], devices=[DeviceStatus(**d) for d in loose])
        )
    return FacilityDetail(**head, room_list=room_list)
