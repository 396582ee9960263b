"""FastAPI dependencies: the database, the caller, and what the caller may do.

Every route takes the caller from :func:`principal` (a bearer token, or the session cookie
of the pages) and its scope from there; nothing trusts an id from the request until a
scoped query has found it. Another tenant's id is answered like an unknown one (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.auth import Principal, principal_for
from api.settings import ApiSettings
from api.stream import AlarmFeed

COOKIE: Final = "ankang_session"
CSRF_HEADER: Final = "X-CSRF-Token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")


def settings(request: Request) -> ApiSettings:
    value: ApiSettings = request.app.state.settings
    return value


def feed(request: Request) -> AlarmFeed:
    value: AlarmFeed = request.app.state.feed
    return value


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    try:
        async with pool.connection(timeout=10.0) as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable") from exc


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller. A cookie-authenticated change must carry the session's CSRF header.

    It borrows a pooled connection only for the lookup, so that a long response (the live
    stream) holds no connection while it runs."""
    cfg = settings(request)
    cookie = request.cookies.get(COOKIE)
    token = credentials.credentials if credentials is not None else cookie
    if token is None:
        raise _unauthenticated("log in first: POST /api/v1/auth/token")
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    try:
        async with pool.connection(timeout=10.0) as conn:
            found = await principal_for(conn, token, allow_demo=cfg.demo)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable") from exc
    if found is None:
        raise _unauthenticated("the session is unknown or expired; log in again")
    if (
        credentials is None
        and request.method not in _SAFE_METHODS
        and request.headers.get(CSRF_HEADER) != found.csrf
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a change from a page needs the {CSRF_HEADER} header")
    return found


Caller = Annotated[Principal, Depends(principal)]


async def actor(caller: Caller) -> Principal:
    """Care staff and admins: they acknowledge, resolve and configure."""
    if not caller.acts:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {caller.role} account cannot make changes")
    return caller


Actor = Annotated[Principal, Depends(actor)]


async def raw_reader(caller: Caller) -> Principal:
    if not caller.sees_raw_data:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "raw readings are not available to regulators")
    return caller


RawReader = Annotated[Principal, Depends(raw_reader)]


async def not_family(caller: Caller) -> Principal:
    if caller.role == "family":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not available to family accounts")
    return caller


Operator = Annotated[Principal, Depends(not_family)]


def not_found(what: str, ident: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {ident}")
