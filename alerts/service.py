"""The alert process: detections → alarms, the hold-down sweep, escalation and delivery.

Five named tasks (six with ``publish_mqtt``) share one connection pool:

- ``alerts.listen`` holds a connection with ``LISTEN ankang_detections`` and
  ``LISTEN ankang_notifications``, and wakes the consumer the moment the hub commits
  detections, and the delivery worker the moment an escalation step writes the outbox;
- ``alerts.consume`` drains pending detections (``alerts.lifecycle.apply_pending``) when
  woken, and at least every ``poll_s`` seconds, so that a lost notification or a broken
  listener costs at most that much delay;
- ``alerts.sweep`` resolves flapping conditions that have stayed cleared past their
  hold-down, on the injected clock;
- ``alerts.escalate`` takes due escalation steps and reminders (``alerts.escalation``) every
  ``escalate_s`` seconds, and at once when an alarm opens;
- ``alerts.deliver`` sends due notifications from the outbox (``alerts.delivery``) every
  ``deliver_s`` seconds, and at once when the outbox is written;
- ``alerts.publish`` (with ``publish_mqtt``) publishes alarm changes to
  ``ankang/v1/alerts/{facility}/{type}`` (``alerts.publish``), at once on ``NOTIFY
  ankang_alarms`` and at least every second; and, unless ``ha_discovery`` is off, Home
  Assistant's retained discovery configs and states (``alerts.hadiscovery``) at start and
  after each round of changes.

Every timer lives in the database (levels, reminder times, ``next_attempt_at``): a restart,
even ``kill -9``, picks up where the last commit left off.

Each loop but the listener runs under one supervisor (``_supervise``): wait, take a step,
and sort what went wrong. A database outage is warned about once, and waited out with
backoff; the process does not exit. Anything else is logged with its traceback and the loop
goes on after a pause, so that one failing loop never ends the others. Shutdown is
ordered and bounded: the loops finish the transaction in hand (for at most
``drain_timeout`` seconds), and whatever is still running after that is cancelled. An
uncommitted batch stays pending and is applied on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import psycopg

from alerts.delivery import DeliveryPolicy, deliver_due
from alerts.errors import AlertsError, AlertsUnavailable
from alerts.escalation import NOTIFY_OUTBOX, escalate
from alerts.hadiscovery import Announcer
from alerts.lifecycle import NOTIFY_CHANNEL, apply_pending, sweep
from alerts.publish import AlarmPublisher, publish_changes
from hub.settings import Settings
from hub.storage import Database, migrate

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertService:
    """``await AlertService(settings).run(stop)`` runs until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        poll_s: float = 1.0,
        sweep_s: float = 5.0,
        escalate_s: float = 1.0,
        deliver_s: float = 1.0,
        delivery: DeliveryPolicy | None = None,
        publish_mqtt: bool = False,
        batch: int = 500,
        retry_max_s: float = 5.0,
        drain_timeout: float = 5.0,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._poll_s = poll_s
        self._sweep_s = sweep_s
        self._escalate_s = escalate_s
        self._deliver_s = deliver_s
        self._delivery = delivery or DeliveryPolicy()
        self._escalate_wake = asyncio.Event()
        self._deliver_wake = asyncio.Event()
        self._publish_mqtt = publish_mqtt
        self._ha_discovery = publish_mqtt and settings.ha_discovery
        self._publish_wake = asyncio.Event()
        self._batch = batch
        self._retry_max_s = retry_max_s
        self._drain_timeout = drain_timeout
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._ran = False
        self.database_ok = False
        self._database_away = False  # warned about, not yet back

    async def run(self, stop: asyncio.Event, *, apply_migrations: bool = True) -> None:
        if self._ran:
            raise AlertsError("an AlertService runs once; make a new one")
        self._ran = True
        url = self._settings.database_url
        if apply_migrations:
            applied = await migrate(url)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        async with Database(url, min_size=1, max_size=4, name="ankang-alerts") as db:
            log.info("alert service running")
            loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
                ("alerts.listen", self._listen(url)),
                (
                    "alerts.consume",
                    self._supervise(
                        "applying detections",
                        lambda: self._tick(self._wake, self._poll_s),
                        functools.partial(self._consume, db),
                    ),
                ),
                (
                    "alerts.sweep",
                    self._supervise(
                        "sweep", lambda: self._pause(self._sweep_s), functools.partial(self._sweep, db)
                    ),
                ),
                (
                    "alerts.escalate",
                    self._supervise(
                        "escalation",
                        lambda: self._tick(self._escalate_wake, self._escalate_s),
                        functools.partial(self._escalate, db),
                    ),
                ),
                (
                    "alerts.deliver",
                    self._supervise(
                        "delivery",
                        lambda: self._tick(self._deliver_wake, self._deliver_s),
                        functools.partial(self._deliver, db),
                    ),
                ),
            ]
            if self._publish_mqtt:
                loops.append(("alerts.publish", self._publish(db)))
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(loop, name=name) for name, loop in loops]
                await stop.wait()
                log.info("stopping")
                self._done.set()
                self._wake.set()
                self._escalate_wake.set()
                self._deliver_wake.set()
                self._publish_wake.set()
                _, running = await asyncio.wait(tasks, timeout=self._drain_timeout)
                for task in running:
                    log.warning("%s did not finish in time; cancelled", task.get_name())
                    task.cancel()
        log.info("alert service stopped")

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, returning early on shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), seconds)

    async def _listen(self, url: str) -> None:
        backoff = 0.5
        while not self._done.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=3)
            except psycopg.OperationalError:
                await self._pause(backoff)
                backoff = min(backoff * 2, self._retry_max_s)
                continue
            try:
                async with conn:
                    await conn.execute("LISTEN ankang_detections")
                    await conn.execute(f"LISTEN {NOTIFY_OUTBOX}")
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    # Whatever was committed while nobody listened.
                    self._wake.set()
                    self._deliver_wake.set()
                    self._publish_wake.set()
                    while not self._done.is_set():
                        async for note in conn.notifies(timeout=1.0):
                            if note.channel == NOTIFY_OUTBOX:
                                self._deliver_wake.set()
                            elif note.channel == NOTIFY_CHANNEL:
                                self._publish_wake.set()
                            else:
                                self._wake.set()
            except psycopg.Error as exc:
                log.warning("detection listener lost the database: %s", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, self._retry_max_s)
            except Exception:
                log.exception("detection listener failed")
                await self._pause(self._retry_max_s)

    async def _supervise(
        self, what: str, wait: Callable[[], Awaitable[None]], step: Callable[[], Awaitable[None]]
    ) -> None:
        """Until shutdown: ``wait``, then ``step``. The database away is warned about once for
        the whole service and waited out with this loop's own backoff; anything else (a bug,
        a schema mismatch) is logged with its traceback and tried again after a pause rather
        than spun on or let out, where it would end the TaskGroup, and with it every loop."""
        backoff = 0.5
        while not self._done.is_set():
            await wait()
            if self._done.is_set():
                return
            try:
                await step()
            except (AlertsUnavailable, TimeoutError, psycopg.OperationalError) as exc:
                if not self._database_away:
                    log.warning("database unavailable, waiting (%s): %s", what, exc)
                else:
                    log.debug("%s skipped: %s", what, exc)
                self._database_away = True
                self.database_ok = False
                await self._pause(backoff)
                backoff = min(backoff * 2, self._retry_max_s)
            except Exception:
                log.exception("%s failed", what)
                await self._pause(self._retry_max_s)
            else:
                if not self.database_ok:
                    log.info("database reachable; %s", what)
                self._database_away = False
                self.database_ok = True
                backoff = 0.5

    async def _tick(self, wake: asyncio.Event, seconds: float) -> None:
        """Wait until woken or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    async def _consume(self, db: Database) -> None:
        """Apply pending detections, batch after batch until fewer than a batch are left."""
        while not self._done.is_set():
            async with db.connection() as conn:
                applied = await apply_pending(conn, limit=self._batch)
            for alarm_id in applied.opened:
                log.info("opened alarm %d", alarm_id)
            if applied.opened:
                # A new alarm's first step (after_s 0) should not wait for the tick.
                self._escalate_wake.set()
            if applied.detections < self._batch:
                return

    async def _sweep(self, db: Database) -> None:
        async with db.connection() as conn:
            resolved = await sweep(conn, self._clock())
        for alarm_id in resolved:
            log.info("alarm %d resolved: cleared past its hold-down", alarm_id)

    async def _escalate(self, db: Database) -> None:
        async with db.connection() as conn:
            taken = await escalate(conn, self._clock())
        for t in taken:
            log.info(
                "alarm %d %s (step %d): %d sent to outbox", t.alarm_id, t.action, t.step, t.notifications
            )
        if any(t.notifications for t in taken):
            self._deliver_wake.set()

    async def _deliver(self, db: Database) -> None:
        async with db.connection() as conn:
            done = await deliver_due(conn, self._clock(), policy=self._delivery, clock=self._clock)
        if done.sent or done.failed or done.retrying:
            log.info(
                "delivery: %d sent, %d retrying, %d failed, %d digested, %d held",
                len(done.sent),
                len(done.retrying),
                len(done.failed),
                len(done.digested),
                len(done.deferred),
            )

    async def _publish(self, db: Database) -> None:
        # One client id per process: two alert workers must not take each other's session.
        client_id = f"ankang-alerts-{os.getpid()}"
        # Home Assistant's retained entities and states (alerts/hadiscovery.py), re-sent after
        # alarm changes; the alarm changes themselves are never retained.
        announcer = Announcer() if self._ha_discovery else None
        async with AlarmPublisher(self._settings.mqtt, client_id=client_id) as publisher:

            async def step() -> None:
                # The broker or the database away: the changes wait in the table.
                async with db.connection() as conn:
                    changed = await publish_changes(conn, publisher)
                    if announcer is not None:
                        await announcer.sync(
                            conn,
                            functools.partial(publisher.publish, retain=True),
                            session=publisher.connections,
                            changed=changed > 0,
                        )

            await self._supervise(
                "publishing alarm changes", lambda: self._tick(self._publish_wake, 1.0), step
            )
