"""Devices with their live status, and their readings: raw, or bucketed in the facility's
time zone (``time_bucket`` on TimescaleDB, ``date_bin`` on plain PostgreSQL)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

import hub.queries
from api.deps import Caller, Conn, RawReader, not_found
from api.routes.facilities import DeviceStatus, device_status
from devices import queries

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Bucket = Literal["raw", "1m", "5m", "15m", "1h", "1d"]
MAX_POINTS: Final = 20_000
MAX_SPAN: Final = timedelta(days=92)


class DeviceDetail(DeviceStatus):
    facility_id: str
    heartbeat_s: int
    placement: str | None


class Point(BaseModel):
    ts: datetime
    metric: str
    value: float
    min: float | None = None
    max: float | None = None
    n: int | None = None


@router.get("")
async def list_devices(
    conn: Conn,
    caller: Caller,
    facility: Annotated[str | None, Query(max_length=64)] = None,
    offline: Annotated[
        bool | None, Query(description="only devices offline (true) or online (false)")
    ] = None,
) -> list[DeviceStatus]:
    online = None if offline is None else not offline
    rows = await queries.device_statuses(conn, caller, facility_id=facility, online=online)
    return [device_status(r, caller) for r in rows]


async def _find(conn: Conn, caller: Caller, device_id: str) -> queries.DeviceDetailRow:
    row = await queries.device(conn, caller, device_id)
    if row is None:
        raise not_found("device", device_id)
    if caller.role == "regulator":
        row = dataclasses.replace(row, resident_id=None)
    return row


@router.get("/{device_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_device(device_id: DeviceId, conn: Conn, caller: Caller) -> DeviceDetail:
    return DeviceDetail.model_validate(await _find(conn, caller, device_id), from_attributes=True)


@router.get(
    "/{device_id}/readings",
    responses={404: {"description": "Unknown, or not the caller's"}, 422: {"description": "Bad range"}},
)
async def readings(
    request: Request,
    device_id: DeviceId,
    conn: Conn,
    caller: RawReader,
    since: Annotated[datetime, Query(description="start, RFC 3339 with offset")],
    until: Annotated[datetime | None, Query(description="end (default now)")] = None,
    metric: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = None,
    bucket: Bucket = "raw",
) -> list[Point]:
    """Readings of one device. Buckets are aligned to the facility's local midnight and give
    the mean, min, max and count of each metric."""
    if since.tzinfo is None or (until is not None and until.tzinfo is None):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since and until need a UTC offset")
    row = await _find(conn, caller, device_id)
    end = until or datetime.now(since.tzinfo)
    if end <= since:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until must be after since")
    if end - since > MAX_SPAN:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {MAX_SPAN.days} days at a time")
    rows = await hub.queries.readings(
        conn,
        device_id,
        since,
        end,
        metric=metric,
        bucket=bucket,
        tz=row.tz,
        timescaledb=request.app.state.timescale,
        limit=MAX_POINTS + 1,
    )
    if len(rows) > MAX_POINTS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"more than {MAX_POINTS} points: narrow the range, name a metric or use a bucket",
        )
    return [Point.model_validate(r, from_attributes=True) for r in rows]
