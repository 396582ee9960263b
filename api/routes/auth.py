"""Logging in and out: ``POST /api/v1/auth/token`` (OAuth2 password form) and ``GET /me``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api import auth
from api.deps import COOKIE, Caller, Conn, CrossSiteRefused, session_token, settings
from api.errors import LoginFailed, LoginThrottled

router = APIRouter(prefix="/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_at: datetime
    csrf_token: str


class Me(BaseModel):
    username: str
    display_name: str
    role: str
    language: str
    facilities: list[str]
    residents: list[str] | None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/token",
    dependencies=[CrossSiteRefused],
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Too many failures"}},
)
async def token(
    request: Request, response: Response, conn: Conn, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """Exchange a username and password for a bearer token (also set as the pages' cookie)."""
    cfg = settings(request)
    try:
        session = await login_with(request, conn, form.username, form.password)
    except LoginThrottled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    except LoginFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    set_session_cookie(response, session, secure=cfg.secure_cookies)
    return Token(access_token=session.token, expires_at=session.expires_at, csrf_token=session.csrf)


async def login_with(request: Request, conn: Conn, username: str, password: str) -> auth.Session:
    """Log in with the app's limits and session length (the token route and the login page)."""
    cfg = settings(request)
    return await auth.login(
        conn,
        username,
        password,
        client_of(request),
        ttl=timedelta(seconds=cfg.session_ttl_s),
        per_user=cfg.login_failures_per_user,
        per_client=cfg.login_failures_per_client,
        window=timedelta(seconds=cfg.login_window_s),
        allow_demo=cfg.demo,
        per_user_total=cfg.login_failures_per_username,
    )


def set_session_cookie(response: Response, session: auth.Session, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, session.token, expires=session.expires_at, httponly=True, samesite="strict", secure=secure
    )


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT, dependencies=[CrossSiteRefused])
async def logout(request: Request, response: Response, conn: Conn, caller: Caller) -> None:
    """End this session (the bearer token, or the pages' cookie)."""
    await auth.logout(conn, session_token(request) or "")
    response.delete_cookie(COOKIE)


@router.get("/me")
async def me(caller: Caller) -> Me:
    return Me(
        username=caller.username,
        display_name=caller.display_name,
        role=caller.role,
        language=caller.language,
        facilities=sorted(caller.facilities),
        residents=sorted(caller.residents) if caller.residents is not None else None,
    )
