"""Fixtures that start real services: Mosquitto and PostgreSQL 15 with TimescaleDB.

Nothing here mocks the broker or the database. A service that cannot be started fails
the test that needs it; it is never skipped.

- ``pg_cluster`` (session): one cluster; ``database`` gives each test a fresh database
  cloned from a migrated template.
- ``own_pg`` (function): a cluster of the test's own, for tests that stop it mid-stream.
- ``broker`` (function): a Mosquitto of the test's own, so that no persistent session
  leaks between tests.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub import migrate
from lab.localservices import MosquittoServer, PostgresServer, free_port
from tests.support import HubProcess

_TMP_ROOT = Path(os.environ.get("ANKANG_TEST_TMP", tempfile.gettempdir()))
_counter = itertools.count()


def _tmpdir(prefix: str) -> Path:
    _TMP_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_TMP_ROOT))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresServer]:
    server = PostgresServer(_tmpdir("ankang-pg-"), database="ankang_template")
    server.start()
    asyncio.run(migrate(server.url))
    admin = server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        # TimescaleDB's scheduler connects to every database with the extension, and a
        # template with a session open cannot be cloned.
        conn.execute("ALTER DATABASE ankang_template WITH ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'ankang_template'"
        )
    yield server
    server.destroy()


@pytest.fixture
def database(pg_cluster: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database URL for one test."""
    name = f"t{os.getpid()}_{next(_counter)}"
    admin = pg_cluster.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE ankang_template')
    yield pg_cluster.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    server = PostgresServer(_tmpdir("ankang-pg-own-"))
    server.start()
    asyncio.run(migrate(server.url))
    yield server
    server.destroy()


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    server = MosquittoServer(_tmpdir("ankang-mqtt-"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hub_factory(broker: MosquittoServer) -> Iterator[object]:
    """Start ``ankang hub`` processes against the test's broker and a given database."""
    started: list[HubProcess] = []

    def start(database_url: str, *, partition: str | None = None, **env: str) -> HubProcess:
        proc = HubProcess(
            mqtt_url=broker.url,
            database_url=database_url,
            metrics_port=free_port(),
            partition=partition,
            extra_env=env,
        )
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "ankang.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ankang {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc
