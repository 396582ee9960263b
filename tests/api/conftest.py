"""The API as users meet it: ``ankang api`` in a subprocess on a real, migrated database,
with two districts of facilities, a family care bed, and one account per role."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from alerts import apply_pending
from api.auth import create_account
from devices.registry import Registry, parse_facility_yaml
from lab.localservices import PostgresServer, free_port
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]

TENANTS = """
facilities:
  - id: fa
    name: 甲养老院
    kind: institution
    district: 东区
    rooms:
      - id: "101"
        beds:
          - {id: "101-1", nursing: true, resident: {id: RA1, name: 王一}}
          - {id: "101-2", nursing: false, resident: {id: RA2, name: 李二}}
      - {id: kitchen, kind: kitchen}
  - id: home-h
    name: 张家（家庭养老床位）
    kind: home
    district: 东区
    supervisor: fa
    rooms:
      - id: bedroom
        beds:
          - {id: "1", nursing: true, resident: {id: RH1, name: 张三}}
  - id: fb
    name: 乙养老院
    kind: institution
    district: 西区
    rooms:
      - id: "201"
        beds:
          - {id: "201-1", nursing: true, resident: {id: RB1, name: 赵四}}
devices:
  - {id: smoke-a, kind: smoke_detector, facility: fa, room: "101"}
  - {id: bed-a1, kind: bed_sensor, facility: fa, room: "101", bed: "101-1", resident: RA1}
  - {id: watch-a2, kind: wearable, facility: fa, resident: RA2, placement: wrist}
  - {id: smoke-h, kind: smoke_detector, facility: home-h, room: bedroom}
  - {id: bed-h, kind: bed_sensor, facility: home-h, room: bedroom, bed: "1", resident: RH1}
  - {id: smoke-b, kind: smoke_detector, facility: fb, room: "201"}
  - {id: bed-b1, kind: bed_sensor, facility: fb, room: "201", bed: "201-1", resident: RB1}
"""

PASSWORD = "correct horse battery"  # noqa: S105  (a test account's password)
ACCOUNTS: dict[str, dict[str, Any]] = {
    "admin": {"role": "admin"},
    "staff-a": {"role": "staff", "facilities": ("fa",)},
    "staff-b": {"role": "staff", "facilities": ("fb",)},
    "family-a1": {"role": "family", "residents": ("RA1",)},
    "family-h": {"role": "family", "residents": ("RH1",)},
    "reg-east": {"role": "regulator", "districts": ("东区",)},
    # locked out by the rate-limit test; no other test logs in with it
    "victim": {"role": "family", "residents": ("RA2",)},
}


async def seed(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Registry(conn).apply(parse_facility_yaml(TENANTS))
        for name, spec in ACCOUNTS.items():
            await create_account(
                conn,
                name,
                PASSWORD,
                spec["role"],
                display_name=name,
                facilities=spec.get("facilities", ()),
                residents=spec.get("residents", ()),
                districts=spec.get("districts", ()),
            )


@pytest.fixture(scope="module")
def api_db(pg_cluster: PostgresServer) -> Iterator[str]:
    """A migrated database with the tenants and accounts, shared by a module's tests."""
    name = f"api{os.getpid()}_{free_port()}"
    admin = pg_cluster.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE ankang_template')
    url = pg_cluster.url.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(seed(url))
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ApiProcess:
    """``ankang api`` in a subprocess."""

    database_url: str
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.port = self.port or free_port()
        fd, name = tempfile.mkstemp(prefix="ankang-api-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        env = {
            **os.environ,
            "ANKANG_DATABASE_URL": self.database_url,
            "ANKANG_API_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ankang.cli", "api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_until(self.healthy, timeout, "the API to answer /healthz")

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"ankang api exited with {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:  # noqa: S310
                return resp.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("ankang api did not stop on SIGTERM within 20 s") from None


@pytest.fixture(scope="module")
def api(api_db: str) -> Iterator[ApiProcess]:
    server = ApiProcess(api_db, {"ANKANG_LOGIN_FAILURES_PER_CLIENT": "1000"})
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def login(api: ApiProcess, username: str, password: str = PASSWORD) -> httpx.Client:
    """A client holding a bearer token for ``username``."""
    response = httpx.post(f"{api.url}/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture(scope="module")
def clients(api: ApiProcess) -> Iterator[dict[str, httpx.Client]]:
    made = {name: login(api, name) for name in ACCOUNTS if name != "victim"}
    yield made
    for client in made.values():
        client.close()


_keys = itertools.count()


def raise_alarm(
    url: str,
    kind: str,
    *,
    facility: str,
    room: str | None = None,
    resident: str | None = None,
    device: str,
    t: datetime | None = None,
    level: str = "alarm",
    window: tuple[datetime, datetime] | None = None,
) -> int:
    """A detection as the hub writes it, applied as the alert service does; the alarm's id."""
    t = t or datetime.now(UTC)
    subject = resident or device
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, resident_id,
                                    device_id, confidence, window_start, window_end, detail)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0.9, %s, %s, '{"hr_bpm": 131}')
            """,
            (
                f"test:{kind}:{next(_keys)}:{time.time_ns()}",
                kind,
                level,
                t,
                subject,
                facility,
                room,
                resident,
                device,
                window[0] if window else None,
                window[1] if window else None,
            ),
        )

    async def apply() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await apply_pending(conn)

    # in a thread of its own: Playwright's sync API keeps an event loop running on this one
    worker = threading.Thread(target=asyncio.run, args=(apply(),))
    worker.start()
    worker.join()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM alarms WHERE subject = %s AND type = %s ORDER BY id DESC LIMIT 1",
            (subject, "fire" if kind == "fire" else kind),
        ).fetchone()
    assert row is not None, f"no alarm for {kind} {subject}"
    return int(row[0])
