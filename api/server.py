"""Running the API: ``ankang api`` in production, and one component of ``ankang demo``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from api.auth import demo_accounts_enabled
from api.errors import DemoAccountsPresent
from api.settings import ApiSettings

log = logging.getLogger(__name__)


async def refuse_demo_accounts(settings: ApiSettings) -> None:
    """Outside the demo, enabled accounts with the demo's published passwords stop the start."""
    if settings.demo:
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        names = await demo_accounts_enabled(conn)
    if names:
        raise DemoAccountsPresent(
            f"demo accounts with published passwords are enabled ({', '.join(names)}): "
            "give them new passwords (`ankang accounts password NAME`) or disable them"
        )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """uvicorn inside our own event loop, stopped by an event (no signal handlers of its own)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
        self._server = _Server(config)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    async def run(self, stop: asyncio.Event) -> None:
        await refuse_demo_accounts(self.settings)
        serving = asyncio.create_task(self._server.serve(), name="api.uvicorn")
        stopping = asyncio.create_task(stop.wait(), name="api.stop")
        done, _ = await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping in done:
            feed = getattr(self.app.state, "feed", None)
            if feed is not None:
                feed.close()  # live streams end first, so the graceful shutdown is quick
            self._server.should_exit = True
            await serving
        else:
            stopping.cancel()
            serving.result()  # re-raise a failure to bind or start
            if not self._server.started:
                raise RuntimeError(
                    f"the API did not start on {self.settings.api_host}:{self.settings.api_port}"
                )
