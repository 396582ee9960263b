"""Rollups in the facility's time zone, and retention that drops only expired chunks."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import psycopg

from hub.jobs import run_retention, run_rollups
from hub.storage import Database
from tests.support import register, rows, scalar


def _readings(url: str, device: str, values: list[tuple[datetime, float]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (device_id, ts, metric, value) VALUES (%s, %s, 'temp_c', %s)",
            [(device, ts, v) for ts, v in values],
        )


async def _rollups(url: str, now: datetime) -> dict[str, int] | None:
    async with Database(url) as db:
        return await run_rollups(db, lateness=timedelta(hours=2), now=now)


def test_day_buckets_follow_shanghai_midnight(database):
    register(database, [("s1", "smoke_detector")], facility="qd", tz="Asia/Shanghai")
    register(database, [("u1", "smoke_detector")], facility="utc-site", tz="UTC")
    # 23:30 and 00:30 in Qingdao, on either side of local midnight; both are 1 March in UTC
    before = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    after = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    _readings(database, "s1", [(before, 20.0), (after, 30.0)])
    _readings(database, "u1", [(before, 20.0), (after, 30.0)])
    asyncio.run(_rollups(database, now=datetime(2026, 3, 2, 0, 0, tzinfo=UTC)))

    qd = rows(
        database, "SELECT day, n, vmin, vmax, bucket FROM readings_daily WHERE device_id = 's1' ORDER BY day"
    )
    assert [(r[0], r[1], r[2], r[3]) for r in qd] == [
        (date(2026, 3, 1), 1, 20.0, 20.0),
        (date(2026, 3, 2), 1, 30.0, 30.0),
    ]
    # the bucket of 2 March starts at 00:00 Asia/Shanghai, which is 16:00 UTC on 1 March
    assert qd[1][4] == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    utc = rows(database, "SELECT day, n, vsum FROM readings_daily WHERE device_id = 'u1'")
    assert utc == [(date(2026, 3, 1), 2, 50.0)]
    hourly = rows(database, "SELECT bucket, n FROM readings_hourly WHERE device_id = 's1' ORDER BY bucket")
    assert hourly == [
        (datetime(2026, 3, 1, 15, 0, tzinfo=UTC), 1),
        (datetime(2026, 3, 1, 16, 0, tzinfo=UTC), 1),
    ]


def test_rollups_are_idempotent_and_take_late_data(database):
    register(database, [("s1", "smoke_detector")], facility="qd", tz="Asia/Shanghai")
    t = datetime(2026, 3, 1, 4, 10, tzinfo=UTC)
    _readings(database, "s1", [(t, 20.0), (t + timedelta(minutes=5), 22.0)])
    asyncio.run(_rollups(database, now=datetime(2026, 3, 1, 5, 0, tzinfo=UTC)))
    asyncio.run(_rollups(database, now=datetime(2026, 3, 1, 5, 5, tzinfo=UTC)))
    assert rows(database, "SELECT n, vsum FROM readings_hourly") == [(2, 42.0)]
    # a late reading for the same hour arrives after the hour was rolled up
    _readings(database, "s1", [(t + timedelta(minutes=20), 24.0)])
    asyncio.run(_rollups(database, now=datetime(2026, 3, 1, 5, 10, tzinfo=UTC)))
    assert rows(database, "SELECT n, vmin, vmax, vsum FROM readings_hourly") == [(3, 20.0, 24.0, 66.0)]
    assert rows(database, "SELECT n, vsum FROM readings_daily") == [(3, 66.0)]
    assert scalar(database, "SELECT last_ok IS NOT NULL FROM jobs WHERE name = 'rollups'") is True


def _chunks(url: str, table: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM show_chunks(%s::regclass)", (table,)))


def test_retention_drops_only_expired_chunks(database):
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    cutoff = now - timedelta(days=7)  # 3 March 12:30; waveform chunks are one hour long
    times = {
        "old": datetime(2026, 3, 1, 0, 10, tzinfo=UTC),  # its chunk lies wholly before the cut-off
        "straddling": cutoff - timedelta(minutes=20),  # in the chunk 12:00-13:00 that holds the cut-off
        "fresh": cutoff + timedelta(minutes=40),
        "recent": now - timedelta(days=1),
    }
    with psycopg.connect(database, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc)"
            " VALUES ('w1', %s, %s, 50, 1, '\\x00')",
            [(ts, i) for i, ts in enumerate(times.values())],
        )
        cur.execute(
            "INSERT INTO events (device_id, ts, seq, event) VALUES ('s1', %s, 1, 'test')",
            (now - timedelta(days=150),),
        )
    assert _chunks(database, "waveforms") == 4

    async def run() -> dict[str, int] | None:
        async with Database(database) as db:
            return await run_retention(
                db, {"waveforms": timedelta(days=7), "events": timedelta(days=183)}, now=now
            )

    removed = asyncio.run(run())
    assert removed == {"waveforms": 1, "events": 0}
    assert _chunks(database, "waveforms") == 3
    kept = {r[0] for r in rows(database, "SELECT seq FROM waveforms")}
    assert kept == {1, 2, 3}, "the straddling chunk keeps its rows until all of them have expired"
    assert scalar(database, "SELECT count(*) FROM events") == 1, "events are kept for six months"
    detail = scalar(database, "SELECT detail FROM jobs WHERE name = 'retention'")
    assert detail == {"waveforms": 1, "events": 0}


def test_retention_settings_refuse_less_than_six_months_for_events():
    import pytest
    from pydantic import ValidationError

    from hub.settings import Settings

    with pytest.raises(ValidationError, match="retention_events_days"):
        Settings(retention_events_days=30)
