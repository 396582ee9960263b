"""What every command shares: logging, settings, running until a signal, and one database wrapper.

Each command imports its packages lazily, so that ``ankang --help`` is quick and a command
pulls in only what it uses.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import typer

if TYPE_CHECKING:
    import psycopg

    from hub import Settings

T = TypeVar("T")

#: An error a command expects, the exit code it ends with, and a prefix for its message.
ErrorExit = tuple[type[BaseException], int, str]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the pool logs every failed reconnect; the hub reports the outage once itself
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` on stderr; the caller raises the returned exit."""
    typer.echo(message, err=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    """The ``ANKANG_*`` settings; invalid ones end the command with exit code 2."""
    from pydantic import ValidationError

    from hub.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}", 2) from None


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` with SIGINT/SIGTERM setting ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


class _Unreachable(Exception):
    pass


def with_database(
    action: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]],
    errors: Sequence[ErrorExit] = (),
    database_url: str | None = None,
) -> T:
    """Run ``action`` on one autocommit connection to the database and return its result.

    A database that cannot be reached ends the command with exit code 1; each error in
    ``errors`` (the first that matches) is printed and ends it with its own code.
    """
    import psycopg

    url = database_url or load_settings().database_url

    async def run() -> T:
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise _Unreachable(str(exc)) from exc
        async with conn:
            return await action(conn)

    try:
        return asyncio.run(run())
    except _Unreachable as exc:
        raise fail(f"cannot connect to the database: {exc}", 1) from None
    except tuple(kind for kind, _, _ in errors) as exc:
        code, prefix = next((c, p) for kind, c, p in errors if isinstance(exc, kind))
        raise fail(f"{prefix}{exc}", code) from None
