"""The same migrations, ingest and jobs on PostgreSQL without TimescaleDB (what an embedded server offers)."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from hub import migrate
from hub.jobs import run_retention, run_rollups
from hub.storage import Database
from lab.localservices import PostgresServer
from tests.support import Publisher, now_ms, register, rows, scalar, telemetry, wait_until, waveform


@pytest.fixture
def plain_pg():
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="ankang-plainpg-")), timescaledb=False)
    server.start()
    asyncio.run(migrate(server.url))
    yield server
    server.destroy()


def test_ingest_and_jobs_without_timescaledb(plain_pg, broker, hub_factory):
    url = plain_pg.url
    assert scalar(url, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    register(url, [("w1", "wearable"), ("s1", "smoke_detector")])
    hub_factory(url)
    pub = Publisher(broker.url)
    t = now_ms() - 60_000
    for seq in range(1, 21):
        pub.publish("ankang/v1/w1/telemetry", waveform(seq, t + seq * 1000))
        pub.publish("ankang/v1/s1/telemetry", telemetry(seq, t + seq * 1000, temp_c=21.0 + seq))
    pub.publish("ankang/v1/s1/telemetry", b"garbage")
    pub.wait_all()
    wait_until(lambda: scalar(url, "SELECT count(*) FROM messages") == 40, 30, "40 messages")
    wait_until(lambda: scalar(url, "SELECT count(*) FROM quarantine") == 1, 10, "the garbage quarantined")
    assert scalar(url, "SELECT count(*) FROM waveforms") == 20
    pub.close()

    old = datetime.now(UTC) - timedelta(days=30)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc)"
            " VALUES ('w1', %s, 999, 50, 1, '\\x00')",
            (old,),
        )

    async def jobs() -> tuple[dict[str, int] | None, dict[str, int] | None]:
        async with Database(url) as db:
            rolled = await run_rollups(db, lateness=timedelta(hours=2))
            removed = await run_retention(db, {"waveforms": timedelta(days=7)})
            return rolled, removed

    rolled, removed = asyncio.run(jobs())
    assert removed == {"waveforms": 1}, "plain PostgreSQL deletes expired rows"
    assert scalar(url, "SELECT count(*) FROM waveforms") == 20
    assert rolled is not None
    assert rows(url, "SELECT sum(n) FROM readings_hourly WHERE device_id = 's1'") == [(20,)]
