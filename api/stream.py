"""The live feed of alarm changes behind ``GET /api/v1/alarms/stream``.

One LISTEN connection per API process hears ``NOTIFY ankang_alarms`` (the alarm's id, sent
in the transaction that changed it). The feed reads the changed alarms in one query and
hands each to the subscribers whose scope includes it. A subscriber that falls behind, or
a feed that lost its LISTEN connection and may have missed changes, gets ``resync``: the
page then reloads its list, so nothing is silently missing from a console.

The feed also looks at the subscribers' sessions, all in one query, so that a thousand
streams do not each borrow a connection for it: before it hands out a change, those looked
at more than a second ago; and every second, those looked at more than ``RECHECK_S`` ago. A
session that ended gets ``ended``; a changed scope applies at once. Each change is encoded
to JSON once for every subscriber that reads it alike (regulators read less of it).

When the feed loses its LISTEN connection it also tells every subscriber at once
(``lost``), so that a stream looks at its session without waiting for the next check: if
the database is away the stream reports itself degraded, and the feed's ``resync`` on
reconnecting prompts the stream to look again and recover. A stream whose session the feed
has not looked at for a while (the database is away) looks at it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from fastapi.encoders import jsonable_encoder
from psycopg import AsyncConnection

from alerts.lifecycle import NOTIFY_CHANNEL
from alerts.queries import alarm_views
from api.auth import Principal, principals_for
from api.views import for_caller, reads_redacted, serialize
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
# Queued to a subscriber whose session the feed found ended (logged out, expired, disabled).
ENDED: Final = "ended"
_FINAL: Final = frozenset({CLOSING, ENDED})
# A session is looked at again this often while its stream is open, and before a change goes
# to it if the last look is older than RECHECK_BEFORE_SEND_S: a revoked session gets nothing
# new after about a second.
RECHECK_S: Final = 5.0
RECHECK_BEFORE_SEND_S: Final = 1.0
_SWEEP_EVERY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    """A changed alarm as one subscriber may read it, with its JSON encoded once for all
    subscribers that read it alike."""

    alarm_id: int
    updated_at: str
    facility_id: str | None
    resident_id: str | None
    data: str


@dataclass(eq=False)
class Subscription:
    principal: Principal
    token: str = ""
    # when the session was last found valid (time.monotonic())
    checked: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[Change | str] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False

    def refreshed(self, principal: Principal) -> None:
        self.principal = principal
        self.checked = time.monotonic()

    def offer(self, item: Change | str) -> None:
        if item in _FINAL:
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

    def poll(self) -> Change | str | None:
        """The next item if one is queued, without waiting."""
        try:
            item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if item == RESYNC:
            self.overflowed = False
        return item

    async def next(self) -> Change | str:
        item = await self.queue.get()
        if item == RESYNC:
            self.overflowed = False
        return item


class AlarmFeed:
    """Fan-out of alarm changes to SSE subscribers, each filtered by its caller's scope."""

    def __init__(self, url: str, db: Database, *, allow_demo: bool = False) -> None:
        self._url = url
        self._db = db
        self._allow_demo = allow_demo
        self._subs: set[Subscription] = set()
        self._next_sweep = 0.0
        self.listening = asyncio.Event()
        self.closing = False

    @contextlib.asynccontextmanager
    async def subscribe(self, principal: Principal, token: str = "") -> AsyncIterator[Subscription]:
        """A subscription for ``principal``, whose session (``token``) was just looked at."""
        sub = Subscription(principal, token)
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
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + _SWEEP_EVERY_S
                await self._recheck(RECHECK_S)
            if not ids:
                continue
            async for more in conn.notifies(timeout=0.0):
                with contextlib.suppress(ValueError):
                    ids.add(int(more.payload))
            if self._subs:
                await self._publish(sorted(ids))

    async def _recheck(self, older_than: float) -> list[Subscription]:
        """Look at the sessions of the subscribers looked at more than ``older_than`` seconds
        ago, in one query: an ended one gets ``ended``, the rest their current scope. Returns
        those that could not be looked at (the database is away)."""
        now = time.monotonic()
        due = [sub for sub in self._subs if now - sub.checked >= older_than]
        if not due:
            return []
        try:
            async with self._db.connection() as conn:
                found = await principals_for(conn, {sub.token for sub in due}, allow_demo=self._allow_demo)
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
            # the streams look for themselves once their last look is old enough
            log.warning("alarm feed could not look at %d sessions (%s)", len(due), exc)
            return due
        for sub in due:
            principal = found.get(sub.token)
            if principal is None:
                sub.offer(ENDED)
            else:
                sub.refreshed(principal)
        return []

    async def _publish(self, ids: list[int]) -> None:
        try:
            async with self._db.connection() as conn:
                views = [serialize(v) for v in await alarm_views(conn, ids)]
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
            log.warning("alarm feed could not read alarms %s (%s); consoles will resync", ids, exc)
            self._broadcast(RESYNC)
            return
        # Nothing goes to a session that has not been looked at for a second. Those looked at
        # half a second ago are looked at again too, so that their streams, which look
        # themselves past a second, need not while they hand this out.
        unchecked = set(await self._recheck(RECHECK_BEFORE_SEND_S / 2))
        for sub in unchecked:
            sub.offer(RESYNC)  # the stream looks at its session before it sends this
        for view in views:
            for sub, change in _changes(view, (s for s in self._subs if s not in unchecked)):
                sub.offer(change)

    def _broadcast(self, item: str) -> None:
        for sub in list(self._subs):
            sub.offer(item)


def _changes(view: dict[str, Any], subs: Iterable[Subscription]) -> list[tuple[Subscription, Change]]:
    """``view`` for each subscriber whose scope includes it, encoded once per way of reading
    it (:func:`api.views.for_caller`)."""
    encoded: dict[bool, Change] = {}
    out: list[tuple[Subscription, Change]] = []
    for sub in subs:
        if not sub.principal.sees_alarm(view["facility_id"], view["resident_id"]):
            continue
        redacted = reads_redacted(sub.principal)
        change = encoded.get(redacted)
        if change is None:
            shown = for_caller(view, sub.principal)
            # as FastAPI would encode it for each stream, but once
            data = json.dumps(jsonable_encoder(shown))
            change = Change(
                view["id"], str(view["updated_at"]), view["facility_id"], view["resident_id"], data
            )
            encoded[redacted] = change
        out.append((sub, change))
    return out
