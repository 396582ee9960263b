"""The FastAPI application: ``/api/v1`` (OpenAPI at ``/api/v1/docs``) and the pages.

The app owns a connection pool (the storage layer's ``hub.storage.Database``) and the alarm
feed for its lifetime (the lifespan); nothing connects at import or construction time.
Errors from below are translated here: a database outage is a 503, a value PostgreSQL
refuses is a 422, and nothing from bad input is a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import psycopg
from fastapi import APIRouter, FastAPI, Request, status
from fastapi.responses import JSONResponse

from alerts import AlertsUnavailable
from api.limits import BodyLimit
from api.routes import alarms, auth, devices, escalation, facilities, reports, residents
from api.settings import ApiSettings
from api.stream import AlarmFeed
from hub.storage import Database

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# How long the start waits for the database to say whether TimescaleDB is there.
_TIMESCALE_WAIT_S: Final = 30.0

_Error = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}
        }
    }
}
# Answers every route can give; each route adds its own (409 on a second acknowledgement...).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not valid JSON", **_Error},
    401: {"description": "Not logged in, or the session expired", **_Error},
    403: {"description": "The caller's role may not do this", **_Error},
    404: {"description": "Unknown, or not in the caller's scope", **_Error},
    413: {"description": "The body is larger than the limit (ANKANG_MAX_BODY_BYTES)", **_Error},
    422: {"description": "The request is not valid", **_Error},
    503: {"description": "The database is unavailable; try again", **_Error},
}


def create_app(settings: ApiSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Database(
            settings.database_url, min_size=1, max_size=settings.db_pool_max, name="ankang-api"
        ) as db:
            stop = asyncio.Event()
            app.state.db = db
            app.state.timescale = await _has_timescale(db)
            app.state.feed = AlarmFeed(settings.database_url, db, allow_demo=settings.demo)
            task = asyncio.create_task(app.state.feed.run(stop), name="api.alarm-feed")
            try:
                yield
            finally:
                stop.set()
                await task

    app = FastAPI(
        title="ankang",
        summary="Care homes, family care beds and fire safety: residents, devices, alarms.",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Outermost of ours: an oversized body is refused before authentication or parsing.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    api = APIRouter(prefix=API_PREFIX, responses=COMMON_RESPONSES)
    for module in (auth, facilities, residents, devices, alarms, escalation, reports):
        api.include_router(module.router)
    app.include_router(api)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> dict[str, object]:
        return {"ok": True, "feed_listening": request.app.state.feed.listening.is_set()}

    @app.exception_handler(AlertsUnavailable)
    @app.exception_handler(psycopg.OperationalError)
    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "the database is unavailable; try again"}, status.HTTP_503_SERVICE_UNAVAILABLE
        )

    @app.exception_handler(psycopg.DataError)
    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        # a value PostgreSQL cannot take (a timestamp beyond its range, say): the caller's input
        return JSONResponse(
            {"detail": f"a value was refused: {str(exc).splitlines()[0]}"},
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    from api import pages

    pages.mount(app)
    return app


async def _has_timescale(db: Database) -> bool:
    # The pool hands out a connection within a few seconds or gives up; at start the
    # database may still be coming up, so ask again until the wait is over.
    deadline = time.monotonic() + _TIMESCALE_WAIT_S
    while True:
        try:
            return await db.timescaledb()
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError):
            if time.monotonic() >= deadline:
                log.warning("database not reachable at start; readings are bucketed without TimescaleDB")
                return False
            await asyncio.sleep(0.5)
