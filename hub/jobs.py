"""The hub's scheduled jobs: rollups in each facility's time zone, retention, and the
inactivity baselines learned from each resident's history.

The Apache edition of TimescaleDB has no continuous aggregates and no job scheduler, so
the hub runs these itself. Each run takes a transaction-level advisory lock, so that with
several hub workers exactly one runs a job at a time, and records its outcome in the
``jobs`` table: a retention job that silently stops running is a full disk later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from hub.detectors import inactivity
from hub.metrics import HubMetrics
from hub.settings import Settings
from hub.storage import Database

log = logging.getLogger(__name__)

ROLLUP_TABLES = ("readings_hourly", "readings_daily")


async def _locked(conn: AsyncConnection[Any], job: str) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (f"ankang.job.{job}",))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _record(
    conn: AsyncConnection[Any], job: str, *, watermark: datetime | None, detail: dict[str, Any]
) -> None:
    await conn.execute(
        """
        INSERT INTO jobs (name, watermark, last_run, last_ok, last_error, detail)
        VALUES (%s, %s, now(), now(), NULL, %s)
        ON CONFLICT (name) DO UPDATE SET watermark = COALESCE(EXCLUDED.watermark, jobs.watermark),
            last_run = now(), last_ok = now(), last_error = NULL, detail = EXCLUDED.detail
        """,
        (job, watermark, Jsonb(detail)),
    )


async def _record_failure(db: Database, job: str, error: str) -> None:
    try:
        async with db.connection() as conn:
            await conn.execute(
                """
                INSERT INTO jobs (name, last_run, last_error) VALUES (%s, now(), %s)
                ON CONFLICT (name) DO UPDATE SET last_run = now(), last_error = EXCLUDED.last_error
                """,
                (job, error[:1000]),
            )
    except psycopg.Error:
        log.warning("could not record the failure of job %s", job)


async def run_rollups(
    db: Database, *, lateness: timedelta, now: datetime | None = None
) -> dict[str, int] | None:
    """Recompute hourly and daily buckets touched since the last run (minus ``lateness``).

    Buckets are aligned in each facility's time zone, and each touched bucket is recomputed
    whole from the raw readings (hourly) or from the hourly rows (daily), so reruns and
    late data are idempotent. Returns None if another worker holds the job.
    """
    end = now or datetime.now(UTC)
    async with db.connection() as conn, conn.transaction():
        if not await _locked(conn, "rollups"):
            return None
        cur = await conn.execute("SELECT watermark FROM jobs WHERE name = 'rollups'")
        row = await cur.fetchone()
        if row and row[0]:
            start = row[0] - lateness
        else:
            cur = await conn.execute("SELECT min(ts) FROM readings")
            first = await cur.fetchone()
            start = first[0] if first and first[0] else end
        hourly = await conn.execute(
            """
            INSERT INTO readings_hourly (device_id, metric, bucket, n, vmin, vmax, vsum)
            SELECT r.device_id, r.metric, date_trunc('hour', r.ts, f.tz), count(*), min(r.value),
                   max(r.value), sum(r.value)
            FROM readings r
            JOIN devices d ON d.id = r.device_id
            JOIN facilities f ON f.id = d.facility_id
            WHERE r.ts >= date_trunc('hour', %(start)s::timestamptz, f.tz) AND r.ts < %(end)s
              AND r.ts >= %(start)s::timestamptz - interval '1 day'
            GROUP BY 1, 2, 3
            ON CONFLICT (device_id, metric, bucket) DO UPDATE SET n = EXCLUDED.n, vmin = EXCLUDED.vmin,
                vmax = EXCLUDED.vmax, vsum = EXCLUDED.vsum
            """,
            {"start": start, "end": end},
        )
        daily = await conn.execute(
            """
            INSERT INTO readings_daily (device_id, metric, day, bucket, n, vmin, vmax, vsum)
            SELECT h.device_id, h.metric, (date_trunc('day', h.bucket, f.tz) AT TIME ZONE f.tz)::date,
                   date_trunc('day', h.bucket, f.tz), sum(h.n), min(h.vmin), max(h.vmax), sum(h.vsum)
            FROM readings_hourly h
            JOIN devices d ON d.id = h.device_id
            JOIN facilities f ON f.id = d.facility_id
            WHERE h.bucket >= date_trunc('day', %(start)s::timestamptz, f.tz)
              AND h.bucket >= %(start)s::timestamptz - interval '2 days'
            GROUP BY h.device_id, h.metric, f.tz, date_trunc('day', h.bucket, f.tz)
            ON CONFLICT (device_id, metric, day) DO UPDATE SET bucket = EXCLUDED.bucket, n = EXCLUDED.n,
                vmin = EXCLUDED.vmin, vmax = EXCLUDED.vmax, vsum = EXCLUDED.vsum
            """,
            {"start": start},
        )
        detail = {"hourly_rows": hourly.rowcount, "daily_rows": daily.rowcount}
        await _record(conn, "rollups", watermark=end, detail=detail)
    return detail


async def run_retention(
    db: Database,
    retention: dict[str, timedelta],
    *,
    rollups: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, int] | None:
    """Drop data older than each table's retention: whole chunks on TimescaleDB.

    ``drop_chunks`` removes only chunks that lie entirely before the cut-off, so a chunk
    that straddles it stays until all of its rows have expired. On plain PostgreSQL rows
    are deleted instead. Returns the chunks (or rows) removed per table, or None if
    another worker holds the job.
    """
    at = now or datetime.now(UTC)
    timescale = await db.timescaledb()
    removed: dict[str, int] = {}
    async with db.connection() as conn, conn.transaction():
        if not await _locked(conn, "retention"):
            return None
        for table, age in retention.items():
            cutoff = at - age
            if timescale:
                cur = await conn.execute(
                    "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                    (table, cutoff),
                )
                row = await cur.fetchone()
                removed[table] = int(row[0]) if row else 0
            else:
                time_col = "received_at" if table in ("quarantine", "dead_letters") else "ts"
                cur = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                        sql.Identifier(table), sql.Identifier(time_col)
                    ),
                    (cutoff,),
                )
                removed[table] = cur.rowcount
        if rollups is not None:
            for table in ROLLUP_TABLES:
                cur = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE bucket < %s").format(sql.Identifier(table)), (at - rollups,)
                )
                removed[table] = cur.rowcount
        await _record(conn, "retention", watermark=at, detail=removed)
    return removed


async def run_inactivity_baselines(db: Database, *, now: datetime | None = None) -> dict[str, int] | None:
    """Per resident and local hour: how long a quiet spell may last (hub.detectors.inactivity).

    An hour without enough spells over the window keeps the default (its row is removed).
    """
    at = now or datetime.now(UTC)
    async with db.connection() as conn, conn.transaction():
        if not await _locked(conn, "inactivity_baselines"):
            return None
        await conn.execute("DELETE FROM inactivity_baselines")
        cur = await conn.execute(
            """
            INSERT INTO inactivity_baselines (resident_id, local_hour, threshold_s, samples, computed_at)
            SELECT resident_id, local_hour,
                   least(greatest(%(factor)s * percentile_cont(%(q)s) WITHIN GROUP (ORDER BY seconds),
                                  %(lo)s), %(hi)s),
                   count(*), %(at)s
            FROM inactivity_gaps
            WHERE started >= %(since)s
            GROUP BY resident_id, local_hour
            HAVING count(*) >= %(min)s
            """,
            {
                "factor": inactivity.BASELINE_FACTOR,
                "q": inactivity.BASELINE_QUANTILE,
                "lo": inactivity.BASELINE_MIN_S,
                "hi": inactivity.BASELINE_MAX_S,
                "at": at,
                "since": at - timedelta(days=inactivity.BASELINE_DAYS),
                "min": inactivity.BASELINE_MIN_SAMPLES,
            },
        )
        learned = cur.rowcount
        await conn.execute(
            "DELETE FROM inactivity_gaps WHERE started < %s",
            (at - timedelta(days=2 * inactivity.BASELINE_DAYS),),
        )
        detail = {"hours_learned": learned}
        await _record(conn, "inactivity_baselines", watermark=at, detail=detail)
    return detail


class Scheduler:
    """Runs rollups, retention and baselines on their intervals until stopped.

    ``on_baselines`` is called after each baseline run, so that the detectors use them.
    """

    def __init__(
        self, db: Database, settings: Settings, metrics: HubMetrics, on_baselines: Any = None
    ) -> None:
        self._db = db
        self._settings = settings
        self._metrics = metrics
        self._on_baselines = on_baselines

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        loop = asyncio.get_running_loop()
        next_rollup = loop.time() + s.jobs_initial_delay_s
        next_retention = loop.time() + s.jobs_initial_delay_s
        next_baselines = loop.time() + s.jobs_initial_delay_s
        while not stop.is_set():
            now = loop.time()
            if now >= next_rollup:
                await self._guarded(
                    "rollups", lambda: run_rollups(self._db, lateness=timedelta(seconds=s.rollup_lateness_s))
                )
                next_rollup = now + s.rollup_interval_s
            if now >= next_retention:
                await self._guarded(
                    "retention",
                    lambda: run_retention(
                        self._db, s.retention(), rollups=timedelta(days=s.retention_rollups_days)
                    ),
                )
                next_retention = now + s.retention_interval_s
            if now >= next_baselines:
                await self._guarded("inactivity_baselines", lambda: run_inactivity_baselines(self._db))
                if self._on_baselines is not None:
                    with contextlib.suppress(psycopg.Error, TimeoutError):
                        await self._on_baselines()
                next_baselines = now + s.baseline_interval_s
            wake = min(next_rollup, next_retention, next_baselines)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.1, wake - loop.time()))

    async def _guarded(self, job: str, run: Any) -> None:
        try:
            result = await run()
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("job %s failed: %s", job, exc)
            self._metrics.job_runs.labels(job, "error").inc()
            await _record_failure(self._db, job, str(exc))
            return
        self._metrics.job_runs.labels(job, "skipped" if result is None else "ok").inc()
