"""Accounts, passwords, sessions and what each account may see.

- Passwords are hashed with argon2id (``argon2-cffi``'s defaults: 64 MiB, 3 passes), off the
  event loop. An unknown username costs the same hash as a wrong password, so timing does
  not tell which usernames exist.
- Failed logins are counted per username and per client address in the database, so that
  several API processes share one limit; past it a login is refused with a retry time.
- A session is an opaque random token. Only its SHA-256 is stored, with an expiry and a
  CSRF value that pages must send back with every change.
- Scope is computed from the account's rows on every request (:func:`principal_for`), so a
  changed link or a disabled account takes effect at the next request.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, get_args

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg import AsyncConnection

from alerts.templates import LANGUAGES
from api.errors import AccountError, LoginFailed, LoginThrottled, WeakPassword

Role = Literal["admin", "staff", "family", "regulator"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
PASSWORD_MIN: Final = 10
PASSWORD_MAX: Final = 256
# Passwords that are refused outright: the demo's and the usual first guesses.
_DEFAULT_PASSWORDS: Final = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "admin",
        "admin123",
        "administrator",
        "changeme",
        "changeme123",
        "qwertyuiop",
        "ankang",
        "ankang123",
        "ankang-demo",
    }
)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that both paths cost one argon2 hash.
_DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and what they may see, resolved for this request."""

    account_id: int
    username: str
    display_name: str
    role: Role
    language: str
    facilities: frozenset[str]
    # family accounts: the residents they are linked to; None for every other role
    residents: frozenset[str] | None
    csrf: str
    demo: bool = False
    # family accounts: the family care beds (home facilities) of their residents, whose
    # resident-less alarms (a fire in that home) they see too
    homes: frozenset[str] = frozenset()

    @property
    def acts(self) -> bool:
        """May acknowledge and resolve alarms, and manage contacts and policies."""
        return self.role in ("admin", "staff")

    @property
    def sees_raw_data(self) -> bool:
        """Raw readings and waveforms: staff and admins; families for their own relative."""
        return self.role != "regulator"

    def sees_facility(self, facility_id: str | None) -> bool:
        return facility_id is not None and facility_id in self.facilities

    def sees_resident(self, facility_id: str | None, resident_id: str | None) -> bool:
        if self.residents is not None:
            return resident_id is not None and resident_id in self.residents
        return self.sees_facility(facility_id)

    def sees_alarm(self, facility_id: str | None, resident_id: str | None) -> bool:
        """Staff and regulators: their facilities' alarms. Families: their relative's, and
        those of their relative's own home without a resident (a fire there)."""
        if self.residents is not None and resident_id is None:
            return facility_id is not None and facility_id in self.homes
        return self.sees_resident(facility_id, resident_id)


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    expires_at: datetime


def check_password(username: str, password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise WeakPassword(f"a password has at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise WeakPassword(f"a password has at most {PASSWORD_MAX} characters")
    if password.lower() in _DEFAULT_PASSWORDS or password.lower() == username.lower():
        raise WeakPassword("that password is a default or the username; choose another")


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_account(
    conn: AsyncConnection[Any],
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    language: str = "zh",
    facilities: tuple[str, ...] = (),
    residents: tuple[str, ...] = (),
    districts: tuple[str, ...] = (),
    demo: bool = False,
) -> int:
    """Create an account and its links in one transaction; returns its id."""
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise AccountError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    if not demo:
        check_password(username, password)
    if role == "family" and not residents:
        raise AccountError("a family account is linked to at least one resident")
    if role == "regulator" and not districts:
        raise AccountError("a regulator account is linked to at least one district")
    if role == "staff" and not facilities:
        raise AccountError("a staff account is linked to at least one facility")
    digest = await asyncio.to_thread(_hasher.hash, password)
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO accounts (username, display_name, role, password_hash, language, demo)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (username, display_name, role, digest, language, demo),
            )
            row = await cur.fetchone()
            assert row is not None  # noqa: S101  (INSERT ... RETURNING)
            account_id = int(row[0])
            for fid in facilities:
                await cur.execute("INSERT INTO account_facilities VALUES (%s, %s)", (account_id, fid))
            for rid in residents:
                await cur.execute("INSERT INTO account_residents VALUES (%s, %s)", (account_id, rid))
            for district in districts:
                await cur.execute("INSERT INTO account_districts VALUES (%s, %s)", (account_id, district))
    except psycopg.errors.UniqueViolation as exc:
        raise AccountError(f"an account named {username!r} exists") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise AccountError(f"unknown facility or resident: {exc.diag.message_detail or exc}") from exc
    except psycopg.errors.CheckViolation as exc:
        raise AccountError(
            "a username is 3 to 64 letters, digits or _ . @ -; a display name at most 200 characters"
        ) from exc
    return account_id


async def set_password(conn: AsyncConnection[Any], username: str, password: str) -> None:
    check_password(username, password)
    digest = await asyncio.to_thread(_hasher.hash, password)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE accounts SET password_hash = %s, demo = false WHERE username = %s RETURNING id",
            (digest, username),
        )
        row = await cur.fetchone()
        if row is None:
            raise AccountError(f"no account named {username!r}")
        # a new password ends every session of the old one
        await conn.execute("DELETE FROM sessions WHERE account_id = %s", (row[0],))


