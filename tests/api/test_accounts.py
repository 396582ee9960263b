"""Accounts: password rules, links per role, and demo accounts refused outside the demo."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from api.auth import create_account
from api.errors import AccountError, WeakPassword
from tests.api.conftest import REPO, ApiProcess, seed


def _create(url: str, username: str, password: str, role: str, **links: tuple[str, ...]) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await create_account(conn, username, password, role, **links)  # type: ignore[arg-type]

    return asyncio.run(run())


@pytest.fixture
def tenants(database: str) -> str:
    asyncio.run(seed(database))
    return database


@pytest.mark.parametrize(
    ("username", "password"),
    [("nurse-li", "short"), ("nurse-li", "password123"), ("nurse-li", "Nurse-Li"), ("nurse-li", "x" * 300)],
)
def test_weak_passwords_are_refused(tenants: str, username: str, password: str) -> None:
    with pytest.raises(WeakPassword):
        _create(tenants, username, password, "staff", facilities=("fa",))
    with psycopg.connect(tenants) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE username = %s", (username,)).fetchone() == (
            0,
        )


def test_each_role_needs_its_links_and_they_must_exist(tenants: str) -> None:
    good = "a long enough passphrase"
    with pytest.raises(AccountError, match="resident"):
        _create(tenants, "fam-x", good, "family")
    with pytest.raises(AccountError, match="district"):
        _create(tenants, "reg-x", good, "regulator")
    with pytest.raises(AccountError, match="facility"):
        _create(tenants, "staff-x", good, "staff")
    with pytest.raises(AccountError, match="unknown facility or resident"):
        _create(tenants, "staff-y", good, "staff", facilities=("nowhere",))
    with pytest.raises(AccountError, match="exists"):
        _create(tenants, "staff-a", good, "staff", facilities=("fa",))
    with pytest.raises(AccountError, match="username"):
        _create(tenants, "bad name!", good, "admin")


def _cli(database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ankang.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
        env={**os.environ, "ANKANG_DATABASE_URL": database, **env},
    )


def test_demo_accounts_stop_a_production_api_until_their_passwords_change(tenants: str) -> None:
    _create(tenants, "demo-admin", "demo", "admin", demo=True)  # type: ignore[arg-type]
    refused = _cli(tenants, "api", "--no-migrate", ANKANG_API_PORT="0")
    assert refused.returncode == 2
    assert "demo-admin" in refused.stderr and "published passwords" in refused.stderr

    # the demo itself accepts them
    demo = ApiProcess(tenants, {"ANKANG_DEMO": "true"})
    demo.start()
    try:
        token = httpx.post(
            f"{demo.url}/api/v1/auth/token", data={"username": "demo-admin", "password": "demo"}
        )
        assert token.status_code == 200
    finally:
        assert demo.stop() == 0

    changed = _cli(tenants, "accounts", "password", "demo-admin", "--password", "a fresh long passphrase")
    assert changed.returncode == 0, changed.stderr
    listed = _cli(tenants, "accounts", "list").stdout
    assert "demo-admin" in listed and "demo" not in listed.split("demo-admin", 1)[1].splitlines()[0]
    production = ApiProcess(tenants, {})
    production.start()
    try:
        old = httpx.post(
            f"{production.url}/api/v1/auth/token", data={"username": "demo-admin", "password": "demo"}
        )
        new = httpx.post(
            f"{production.url}/api/v1/auth/token",
            data={"username": "demo-admin", "password": "a fresh long passphrase"},
        )
        assert old.status_code == 401
        assert new.status_code == 200
    finally:
        assert production.stop() == 0


def test_accounts_cli_creates_a_scoped_account(tenants: str) -> None:
    made = _cli(
        tenants,
        "accounts",
        "add",
        "nurse-wang",
        "--role",
        "staff",
        "--facility",
        "fb",
        "--password",
        "night shift passphrase",
        "--name",
        "王护士",
    )
    assert made.returncode == 0, made.stderr
    weak = _cli(
        tenants, "accounts", "add", "nurse-zhao", "--role", "staff", "--facility", "fb", "--password", "123"
    )
    assert weak.returncode == 2 and "at least 10" in weak.stderr
    with psycopg.connect(tenants) as conn:
        links = conn.execute(
            "SELECT f.facility_id FROM account_facilities f JOIN accounts a ON a.id = f.account_id"
            " WHERE a.username = 'nurse-wang'"
        ).fetchall()
    assert links == [("fb",)]
