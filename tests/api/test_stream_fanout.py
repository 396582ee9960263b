"""Many live streams of mixed scope at once, through the fan-out benchmark's own machinery on a
small scale (``ankang bench fanout``): every stream gets each alarm in its scope exactly once,
and none gets one outside it. Nothing here is timed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from lab.alertbench.fanout import FanoutBench, FanoutConfig, stream_plan, tenants, viewers
from lab.localservices import PostgresServer, free_port


@pytest.fixture
def fresh_db(pg_cluster: PostgresServer) -> Iterator[str]:
    name = f"fanout{os.getpid()}_{free_port()}"
    admin = pg_cluster.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE ankang_template')
    yield pg_cluster.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _config(url: str | None = None) -> FanoutConfig:
    return FanoutConfig(
        streams=50,
        alarms=8,
        interval_s=0.2,
        facilities=2,
        residents_per_facility=5,
        centre_accounts=2,
        ward_accounts_per_facility=1,
        mix={"centre": 0.3, "ward": 0.3, "regulator": 0.1, "family": 0.3},
        open_concurrency=10,
        settle_s=30,
        database_url=url,
    )


def test_the_plan_mixes_scopes_so_that_no_alarm_reaches_every_stream() -> None:
    cfg = _config()
    _yaml, residents = tenants(cfg)
    plan = stream_plan(cfg, viewers(cfg, residents))
    assert len(plan) == 50
    assert {v.kind for v in plan} == {"centre", "ward", "regulator", "family"}
    # each alarm's resident, facility and district leave some streams out
    for fid, rid, _dev in residents:
        reached = sum(v.expects(fid, rid) for v in plan)
        assert 0 < reached < len(plan)


def test_fifty_streams_of_mixed_scope_each_get_exactly_their_alarms(fresh_db: str) -> None:
    with FanoutBench(_config(fresh_db)) as bench:
        summary = bench.run()
    assert summary["streams_ready"] == 50, summary["stream_errors"]
    assert summary["alarms"] == 8
    assert summary["expected"] > 0
    assert summary["delivered"] == summary["expected"], summary["per_alarm"]
    assert summary["wrong_scope"] == 0, summary["wrong_scope_examples"]
    assert summary["duplicates"] == 0
    assert summary["streams_per_alarm"]["max"] < 50  # some streams were out of each alarm's scope
    assert summary["api"]["tracebacks"] == 0