async def demo_accounts_enabled(conn: AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute("SELECT username FROM accounts WHERE demo AND NOT disabled ORDER BY username")
    return [str(r[0]) for r in await cur.fetchall()]


async def _verify(stored: str, password: str) -> bool:
    def run() -> bool:
        try:
            return bool(_hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


async def login(
    conn: AsyncConnection[Any],
    username: str,
    password: str,
    client: str,
    *,
    ttl: timedelta,
    per_user: int,
    per_client: int,
    window: timedelta,
    allow_demo: bool,
    per_user_total: int | None = None,
) -> Session:
    """Check a password and open a session, or raise :class:`LoginFailed` /
    :class:`LoginThrottled`. The same error for an unknown user and a wrong password.

    Failures are counted per username from one client (``per_user``), per client
    (``per_client``) and per username from all clients together (``per_user_total``, default
    20 × ``per_user``). So a stranger guessing at a nurse's name does not lock the nurse out
    at the ward PC, while a spread-out guess still meets a limit. Attempts on one username
    are serialised (an advisory lock), so parallel guesses cannot all read the old count."""
    username = username[:64]
    client = client[:100]
    total = per_user_total if per_user_total is not None else 20 * per_user
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ankang.login'), hashtext(%s))", (username,)
        )
        cur = await conn.execute(
            """
            SELECT count(*) FILTER (WHERE username = %(u)s AND client = %(c)s),
                   count(*) FILTER (WHERE client = %(c)s),
                   count(*) FILTER (WHERE username = %(u)s)
            FROM login_failures
            WHERE at > now() - %(w)s AND (username = %(u)s OR client = %(c)s)
            """,
            {"u": username, "c": client, "w": window},
        )
        by_pair, by_client, by_user = (await cur.fetchone()) or (0, 0, 0)
        if int(by_pair) >= per_user or int(by_client) >= per_client or int(by_user) >= total:
            raise LoginThrottled(int(window.total_seconds()))
        cur = await conn.execute(
            "SELECT id, password_hash, disabled, demo FROM accounts WHERE username = %s", (username,)
        )
        row = await cur.fetchone()
        ok = await _verify(row[1] if row else _DUMMY_HASH, password)
        failed = row is None or not ok or bool(row[2]) or (bool(row[3]) and not allow_demo)
        if failed:
            await conn.execute("DELETE FROM login_failures WHERE at < now() - %s", (window,))
            await conn.execute(
                "INSERT INTO login_failures (username, client) VALUES (%s, %s)", (username, client)
            )
    if failed or row is None:
        raise LoginFailed("wrong username or password")
    if _hasher.check_needs_rehash(row[1]):
        new_hash = await asyncio.to_thread(_hasher.hash, password)
        await conn.execute("UPDATE accounts SET password_hash = %s WHERE id = %s", (new_hash, row[0]))
    async with conn.transaction():
        await conn.execute("DELETE FROM login_failures WHERE username = %s", (username,))
        await conn.execute("DELETE FROM sessions WHERE expires_at < now()")
        return await open_session(conn, int(row[0]), ttl=ttl)


async def open_session(conn: AsyncConnection[Any], account_id: int, *, ttl: timedelta) -> Session:
    """A new session for an account whose password was checked (by :func:`login`), or for a
    benchmark's many streams, which would otherwise spend minutes in argon2."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    cur = await conn.execute(
        "INSERT INTO sessions (token_sha256, account_id, csrf, expires_at)"
        " VALUES (%s, %s, %s, now() + %s)"
        " RETURNING expires_at",
        (_token_digest(token), account_id, csrf, ttl),
    )
    expiry = await cur.fetchone()
    assert expiry is not None  # noqa: S101  (INSERT ... RETURNING)
    return Session(token, csrf, expiry[0])


async def logout(conn: AsyncConnection[Any], token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_sha256 = %s", (_token_digest(token),))


_PRINCIPAL_FROM: Final = """
    SELECT a.id, a.username, a.display_name, a.role, a.language, s.csrf, a.demo,
        CASE a.role
          WHEN 'admin' THEN ARRAY(SELECT id FROM facilities)
          WHEN 'staff' THEN ARRAY(
              SELECT f.id FROM facilities f
              WHERE f.id IN (SELECT facility_id FROM account_facilities WHERE account_id = a.id)
                 OR f.supervisor_id IN (SELECT facility_id FROM account_facilities WHERE account_id = a.id))
          WHEN 'regulator' THEN ARRAY(
              SELECT f.id FROM facilities f
              WHERE f.district IN (SELECT district FROM account_districts WHERE account_id = a.id))
          ELSE ARRAY(
              SELECT DISTINCT r.facility_id FROM residents r
              JOIN account_residents ar ON ar.resident_id = r.id WHERE ar.account_id = a.id)
        END,
        ARRAY(SELECT resident_id FROM account_residents WHERE account_id = a.id),
        ARRAY(SELECT DISTINCT f.id FROM facilities f JOIN residents r ON r.facility_id = f.id
              JOIN account_residents ar ON ar.resident_id = r.id
              WHERE ar.account_id = a.id AND f.kind = 'home'),
        s.token_sha256
    FROM sessions s JOIN accounts a ON a.id = s.account_id
"""
_PRINCIPAL: Final = _PRINCIPAL_FROM + "WHERE s.token_sha256 = %s AND s.expires_at > now() AND NOT a.disabled"
_PRINCIPALS: Final = (
    _PRINCIPAL_FROM + "WHERE s.token_sha256 = ANY(%s) AND s.expires_at > now() AND NOT a.disabled"
)


async def principal_for(conn: AsyncConnection[Any], token: str, *, allow_demo: bool) -> Principal | None:
    """The caller behind a session token, or None for an unknown, expired or disabled one."""
    if not token or len(token) > 200:
        return None
    cur = await conn.execute(_PRINCIPAL, (_token_digest(token),))
    row = await cur.fetchone()
    return None if row is None else _principal_of(row, allow_demo=allow_demo)


async def principals_for(
    conn: AsyncConnection[Any], tokens: Iterable[str], *, allow_demo: bool
) -> dict[str, Principal]:
    """:func:`principal_for` for many tokens in one query (the live streams' re-checks): the
    callers of those still valid, by token; the others are missing."""
    by_digest = {_token_digest(t): t for t in tokens if t and len(t) <= 200}
    if not by_digest:
        return {}
    cur = await conn.execute(_PRINCIPALS, (list(by_digest),))
    found: dict[str, Principal] = {}
    for row in await cur.fetchall():
        principal = _principal_of(row, allow_demo=allow_demo)
        if principal is not None:
            found[by_digest[bytes(row[10])]] = principal
    return found


def _principal_of(row: Sequence[Any], *, allow_demo: bool) -> Principal | None:
    if row[6] and not allow_demo:
        return None
    role: Role = row[3]
    return Principal(
        account_id=int(row[0]),
        username=str(row[1]),
        display_name=str(row[2]),
        role=role,
        language=str(row[4]),
        csrf=str(row[5]),
        demo=bool(row[6]),
        facilities=frozenset(row[7] or ()),
        residents=frozenset(row[8] or ()) if role == "family" else None,
        homes=frozenset(row[9] or ()) if role == "family" else frozenset(),
    )
