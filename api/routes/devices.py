"""Devices with their live status, and their readings: raw, or bucketed in the facility's
time zone (``time_bucket`` on TimescaleDB, ``date_bin`` on plain PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel

from api.deps import Caller, Conn, RawReader, not_found
from api.routes.facilities import DEVICE_STATUS, DeviceStatus

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Bucket = Literal["raw", "1m", "5m", "15m", "1h", "1d"]
_INTERVALS: Final = {"1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "1d": "1 day"}
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


def _device_scope(caller: Caller) -> tuple[str, list[str]]:
    if caller.residents is not None:
        return "d.resident_id = ANY(%s)", sorted(caller.residents)
    return "d.facility_id = ANY(%s)", sorted(caller.facilities)


@router.get("")
async def list_devices(
    conn: Conn,
    caller: Caller,
    facility: Annotated[str | None, Query(max_length=64)] = None,
    offline: Annotated[
        bool | None, Query(description="only devices offline (true) or online (false)")
    ] = None,
) -> list[DeviceStatus]:
    where, ids = _device_scope(caller)
    sql = f"{DEVICE_STATUS} WHERE {where} AND (%s::text IS NULL OR d.facility_id = %s)"
    args: list[object] = [ids, facility, facility]
    if offline is not None:
        sql += " AND coalesce(h.online, false) = %s"
        args.append(not offline)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql + " ORDER BY d.id", args)
        rows = await cur.fetchall()
    if caller.role == "regulator":
        for row in rows:
            row["resident_id"] = None
    return [DeviceStatus(**r) for r in rows]


async def _find(conn: Conn, caller: Caller, device_id: str) -> dict[str, object]:
    where, ids = _device_scope(caller)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""
            SELECT d.id, d.kind, d.room_id, d.bed_id, d.resident_id, d.facility_id, d.heartbeat_s,
                   d.placement, h.online, h.since, h.last_seen,
                   coalesce(h.battery_low, false) AS battery_low, coalesce(h.tamper, false) AS tamper,
                   coalesce(h.fault, false) AS fault, coalesce(h.stuck, false) AS stuck, f.tz
            FROM devices d JOIN facilities f ON f.id = d.facility_id
            LEFT JOIN device_health h ON h.device_id = d.id
            WHERE {where} AND d.id = %s
            """,  # noqa: S608  (a fixed scope clause; values are parameters)
            (ids, device_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise not_found("device", device_id)
    if caller.role == "regulator":
        row["resident_id"] = None
    return row


@router.get("/{device_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_device(device_id: DeviceId, conn: Conn, caller: Caller) -> DeviceDetail:
    row = await _find(conn, caller, device_id)
    row.pop("tz")
    return DeviceDetail(**row)


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
    args: dict[str, object] = {
        "dev": device_id,
        "since": since,
        "until": end,
        "metric": metric,
        "limit": MAX_POINTS + 1,
    }
    filters = (
        "device_id = %(dev)s AND ts >= %(since)s AND ts < %(until)s"
        " AND (%(metric)s::text IS NULL OR metric = %(metric)s)"
    )
    if bucket == "raw":
        sql = f"SELECT ts, metric, value FROM readings WHERE {filters} ORDER BY ts, metric LIMIT %(limit)s"  # noqa: S608
    else:
        args["width"] = _INTERVALS[bucket]
        args["tz"] = row["tz"]
        if request.app.state.timescale:
            start = "time_bucket(%(width)s::interval, ts, %(tz)s)"
        else:
            # local-midnight-aligned bins without TimescaleDB
            start = (
                "(date_bin(%(width)s::interval, ts AT TIME ZONE %(tz)s, timestamp '2000-01-03')"
                " AT TIME ZONE %(tz)s)"
            )
        sql = f"""
            SELECT {start} AS ts, metric, avg(value) AS value, min(value) AS min, max(value) AS max,
                   count(*) AS n
            FROM readings WHERE {filters}
            GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s
        """  # noqa: S608  (fixed fragments; values are parameters)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, args)
        rows = await cur.fetchall()
    if len(rows) > MAX_POINTS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"more than {MAX_POINTS} points: narrow the range, name a metric or use a bucket",
        )
    return [Point(**r) for r in rows]
