"""The live feed of alarm changes behind ``GET /api/v1/alarms/stream``.

One LISTEN connection per API process hears ``NOTIFY ankang_alarms`` (the alarm's id, sent
in the transaction that changed it). The feed reads the changed alarms in one query and
hands each to the subscribers whose scope includes it. A subscriber that falls behind, or
a feed that lost its LISTEN connection and may have missed changes, gets ``resync``: the
page then reloads its list, so nothing is silently missing from a console.

When the feed loses its LISTEN connection it also tells every subscriber at once
(``lost``), so that a stream looks at its session without waiting for the next idle check:
if the database is away the stream reports itself degraded, and the feed's ``resync`` on
reconnecting prompts the stream to look again and recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection

from alerts.lifecycle import NOTIFY_CHANNEL
from alerts.queries import alarm_views
from api.auth import Principal
from api.views import for_caller, serialize
from hub.storage import Database

log = logging.getLogger(__name__)

QUEUE_MAX: Final = 1000
RESYNC: Final = "resync"
# Queued to every subscriber when the server shuts down, so that streams end at once
# instead of holding the shutdown until its grace period runs out.
CLOSING: Final = "closing"
# Queued to every subscriber when the LISTEN connection is lost: changes may go unheard
# until it is back (a ``resync`` then), and the database may be away.
LOST: Final = "lost"


@dataclass(eq=False)
class Subscription:
    principal: Principal
    queue: asyncio.Queue[dict[str, Any] | str] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False

    def offer(self, item: dict[str, Any] | str) -> None:
        if item == CLOSING:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(item)
            return
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow a reader: drop what is queued and tell it to reload once it catches up.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)

    async def next(self) -> dict[str, Any] | str:
        item = await self.queue.get()
        if item == RESYNC:
            self.overflowed = False
        return item


class AlarmFeed:
    """Fan-out of alarm changes to SSE subscribers, each filtered by its caller's scope."""

    def __init__(self, url: str, db: Database) -> None:
        self._url = url
        self._db = db
        self._subs: set[Subscription] = set()
        self.listening = asyncio.Event()
        self.closing = False

    @contextlib.asynccontextmanager
    async def subscribe(self, principal: Principal) -> AsyncIterator[Subscription]:
        sub = Subscription(principal)
        if self.closing:
            sub.offer(CLOSING)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def close(self) -> None:
        """End every stream (the server is shutting down); new ones end at once too."""
        self.closing = True
        for sub in list(self._subs):
            sub.offer(CLOSING)

    async def run(self, stop: asyncio.Event) -> None:
        """LISTEN until ``stop``; reconnect with backoff, and resync everyone after a gap."""
        backoff = 0.5
        first = True
        while not stop.is_set():
            try:
                conn = await AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    if not first:
                        self._broadcast(RESYNC)
                    first = False
                    backoff = 0.5
                    await self._listen(conn, stop)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self.listening.is_set():
                    self.listening.clear()
                    self._broadcast(LOST)
                log.warning("alarm feed lost its database connection (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
        self.listening.clear()

    async def _listen(self, conn: AsyncConnection[Any], stop: asyncio.Event) -> None:
        while not stop.is_set():
            ids: set[int] = set()
            # The first change, or a second of quiet to look at ``stop`` again; then whatever
            # else arrived with it (one packet often holds several), published together.
            async for note in conn.notifies(timeout=1.0, stop_after=1):
                with contextlib.suppress(ValueError):
                    ids.add(int(note.payload))
            if not ids:
                continue
            async for more in conn.notifies(timeout=0.0):
                with contextlib.suppress(ValueError):
                    ids.add(int(more.payload))
            if self._subs:
                await self._publish(sorted(ids))

    async def _publish(self, ids: list[int]) -> None:
        try:
            async with self._db.connection() as conn:
                views = [serialize(v) for v in await alarm_views(conn, ids)]
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("alarm feed could not read alarms %s (%s); consoles will resync", ids, exc)
            self._broadcast(RESYNC)
            return
        for view in views:
            for sub in list(self._subs):
                if sub.principal.sees_alarm(view["facility_id"], view["resident_id"]):
                    sub.offer(for_caller(view, sub.principal))

    def _broadcast(self, item: str) -> None:
        for sub in list(self._subs):
            sub.offer(item)
