"""The hub process: MQTT session → ingest → TimescaleDB, plus scheduled jobs and ops HTTP.

Two tasks form the ingest pipeline, so that decoding batch N+1 overlaps committing batch
N: ``hub.prepare`` takes batches off the session and decodes them; ``hub.commit`` writes
them and acknowledges. A queue of two prepared batches between them is the only buffer,
and the broker's Receive Maximum bounds what the session itself holds.

Shutdown is ordered and bounded: stop taking batches, commit what was prepared (for at
most ``drain_timeout`` seconds), acknowledge it, disconnect, close the pool. Anything not
committed by then is left unacknowledged, and the broker redelivers it on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from hub.ingest import Ingestor, Prepared
from hub.jobs import Scheduler
from hub.metrics import HubMetrics, OpsServer
from hub.mqtt import MqttSession
from hub.registry import RegistryCache
from hub.settings import Settings
from hub.storage import Database, migrate

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ("ankang/v1/+/+",)


class Hub:
    def __init__(self, settings: Settings, *, drain_timeout: float = 10.0) -> None:
        self._settings = settings
        self._drain_timeout = drain_timeout
        self.metrics = HubMetrics()
        self._mqtt: MqttSession | None = None
        self._ingestor: Ingestor | None = None
        self._queue: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=2)

    def client_id(self) -> str:
        s = self._settings
        if s.hub_partitions == 1:
            return s.hub_client_id
        return f"{s.hub_client_id}-{s.hub_partition}of{s.hub_partitions}"

    def health(self) -> dict[str, Any]:
        mqtt_ok = self._mqtt is not None and self._mqtt.connected
        db_ok = self._ingestor is not None and self._ingestor.database_ok
        pending = self._mqtt.pending if self._mqtt else 0
        return {"ok": mqtt_ok and db_ok, "mqtt": mqtt_ok, "database": db_ok, "pending": pending}

    async def run(self, stop: asyncio.Event, *, apply_migrations: bool = True) -> None:
        s = self._settings
        if apply_migrations:
            applied = await migrate(s.database_url)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        async with Database(s.database_url, name="ankang-hub") as db:
            registry = RegistryCache(db, s.database_url)
            await registry.load_all()
            self._ingestor = Ingestor(
                db,
                registry,
                self.metrics,
                partition=s.hub_partition,
                partitions=s.hub_partitions,
                retry_max_s=s.ingest_retry_max_s,
            )
            session = MqttSession(
                s.mqtt,
                self.client_id(),
                SUBSCRIPTIONS,
                session_expiry_s=s.mqtt_session_expiry_s,
                receive_maximum=s.mqtt_receive_maximum,
                keepalive_s=s.mqtt_keepalive_s,
            )
            async with OpsServer(s.metrics_host, s.metrics_port, self.metrics, self.health), session as mqtt:
                self._mqtt = mqtt
                log.info(
                    "hub %s running (partition %d of %d)", self.client_id(), s.hub_partition, s.hub_partitions
                )
                intake_done = asyncio.Event()
                async with asyncio.TaskGroup() as tg:
                    intake = tg.create_task(self._prepare_loop(mqtt, stop), name="hub.prepare")
                    others = [
                        tg.create_task(self._commit_loop(mqtt, intake_done), name="hub.commit"),
                        tg.create_task(registry.listen(intake_done), name="hub.registry"),
                        tg.create_task(Scheduler(db, s, self.metrics).run(intake_done), name="hub.jobs"),
                        tg.create_task(self._gauges(mqtt, intake_done), name="hub.gauges"),
                    ]
                    await stop.wait()
                    log.info("stopping: draining prepared batches")
                    intake.cancel()  # it may be waiting out a database outage
                    try:
                        await asyncio.wait_for(self._drained(), self._drain_timeout)
                    except TimeoutError:
                        log.warning("drain timed out; unacknowledged messages will be redelivered")
                    intake_done.set()
                    # Whatever is still waiting on the database is abandoned: a batch that was
                    # not acknowledged is redelivered on the next start and stored once.
                    for task in others:
                        task.cancel()
            self._mqtt = None
        log.info("hub stopped")

    async def _drained(self) -> None:
        await self._queue.join()

    async def _prepare_loop(self, mqtt: MqttSession, stop: asyncio.Event) -> None:
        assert self._ingestor is not None  # noqa: S101
        max_batch = self._settings.ingest_max_batch
        while not stop.is_set():
            batch = await mqtt.next_batch(max_batch, timeout=0.25, linger=self._settings.ingest_linger_s)
            if not batch:
                continue
            prepared = await self._ingestor.prepare(batch)
            await self._queue.put(prepared)

    async def _commit_loop(self, mqtt: MqttSession, done: asyncio.Event) -> None:
        assert self._ingestor is not None  # noqa: S101
        while True:
            get = asyncio.ensure_future(self._queue.get())
            finished = asyncio.ensure_future(done.wait())
            await asyncio.wait({get, finished}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                finished.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await get
                return
            finished.cancel()
            prepared = get.result()
            try:
                if prepared is None:
                    return
                result = await self._ingestor.commit(prepared, done)
                if result is not None:
                    started = time.perf_counter()
                    mqtt.ack(prepared.inbound)
                    self.metrics.stage_seconds.labels("ack").inc(time.perf_counter() - started)
            finally:
                self._queue.task_done()

    async def _gauges(self, mqtt: MqttSession, done: asyncio.Event) -> None:
        while not done.is_set():
            self.metrics.queue_depth.set(mqtt.pending + sum(len(p.inbound) for p in self._pending_batches()))
            self.metrics.mqtt_up.set(1 if mqtt.connected else 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)

    def _pending_batches(self) -> list[Prepared]:
        return [p for p in list(self._queue._queue) if p is not None]  # type: ignore[attr-defined]
