"""FastAPI dependencies: the database, the caller, and what the caller may do.

Every route takes the caller from :func:`principal` (a bearer token, or the session cookie
of the pages) and its scope from there; nothing trusts an id from the request until a
scoped query has found it. Another tenant's id is answered like an unknown one (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from api.auth import Principal, principal_for
from api.settings import ApiSettings
from api.stream import AlarmFeed
from hub.storage import Database, StorageUnavailable

COOKIE: Final = "ankang_session"
CSRF_HEADER: Final = "X-CSRF-Token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# What a 503 for a database away suggests as the wait before trying again.
RETRY_AFTER_S: Final = 5

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")


def settings(request: Request) -> ApiSettings:
    value: ApiSettings = request.app.state.settings
    return value


def feed(request: Request) -> AlarmFeed:
    value: AlarmFeed = request.app.state.feed
    return value


def database(request: Request) -> Database:
    value: Database = request.app.state.db
    return value


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    try:
        async with database(request).connection() as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable") from exc


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def session_token(request: Request) -> str | None:
    """The caller's session token: a bearer header, or the pages' cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


async def session_holder(request: Request, token: str) -> Principal | None:
    """Who holds ``token`` now, on a connection borrowed only for the lookup, so that a long
    response (the live stream) holds no connection while it runs. Raises
    ``StorageUnavailable`` if the database cannot be asked (the live stream waits that out)."""
    try:
        async with database(request).connection() as conn:
            return await principal_for(conn, token, allow_demo=settings(request).demo)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # a pool timeout is one too
        raise StorageUnavailable(str(exc).strip() or type(exc).__name__) from exc
    except TimeoutError as exc:
        raise StorageUnavailable(f"no database connection: {exc}") from exc


async def lookup(request: Request, token: str) -> Principal | None:
    """:func:`session_holder` for a request: a database away is a 503, answered as JSON."""
    try:
        return await session_holder(request, token)
    except StorageUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the database is unavailable; try again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller. A cookie-authenticated change must carry the session's CSRF header."""
    token = credentials.credentials if credentials is not None else request.cookies.get(COOKIE)
    if token is None:
        raise _unauthenticated("log in first: POST /api/v1/auth/token")
    found = await lookup(request, token)
    if found is None:
        raise _unauthenticated("the session is unknown or expired; log in again")
    cookie_change = credentials is None and request.method not in _SAFE_METHODS
    if cookie_change and request.headers.get(CSRF_HEADER) != found.csrf:
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


def refuse_cross_site(request: Request) -> None:
    """Logging in and out from another site's page (login CSRF) is refused. Browsers say
    where a request comes from; clients that are not browsers send neither header."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    foreign_origin = origin is not None and origin != "null" and urlsplit(origin).netloc != request.url.netloc
    if site == "cross-site" or foreign_origin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a login or logout from another site is refused")


CrossSiteRefused = Depends(refuse_cross_site)


def not_found(what: str, ident: object) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {ident}")
