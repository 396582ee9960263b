"""Server-rendered pages: login, the care console, an alarm's evidence, the family view
and the regulator dashboard. No build step: Jinja2 templates, one stylesheet and a little
plain JavaScript for the live parts. Every page reads through the same scoped queries as
the JSON API, with the session cookie; changes go through the JSON API with the CSRF header.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from alerts import reports
from api import auth
from api.deps import COOKIE, Conn, CrossSiteRefused, settings
from api.errors import LoginFailed, LoginThrottled
from api.i18n import alarm_names, language_of, texts
from api.routes.alarms import get_alarm
from api.routes.auth import login_with, set_session_cookie
from api.routes.facilities import get_facility
from api.routes.residents import get_resident

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")


def _local(iso: str | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An ISO timestamp as the facility's local wall-clock time."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime(fmt)


templates.env.filters["local"] = _local
router = APIRouter(include_in_schema=False)

HOME = {"admin": "/console", "staff": "/console", "family": "/family", "regulator": "/regulator"}


async def _caller(request: Request, conn: Conn) -> auth.Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await auth.principal_for(conn, token, allow_demo=settings(request).demo)


async def _gate(
    request: Request, conn: Conn, admits: Callable[[auth.Principal], bool]
) -> auth.Principal | Response:
    """The page's caller, or where to send them instead: the login, or their own page."""
    caller = await _caller(request, conn)
    if caller is None:
        return _to_login(request)
    if not admits(caller):
        return RedirectResponse(HOME[caller.role], status_code=303)
    return caller


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _render(
    request: Request, name: str, caller: auth.Principal | None, lang: str | None, **ctx: Any
) -> Response:
    language = language_of(lang, caller.language if caller else None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "t": texts(language),
            "names": alarm_names(language),
            "lang": language,
            "caller": caller,
            "other_lang": "en" if language == "zh" else "zh",
            **ctx,
        },
    )


Lang = Annotated[str | None, Query(pattern="^(zh|en)$")]


@router.get("/")
async def index(request: Request, conn: Conn) -> Response:
    caller = await _caller(request, conn)
    if caller is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME[caller.role], status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, lang: Lang = None, next: str = "") -> Response:
    return _render(request, "login.html", None, lang, next=next, error=None)


def _safe_next(target: str) -> str | None:
    # Only paths on this site: no scheme, no host, no protocol-relative "//evil".
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@router.post("/login", response_class=HTMLResponse, dependencies=[CrossSiteRefused])
async def login_submit(
    request: Request,
    conn: Conn,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=500)] = "",
    lang: Annotated[str | None, Form(pattern="^(zh|en)$")] = None,
) -> Response:
    cfg = settings(request)
    try:
        session = await login_with(request, conn, username, password)
    except (LoginFailed, LoginThrottled) as exc:
        key = "login_throttled" if isinstance(exc, LoginThrottled) else "login_failed"
        response = _render(
            request, "login.html", None, lang, next=next, error=texts(language_of(lang, None))[key]
        )
        response.status_code = 429 if isinstance(exc, LoginThrottled) else 401
        return response
    caller = await auth.principal_for(conn, session.token, allow_demo=cfg.demo)
    assert caller is not None  # noqa: S101  (the session was just made)
    redirect = RedirectResponse(_safe_next(next) or HOME[caller.role], status_code=303)
    set_session_cookie(redirect, session, secure=cfg.secure_cookies)
    return redirect


@router.post("/logout", dependencies=[CrossSiteRefused])
async def logout(request: Request, conn: Conn) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await auth.logout(conn, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/console", response_class=HTMLResponse)
async def console(request: Request, conn: Conn, lang: Lang = None) -> Response:
    caller = await _gate(request, conn, lambda c: c.acts)
    if isinstance(caller, Response):
        return caller
    facilities = []
    for facility_id in sorted(caller.facilities):
        try:
            facilities.append(await get_facility(facility_id, conn, caller))
        except HTTPException:
            continue
    return _render(request, "console.html", caller, lang, facilities=facilities)


@router.get("/console/alarms/{alarm_id}", response_class=HTMLResponse)
async def alarm_page(request: Request, conn: Conn, alarm_id: int, lang: Lang = None) -> Response:
    caller = await _gate(request, conn, lambda c: c.sees_raw_data)
    if isinstance(caller, Response):
        return caller
    try:
        alarm = await get_alarm(alarm_id, conn, caller)
    except HTTPException:
        return _render(request, "missing.html", caller, lang)
    return _render(request, "alarm.html", caller, lang, alarm=alarm)


@router.get("/family", response_class=HTMLResponse)
async def family(request: Request, conn: Conn, lang: Lang = None) -> Response:
    caller = await _gate(request, conn, lambda c: c.role != "regulator")
    if isinstance(caller, Response):
        return caller
    ids = sorted(caller.residents) if caller.residents is not None else []
    residents = [await get_resident(rid, conn, caller) for rid in ids]
    return _render(request, "family.html", caller, lang, residents=residents)


@router.get("/regulator", response_class=HTMLResponse)
async def regulator(request: Request, conn: Conn, lang: Lang = None) -> Response:
    caller = await _gate(request, conn, lambda c: c.role != "family")
    if isinstance(caller, Response):
        return caller
    districts = await reports.district_summaries(conn, sorted(caller.facilities), days=30)
    return _render(request, "regulator.html", caller, lang, districts=districts, bars=_bars)


def _bars(days: Any, width: int = 720, height: int = 140) -> dict[str, Any]:
    """Stacked daily bars (fire/gas, fall, other) with false alarms beside, as SVG geometry."""
    top = max([d.total for d in days] + [d.false_alarms for d in days] + [1])
    step = width / max(1, len(days))
    bars = []
    for i, d in enumerate(days):
        y = height
        for kind, n in (("fire", d.fire_gas), ("fall", d.fall), ("other", d.other)):
            h = height * n / top
            y -= h
            if n:
                bars.append(
                    {"x": i * step, "y": y, "w": step * 0.6, "h": h, "cls": kind, "title": f"{d.day} {n}"}
                )
        if d.false_alarms:
            h = height * d.false_alarms / top
            bars.append(
                {
                    "x": i * step + step * 0.62,
                    "y": height - h,
                    "w": step * 0.3,
                    "h": h,
                    "cls": "false",
                    "title": f"{d.day} {d.false_alarms}",
                }
            )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "top": top,
        "first": days[0].day if days else None,
        "last": days[-1].day if days else None,
    }


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
