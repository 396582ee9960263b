"""The hub process: MQTT session → ingest → TimescaleDB, plus scheduled jobs and ops HTTP.

Two tasks form the ingest pipeline, so that decoding batch N+1 overlaps committing batch
N: ``hub.prepare`` takes batches off the session and decodes them; ``hub.commit`` writes
them and acknowledges. A queue of two prepared batches between them is the only buffer,
and the session bounds everything received and not yet acknowledged (``hub.mqtt``).

Shutdown is ordered and bounded: stop taking batches, commit what was prepared (for at
most ``drain_timeout`` seconds), acknowledge it, disconnect, close the pool. Anything not
committed by then is left unacknowledged, and the broker redelivers it on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from devices.adapters import Adapter, Adapters, ChirpStack, Zigbee2Mqtt
from devices.mqtt import MqttEndpoint
from hub.detectors.health import HealthRow
from hub.errors import ConfigError
from hub.ingest import (
    MAX_ATTEMPTS,
    DeadLetter,
    Ingestor,
    Lane,
    Prepared,
    add_findings,
    add_found,
    partition_of,
)
from hub.jobs import Scheduler
from hub.lag import LagWatch, LaneClock, median_time
from hub.metrics import HubMetrics, OpsServer
from hub.mqtt import MqttSession
from hub.registry import RegistryCache
from hub.settings import Settings
from hub.storage import Database, StorageUnavailable, StoreBatch, WriteResult, migrate

if TYPE_CHECKING:  # imported when the hub starts: the models take a moment to load
    from hub.detectors.engine import DetectionEngine

log = logging.getLogger(__name__)

# Everything under the prefix, so that what a device sends outside its channels
# (ankang/v1/{id}/telemetry/extra) is quarantined rather than unheard; the alert service's
# own topics and the command topics are acknowledged untouched (devices.contract).
SUBSCRIPTIONS = ("ankang/v1/#",)
# The urgent lane's session: events and statuses (last wills, heartbeats), in small
# transactions committed at once. The bulk session receives them too and leaves them to it.
URGENT_SUBSCRIPTIONS = ("ankang/v1/+/event", "ankang/v1/+/status")
URGENT_RECEIVE_MAXIMUM = 2_000
URGENT_MAX_BATCH = 500


def _adapters(s: Settings, registry: RegistryCache) -> Adapters:
    """The foreign ecosystems the settings enable (docs/integrations.md)."""
    chosen: list[Adapter] = []
    if s.zigbee2mqtt:
        chosen.append(Zigbee2Mqtt(registry.alias, base_topic=s.zigbee2mqtt_base_topic))
    if s.chirpstack:
        chosen.append(ChirpStack(registry.alias, topic_filter=s.chirpstack_topic))
    if chosen:
        log.info("adapters: %s", ", ".join(a.name for a in chosen))
    return Adapters(chosen)


@dataclass(eq=False)
class _Lane:
    """One ingest lane: its own MQTT session, pipeline and transactions (docs/devices.md)."""

    name: Lane
    ingestor: Ingestor
    session: MqttSession
    max_batch: int
    linger_s: float
    queue: asyncio.Queue[Prepared | None] = field(default_factory=lambda: asyncio.Queue(maxsize=2))
    preparing: bool = False
    clock: LaneClock = field(default_factory=lambda: LaneClock(time.time()))

    def caught_up(self) -> bool:
        return (
            self.session.connected
            and self.session.pending == 0
            and self.queue.qsize() == 0
            and not self.preparing
            and self.ingestor.database_ok
        )

    def lag(self, now: float) -> float:
        """How far behind the lane is, by device time (``hub.lag``)."""
        return self.clock.lag(now, waiting=not self.caught_up())

    def pending_batches(self) -> list[Prepared]:
        return [p for p in list(self.queue._queue) if p is not None]  # type: ignore[attr-defined]


class Hub:
    """The hub process. Two lanes by default (docs/devices.md, "Lanes"): events, statuses and
    the bridges' small messages on the urgent lane, native telemetry on the bulk lane, each
    with its own persistent session, so that a smoke alarm never waits behind acceleration
    blocks."""

    def __init__(self, settings: Settings, *, drain_timeout: float = 10.0) -> None:
        self._settings = settings
        self._drain_timeout = drain_timeout
        self.metrics = HubMetrics()
        self._lanes: list[_Lane] = []
        self._lag_watch: LagWatch | None = None
        self._fall_detection = False

    def client_id(self) -> str:
        """The hub's persistent session. With an account, its name (the broker ties the
        two; each partition worker then needs an account of its own, docs/deployment.md)."""
        s = self._settings
        if s.hub_partitions == 1:
            return s.mqtt.client_id(s.hub_client_id)
        return s.mqtt.client_id(f"{s.hub_client_id}-{s.hub_partition}of{s.hub_partitions}")

    def _urgent_endpoint(self) -> MqttEndpoint | None:
        """The urgent lane's broker account, or None for one lane. Its session needs a
        client id of its own, so on a broker that ties client ids to accounts it needs an
        account of its own (``ANKANG_MQTT_URGENT_URL``)."""
        s = self._settings
        if not s.urgent_lane:
            return None
        if s.mqtt_urgent_url:
            return MqttEndpoint.from_url(s.mqtt_urgent_url, ca_file=s.mqtt_ca_file)
        if s.mqtt.username is not None:
            log.warning(
                "ONE LANE: ANKANG_MQTT_URL has an account but ANKANG_MQTT_URGENT_URL is not set, so fire, "
                "gas and SOS events share the queue of bulk telemetry (docs/deployment.md)"
            )
            return None
        return s.mqtt

    def health(self) -> dict[str, Any]:
        now = time.time()
        mqtt_ok = bool(self._lanes) and all(lane.session.connected for lane in self._lanes)
        db_ok = bool(self._lanes) and all(lane.ingestor.database_ok for lane in self._lanes)
        return {
            "ok": mqtt_ok and db_ok,
            "mqtt": mqtt_ok,
            "database": db_ok,
            "pending": sum(lane.session.pending for lane in self._lanes),
            "lanes": {
                lane.name: {"pending": lane.session.pending, "lag_s": round(lane.lag(now), 3)}
                for lane in self._lanes
            },
            "lag_alarm": self._lag_watch.level if self._lag_watch else None,
            "detection": self._settings.detection,
            "fall_detection": self._fall_detection,
        }

    async def run(self, stop: asyncio.Event, *, apply_migrations: bool = True) -> None:
        s = self._settings
        if apply_migrations:
            applied = await migrate(s.database_url)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        async with Database(s.database_url, name="ankang-hub") as db, contextlib.AsyncExitStack() as stack:
            registry = RegistryCache(db, s.database_url)
            await registry.load_all()
            engine = await self._engine(db, registry) if s.detection else None
            adapters = _adapters(s, registry)

            def ingestor(lane: Lane, with_adapters: bool) -> Ingestor:
                return Ingestor(
                    db,
                    registry,
                    self.metrics,
                    partition=s.hub_partition,
                    partitions=s.hub_partitions,
                    retry_max_s=s.ingest_retry_max_s,
                    engine=engine,
                    adapters=adapters if with_adapters else None,
                    lane=lane,
                )

            def session(
                endpoint: MqttEndpoint, client_id: str, topics: Sequence[str], limit: int
            ) -> MqttSession:
                return MqttSession(
                    endpoint,
                    client_id,
                    topics,
                    session_expiry_s=s.mqtt_session_expiry_s,
                    receive_maximum=limit,
                    keepalive_s=s.mqtt_keepalive_s,
                )

            urgent = self._urgent_endpoint()
            if urgent is None:
                specs = [("all", s.mqtt, self.client_id(), (*SUBSCRIPTIONS, *adapters.subscriptions), True)]
            else:
                urgent_id = urgent.client_id(f"{self.client_id()}-urgent")
                specs = [
                    ("urgent", urgent, urgent_id, (*URGENT_SUBSCRIPTIONS, *adapters.subscriptions), True),
                    ("bulk", s.mqtt, self.client_id(), SUBSCRIPTIONS, False),
                ]
            for name, endpoint, client_id, topics, with_adapters in specs:
                lane_name: Lane = name  # type: ignore[assignment]
                small = lane_name == "urgent"
                limit = (
                    min(s.mqtt_receive_maximum, URGENT_RECEIVE_MAXIMUM) if small else s.mqtt_receive_maximum
                )
                entered = await stack.enter_async_context(session(endpoint, client_id, topics, limit))
                self._lanes.append(
                    _Lane(
                        lane_name,
                        ingestor(lane_name, with_adapters),
                        entered,
                        # small transactions committed at once: no linger, small batches
                        max_batch=min(s.ingest_max_batch, URGENT_MAX_BATCH) if small else s.ingest_max_batch,
                        linger_s=0.0 if small else s.ingest_linger_s,
                    )
                )
            await stack.enter_async_context(
                OpsServer(s.metrics_host, s.metrics_port, self.metrics, self.health)
            )
            log.info(
                "hub %s running (partition %d of %d; lanes: %s)",
                self.client_id(),
                s.hub_partition,
                s.hub_partitions,
                ", ".join(lane.name for lane in self._lanes),
            )
            intake_done = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                intakes = [
                    tg.create_task(self._prepare_loop(lane, stop), name=f"hub.prepare.{lane.name}")
                    for lane in self._lanes
                ]
                others = [
                    tg.create_task(self._commit_loop(lane, intake_done), name=f"hub.commit.{lane.name}")
                    for lane in self._lanes
                ]
                others += [
                    tg.create_task(registry.listen(intake_done), name="hub.registry"),
                    tg.create_task(
                        Scheduler(db, s, self.metrics, self._baselines_loader(db, engine)).run(intake_done),
                        name="hub.jobs",
                    ),
                    tg.create_task(self._gauges(db, registry, intake_done), name="hub.gauges"),
                ]
                if engine is not None:
                    others.append(
                        tg.create_task(
                            self._detect_loop(engine, db, registry, intake_done), name="hub.detect"
                        )
                    )
                await stop.wait()
                log.info("stopping: draining prepared batches")
                for intake in intakes:
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
        self._lanes = []
        log.info("hub stopped")

    def _owned(self, device_id: str) -> bool:
        s = self._settings
        return s.hub_partitions == 1 or partition_of(device_id, s.hub_partitions) == s.hub_partition

    async def _engine(self, db: Database, registry: RegistryCache) -> DetectionEngine:
        from hub.detectors.engine import DetectionEngine
        from hub.detectors.fall import load_model

        path = self._settings.fall_model
        try:
            model = await asyncio.to_thread(load_model, Path(path) if path else None)
        except ConfigError:
            # Storing readings and detecting fires must not stop because one model is
            # missing: run without fall detection, and say so loudly and in /healthz.
            log.exception("fall detection is OFF")
            model = None
        self._fall_detection = model is not None
        engine = DetectionEngine(registry.get, model)
        owned = [d for d in registry.all() if self._owned(d.id)]
        rows = await db.health_rows([d.id for d in owned])
        health = [
            HealthRow(
                r.device_id,
                r.online,
                r.since.timestamp(),
                r.last_seen.timestamp() if r.last_seen else None,
                r.battery_low,
                r.tamper,
                r.fault,
                r.fault_since.timestamp() if r.fault_since else None,
                r.stuck,
            )
            for r in rows
        ]
        engine.restore(owned, health, await db.inactivity_baselines(), time.time())
        log.info("detection: %d devices watched, %d with stored health", len(owned), len(health))
        return engine

    @staticmethod
    def _baselines_loader(db: Database, engine: DetectionEngine | None) -> Any:
        if engine is None:
            return None

        async def load() -> None:
            engine.set_baselines(await db.inactivity_baselines())

        return load

    async def _detect_loop(
        self, engine: DetectionEngine, db: Database, registry: RegistryCache, done: asyncio.Event
    ) -> None:
        """Time-driven detection: heartbeat deadlines often, slower rules less often.

        Findings that cannot be written (database away) are kept and retried, so an
        offline detection during an outage is late but not lost.
        """
        s = self._settings
        pending = StoreBatch()
        last_slow = last_sync = 0.0
        while not done.is_set():
            now = time.time()
            slow = now - last_slow >= s.detect_slow_tick_s
            if now - last_sync >= 60.0:  # devices registered since the start owe a first message
                owned = [d for d in registry.all() if self._owned(d.id)]
                await asyncio.to_thread(engine.expect, owned, now)
                last_sync = now
            started = time.perf_counter()
            output = await asyncio.to_thread(
                engine.tick, now, health_now=self._heard_until(engine, now), everything=slow
            )
            self.metrics.stage_seconds.labels("tick").inc(time.perf_counter() - started)
            if slow:
                last_slow = now
            if output:
                add_findings(pending, output)
            if pending.findings:
                try:
                    await db.write_findings(pending)
                    pending = StoreBatch()
                except StorageUnavailable as exc:
                    log.warning("cannot store %d detections yet: %s", len(pending.detections), exc)
                except psycopg.Error:
                    # Refused, not unreachable: retrying the same rows would block every later
                    # one. Row by row instead; a refused detection is quarantined alone.
                    log.exception("database refused %d detections; isolating", len(pending.detections))
                    try:
                        await self._lanes[0].ingestor.write_findings_isolated(pending)
                        pending = StoreBatch()
                    except StorageUnavailable as exc:
                        log.warning("cannot store %d detections yet: %s", len(pending.detections), exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), s.detect_tick_s)

    def _heard_until(self, engine: DetectionEngine, now: float) -> float:
        """How far the hub has heard: ``now`` when nothing received is still unprocessed
        in any lane; otherwise the newest arrival the slowest lane has processed. During a
        database outage or a backlog, silence is the hub's own, not the devices': a device
        is not offline because its telemetry waits in the bulk lane."""
        behind = [lane.ingestor.heard for lane in self._lanes if not lane.caught_up()]
        if not self._lanes:
            return min(now, engine.watermark)
        return now if not behind else min(now, *behind)

    async def _drained(self) -> None:
        for lane in self._lanes:
            await lane.queue.join()

    async def _prepare_loop(self, lane: _Lane, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await lane.session.next_batch(lane.max_batch, timeout=0.25, linger=lane.linger_s)
            if not batch:
                continue
            lane.preparing = True
            try:
                try:
                    prepared = [await lane.ingestor.prepare(batch)]
                except Exception:
                    # Not an outage (prepare waits those out): something in the batch breaks
                    # the hub's own code. Handle it message by message, so that the others
                    # go on and the culprit ends in dead_letters (docs/architecture.md).
                    log.exception("preparing a batch of %d failed; isolating it", len(batch))
                    prepared = await lane.ingestor.prepare_isolated(batch)
            finally:
                lane.preparing = False
            for p in prepared:
                await lane.queue.put(p)

    async def _commit_loop(self, lane: _Lane, done: asyncio.Event) -> None:
        while True:
            get = asyncio.ensure_future(lane.queue.get())
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
                result = await self._commit(lane, prepared, done)
                if result is not None:
                    started = time.perf_counter()
                    lane.session.ack(prepared.inbound)
                    self.metrics.stage_seconds.labels("ack").inc(time.perf_counter() - started)
                    if prepared.accepted:
                        lane.clock.committed = median_time([m.ts.timestamp() for _, m in prepared.accepted])
            finally:
                lane.queue.task_done()

    async def _commit(self, lane: _Lane, prepared: Prepared, done: asyncio.Event) -> WriteResult | None:
        """Commit one batch. ``Ingestor.commit`` isolates whatever the database refuses; if
        it raises all the same (a fault of the hub's own), the batch is tried again, and
        after ``MAX_ATTEMPTS`` its messages are acknowledged into dead_letters rather than
        stopping the hub or coming back forever."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await lane.ingestor.commit(prepared, done)
            except Exception:
                log.exception("committing a batch failed (try %d of %d)", attempt, MAX_ATTEMPTS)
        letters = Prepared(prepared.inbound, [], [], {}, 0, 0, 0)
        letters.dead = [
            DeadLetter(raw, "commit", MAX_ATTEMPTS, "the hub failed to commit it", None)
            for raw in prepared.inbound
        ]
        return await lane.ingestor.commit(letters, done)

    async def _gauges(self, db: Database, registry: RegistryCache, done: asyncio.Event) -> None:
        """Every second: the queue gauges, each lane's lag, and the technical alarm when a
        lane is behind (``hub.lag``). Its detections wait out a database outage."""
        s = self._settings
        watch = self._lag_watch = LagWatch(
            self.client_id(), threshold_s=s.lag_alarm_s, clear_s=min(s.lag_clear_s, s.lag_alarm_s)
        )
        pending = StoreBatch()
        while not done.is_set():
            held = 0
            now = time.time()
            lags: dict[str, float] = {}
            for lane in self._lanes:
                depth = lane.session.pending + sum(len(p.inbound) for p in lane.pending_batches())
                self.metrics.lane_queue_depth.labels(lane.name).set(depth)
                held += depth
                lags[lane.name] = lane.lag(now)
                self.metrics.lane_lag.labels(lane.name).set(lags[lane.name])
            self.metrics.queue_depth.set(held)
            self.metrics.mqtt_up.set(
                1 if self._lanes and all(lane.session.connected for lane in self._lanes) else 0
            )
            facilities = {d.facility_id for d in registry.all() if self._owned(d.id)}
            found = watch.update(now, lags, facilities)
            if found:
                log.warning(
                    "ingest lag %s: %s",
                    watch.level or "cleared",
                    ", ".join(f"{name} {lag:.1f} s" for name, lag in lags.items()),
                )
                add_found(pending, found)
            if pending.findings:
                try:
                    await db.write_findings(pending)
                    pending = StoreBatch()
                except StorageUnavailable as exc:
                    log.debug("the lag alarm waits for the database: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)
