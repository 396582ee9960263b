"""The demo's accounts: one per role, with published passwords, marked ``demo`` so that a
production ``ankang api`` refuses to start while they are enabled (docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection

from ankang.demo import Login
from api.auth import create_account
from api.errors import AccountError
from api.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    password: str
    role: str
    page: str  # where this role lands
    facilities: tuple[str, ...] = ()
    residents: tuple[str, ...] = ()
    districts: tuple[str, ...] = ()


DEMO_LOGINS: Final = (
    DemoLogin("admin", "ankang-admin", "admin", "/console"),
    DemoLogin("nurse", "ankang-nurse", "staff", "/console", facilities=("qd-shinan-01",)),
    DemoLogin("family", "ankang-family", "family", "/family", residents=("R001",)),  # 王秀英
    DemoLogin("family-zhang", "ankang-family", "family", "/family", residents=("R101",)),  # a family care bed
    DemoLogin("regulator", "ankang-regulator", "regulator", "/regulator", districts=("市南区",)),
)


async def demo_logins(settings: ApiSettings) -> list[Login]:
    """The demo's accounts hook: create what is missing, and say how to log in."""
    async with await AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        made = await ensure_demo_accounts(conn)
    return [Login(f"{d.role} → {d.page}", d.username, d.password) for d in made]


async def ensure_demo_accounts(conn: AsyncConnection[Any]) -> tuple[DemoLogin, ...]:
    """Create the demo accounts that are missing (the demo registry must be applied first)."""
    cur = await conn.execute("SELECT username FROM accounts")
    present = {str(r[0]) for r in await cur.fetchall()}
    for login in DEMO_LOGINS:
        if login.username in present:
            continue
        try:
            await create_account(
                conn,
                login.username,
                login.password,
                login.role,
                display_name=login.username,
                demo=True,
                facilities=login.facilities,
                residents=login.residents,
                districts=login.districts,
            )
        except AccountError:
            # created meanwhile by a second demo on the same database
            continue
    return DEMO_LOGINS
