"""``ankang accounts``: accounts for the API and the pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ankang.cli.common import with_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import psycopg

T = TypeVar("T")

app = typer.Typer(help="Accounts for the API and pages.", no_args_is_help=True)


def _on_accounts(action: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]) -> T:
    """``action`` on the database: account errors end with exit code 2, an outage with 1."""
    import psycopg

    from api.errors import AccountError

    return with_database(
        action, errors=[(AccountError, 2, ""), (psycopg.OperationalError, 1, "cannot reach the database: ")]
    )


def _new_password(password: str | None) -> str:
    if password is not None:
        return password
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@app.command("add")
def accounts_add(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    role: Annotated[str, typer.Option(help="admin, staff, family or regulator")],
    facility: Annotated[list[str] | None, typer.Option(help="staff: a facility (repeatable)")] = None,
    resident: Annotated[list[str] | None, typer.Option(help="family: a resident (repeatable)")] = None,
    district: Annotated[list[str] | None, typer.Option(help="regulator: a district (repeatable)")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    language: Annotated[str, typer.Option(help="zh or en")] = "zh",
    password: Annotated[
        str | None, typer.Option(help="asked for when omitted; prefer the prompt to a shell history")
    ] = None,
) -> None:
    """Create an account. Passwords have at least 10 characters and are not defaults."""
    from api.auth import create_account

    secret = _new_password(password)
    account_id = _on_accounts(
        lambda conn: create_account(
            conn,
            username,
            secret,
            role,
            display_name=name,
            language=language,
            facilities=tuple(facility or ()),
            residents=tuple(resident or ()),
            districts=tuple(district or ()),
        )
    )
    typer.echo(f"account {username} ({role}) created, id {account_id}")


@app.command("password")
def accounts_password(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    password: Annotated[str | None, typer.Option(help="asked for when omitted")] = None,
) -> None:
    """Set a new password; every session of the account ends."""
    from api.auth import set_password

    secret = _new_password(password)
    _on_accounts(lambda conn: set_password(conn, username, secret))
    typer.echo(f"password of {username} changed")


@app.command("list")
def accounts_list() -> None:
    async def rows(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[tuple[object, ...]]:
        cur = await conn.execute(
            "SELECT username, role, display_name, demo, disabled FROM accounts ORDER BY username"
        )
        return list(await cur.fetchall())

    for username, role, display, demo, disabled in _on_accounts(rows):
        flags = " ".join(f for f, on in (("demo", demo), ("disabled", disabled)) if on)
        typer.echo(f"{username:<20} {role:<10} {display} {flags}".rstrip())
