"""Reads of the stream the hub stores, for people: readings raw or bucketed, the newest vital
signs, and the raw data behind an alarm (waveforms, a room's fire curves).

Callers check scope first (``devices.queries``); these functions take ids they may read.
Buckets are aligned to the facility's local midnight: ``time_bucket`` on TimescaleDB,
``date_bin`` on plain PostgreSQL. The two bucket expressions are fixed SQL fragments composed
with ``psycopg.sql``; the width and the time zone are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

# Bucket names as the API spells them, and their widths.
BUCKET_WIDTHS: Final = {
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "1h": "1 hour",
    "1d": "1 day",
}
# What a resident's day shows: vital signs, presence and battery.
TODAY_METRICS: Final = ("hr_bpm", "rr_rpm", "occupied", "movement", "motion", "battery_pct")


@dataclass(frozen=True, slots=True)
class Reading:
    """A raw reading (``min``, ``max`` and ``n`` None), or a bucket: its start, the mean as
    ``value``, and the minimum, maximum and count of its readings."""

    ts: datetime
    metric: str
    value: float
    min: float | None = None
    max: float | None = None
    n: int | None = None


_FILTERS: Final = sql.SQL(
    "device_id = %(dev)s AND ts >= %(since)s AND ts < %(until)s"
    " AND (%(metric)s::text IS NULL OR metric = %(metric)s)"
)
_RAW: Final = sql.SQL(
    "SELECT ts, metric, value FROM readings WHERE {filters} ORDER BY ts, metric LIMIT %(limit)s"
)
_BUCKETED: Final = sql.SQL("""
    SELECT {start} AS ts, metric, avg(value) AS value, min(value) AS min, max(value) AS max,
           count(*) AS n
    FROM readings WHERE {filters}
    GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s
""")
_TIME_BUCKET: Final = sql.SQL("time_bucket(%(width)s::interval, ts, %(tz)s)")
# local-midnight-aligned bins without TimescaleDB (2000-01-03 was a Monday at midnight)
_DATE_BIN: Final = sql.SQL(
    "(date_bin(%(width)s::interval, ts AT TIME ZONE %(tz)s, timestamp '2000-01-03') AT TIME ZONE %(tz)s)"
)


async def readings(
    conn: AsyncConnection[Any],
    device_id: str,
    since: datetime,
    until: datetime,
    *,
    metric: str | None = None,
    bucket: str = "raw",
    tz: str = "UTC",
    timescaledb: bool = False,
    limit: int,
) -> list[Reading]:
    """A device's readings in [since, until), by time and metric, at most ``limit``: raw, or
    in buckets of ``BUCKET_WIDTHS[bucket]`` aligned to local midnight in ``tz``."""
    args: dict[str, object] = {
        "dev": device_id,
        "since": since,
        "until": until,
        "metric": metric,
        "limit": limit,
    }
    if bucket == "raw":
        query = _RAW.format(filters=_FILTERS)
    elif bucket not in BUCKET_WIDTHS:
        raise ValueError(f"bucket is 'raw' or one of {', '.join(BUCKET_WIDTHS)}, not {bucket!r}")
    else:
        args["width"] = BUCKET_WIDTHS[bucket]
        args["tz"] = tz
        query = _BUCKETED.format(start=_TIME_BUCKET if timescaledb else _DATE_BIN, filters=_FILTERS)
    async with conn.cursor(row_factory=class_row(Reading)) as cur:
        await cur.execute(query, args)
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class Latest:
    metric: str
    value: float
    ts: datetime


async def latest_of_resident(
    conn: AsyncConnection[Any], resident_id: str, metrics: Sequence[str] = TODAY_METRICS
) -> list[Latest]:
    """The newest reading of each metric from the resident's devices in the last hour."""
    async with conn.cursor(row_factory=class_row(Latest)) as cur:
        await cur.execute(
            """
            SELECT DISTINCT ON (metric) metric, value, ts FROM readings
            WHERE device_id IN (SELECT id FROM devices WHERE resident_id = %s)
              AND ts > now() - interval '1 hour'
              AND metric = ANY(%s)
            ORDER BY metric, ts DESC
            """,
            (resident_id, list(metrics)),
        )
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class Waveform:
    """One window of a wearable's accelerometer: ``n`` samples at ``rate_hz`` from ``ts``;
    ``acc`` holds them as little-endian float32 (x, y, z) triples, in g."""

    ts: datetime
    rate_hz: float
    n: int
    acc: bytes


async def waveforms(
    conn: AsyncConnection[Any], device_id: str, start: datetime, end: datetime, *, limit: int = 600
) -> list[Waveform]:
    """The device's waveform windows starting in [start, end], oldest first."""
    async with conn.cursor(row_factory=class_row(Waveform)) as cur:
        await cur.execute(
            "SELECT ts, rate_hz, n, acc FROM waveforms WHERE device_id = %s AND ts >= %s AND ts <= %s"
            " ORDER BY ts LIMIT %s",
            (device_id, start, end, limit),
        )
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class Series:
    device_id: str
    metric: str
    ts: list[datetime]
    values: list[float]


async def room_series(
    conn: AsyncConnection[Any],
    facility_id: str | None,
    room_id: str | None,
    device_id: str | None,
    start: datetime,
    end: datetime,
    metrics: Sequence[str],
) -> list[Series]:
    """Each metric of ``metrics`` from every device in the room, and from ``device_id``
    wherever it is, in [start, end]; by device and metric, each oldest first."""
    async with conn.cursor(row_factory=class_row(Series)) as cur:
        await cur.execute(
            """
            SELECT r.device_id, r.metric, array_agg(r.ts ORDER BY r.ts) AS ts,
                   array_agg(r.value ORDER BY r.ts) AS "values"
            FROM readings r JOIN devices d ON d.id = r.device_id
            WHERE ((d.facility_id = %s AND d.room_id = %s) OR d.id = %s)
              AND r.ts >= %s AND r.ts <= %s AND r.metric = ANY(%s)
            GROUP BY r.device_id, r.metric ORDER BY r.device_id, r.metric
            """,
            (facility_id, room_id, device_id, start, end, list(metrics)),
        )
        return await cur.fetchall()
