"""Ingest: raw MQTT messages in, committed rows and quarantine records out.

For each batch taken from the MQTT session:

1. Messages for devices owned by another hub worker are acknowledged untouched.
2. The rest are decoded against the v1 contract (in a worker thread). Topics of a foreign
   ecosystem (Zigbee2MQTT, ChirpStack) go through their adapter instead
   (``devices.adapters``), which maps them onto the same values; every worker runs the
   adapters and keeps what they map to devices it owns.
3. Unknown devices, and out-of-order or duplicate sequence numbers, are quarantined.
4. Accepted messages go through the detectors (``hub.detectors``).
5. Everything, detections included, is written in one transaction; only then is the batch
   acknowledged.

Sequence rules per device, against the newest stored (seq, ts):

- ``seq > last``: new (a jump forward is counted as a gap: messages lost upstream);
- ``seq < last`` with a newer ``ts``, or ``seq == 0`` with a newer ``ts``: the device
  rebooted and restarted its counter; new;
- ``seq == last`` with a newer ``ts``: a duplicate sequence number; quarantined;
- otherwise (not newer in either): a redelivery if that exact (device, ts, seq) is stored,
  dropped silently; if not, a late, out-of-order message; quarantined.

A status ``offline`` is exempt: it is usually the device's last will, composed when it
connected, and the broker delivers it long after. It is stored without moving the
device's position (a will delivered twice is dropped by the unique key).

A negative ``seq`` comes only from an adapter, for a foreign message that has no counter
(``devices.adapters._common``): it is new unless that exact (device, ts, seq) is stored,
never moves the device's position and never counts as a gap. A position loaded from the
database that is unsequenced says nothing about a counter, and is ignored likewise.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from devices import Event, Message, Rejected, Status, Telemetry, decode
from devices.adapters import Adapter, Adapters, AliasKey
from devices.contract import TOPIC_PREFIX
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import Database, DetectionRow, HealthRecord, Key, StorageUnavailable, StoreBatch, WriteResult

if TYPE_CHECKING:  # the engine pulls in numpy models; ingest itself needs only the types
    from hub.detectors.engine import DetectionEngine, Output

log = logging.getLogger(__name__)
T = TypeVar("T")


def partition_of(device_id: str, partitions: int) -> int:
    """The worker that owns a device: stable across processes and restarts."""
    return zlib.crc32(device_id.encode()) % partitions


def _topic_device(topic: str) -> str | None:
    if not topic.startswith(TOPIC_PREFIX):
        return None
    rest = topic[len(TOPIC_PREFIX) :]
    slash = rest.find("/")
    return rest[:slash] if slash > 0 else None


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    suspect: bool = False  # not newer than the last stored message: redelivery or out of order
    reason: str = ""
    gap: int = 0
    advance: bool = True  # the message becomes the device's newest position


def classify(
    seq: int, ts: datetime, last: tuple[int, datetime] | None, *, last_will: bool = False
) -> Verdict:
    """Apply the sequence rules in the module docstring to one message.

    ``last_will`` marks a status ``offline``: if it is not newer, it is still accepted, but
    it does not move the device's position.
    """
    if last is None:
        return Verdict(accept=True)
    last_seq, last_ts = last
    if seq > last_seq:
        return Verdict(accept=True, gap=seq - last_seq - 1)
    if ts > last_ts and (seq < last_seq or seq == 0):
        return Verdict(accept=True)  # the device restarted its counter
    if last_will:
        return Verdict(accept=True, advance=False)
    if seq == last_seq and ts > last_ts:
        return Verdict(accept=False, reason=f"duplicate seq {seq} with a newer ts")
    return Verdict(accept=False, suspect=True, reason=f"out-of-order seq {seq} (newest stored is {last_seq})")


_QUARANTINE_KINDS = (
    ("malformed JSON", "json"),
    ("topic", "topic"),
    ("unknown device", "unknown_device"),
    ("duplicate seq", "sequence"),
    ("out-of-order", "sequence"),
    ("rejected by the database", "storage"),
)


def quarantine_kind(reason: str) -> str:
    for prefix, kind in _QUARANTINE_KINDS:
        if reason.startswith(prefix):
            return kind
    return "contract"


def _decode_all(
    items: Sequence[Inbound], routes: Sequence[Adapter | None]
) -> list[tuple[Inbound, Message | Rejected]]:
    """Each raw message with what it decodes to; one raw message may map to several values
    (a foreign state snapshot: telemetry and events), or to none (an inventory)."""
    now = datetime.now(UTC)
    out: list[tuple[Inbound, Message | Rejected]] = []
    for m, adapter in zip(items, routes, strict=True):
        if adapter is None:
            out.append((m, decode(m.topic, m.payload, now=now)))
        else:
            received = datetime.fromtimestamp(m.received_at, UTC)
            out.extend((m, r) for r in adapter.adapt(m.topic, m.payload, received))
    return out


def _rows(batch: StoreBatch, msg: Message, received: datetime, worker: int) -> None:
    key = (msg.device_id, msg.ts, msg.seq)
    batch.messages.append((*key, msg.channel, received, worker))
    if isinstance(msg, Telemetry):
        for name, value in msg.metrics.items():
            batch.readings.append((*key, name, value))
        if msg.acc_g is not None and msg.rate_hz is not None:
            gyro = None if msg.gyro_dps is None else np.ascontiguousarray(msg.gyro_dps, "<f4").tobytes()
            acc = np.ascontiguousarray(msg.acc_g, "<f4").tobytes()
            batch.waveforms.append((*key, msg.rate_hz, msg.n_samples, acc, gyro))
    elif isinstance(msg, Event):
        batch.events.append((*key, msg.event, None if msg.detail is None else Jsonb(dict(msg.detail))))
    elif isinstance(msg, Status):
        batch.statuses.append((*key, msg.state, msg.fw, msg.heartbeat_s))


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _json_safe(value: object) -> object:
    """JSON has no NaN or infinity (and PostgreSQL refuses them): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def add_findings(batch: StoreBatch, output: Output) -> None:
    """Rows for what the detectors found (see ``hub.detectors.engine``)."""
    for f in output.found:
        d = f.detection
        window = d.window or (None, None)
        row: DetectionRow = (
            d.key,
            d.kind,
            d.level,
            _utc(d.t),
            d.subject,
            f.facility_id,
            f.room_id,
            f.resident_id,
            d.device_id,
            d.confidence,
            None if window[0] is None else _utc(window[0]),
            None if window[1] is None else _utc(window[1]),
            Jsonb(_json_safe(dict(d.detail))),
        )
        batch.detections.append(row)
    for h in output.health:
        record: HealthRecord = (
            h.device_id,
            h.online,
            _utc(h.since),
            None if h.last_seen is None else _utc(h.last_seen),
            h.battery_low,
            h.tamper,
            h.fault,
            None if h.fault_since is None else _utc(h.fault_since),
            h.stuck,
        )
        batch.health.append(record)
    batch.gaps.extend((g.resident_id, _utc(g.started), g.seconds, g.local_hour) for g in output.gaps)


@dataclass(slots=True)
class Prepared:
    """A decoded, classified batch waiting to be committed and acknowledged."""

    inbound: list[Inbound]
    accepted: list[tuple[Inbound, Message]]
    quarantined: list[tuple[Inbound, str, str | None]]
    positions: dict[str, tuple[int, datetime]]
    redelivered: int
    foreign: int
    gaps: int
    findings: Output | None = None

    def store_batch(self, worker: int) -> StoreBatch:
        batch = StoreBatch()
        if self.findings is not None:
            add_findings(batch, self.findings)
        for raw, msg in self.accepted:
            _rows(batch, msg, datetime.fromtimestamp(raw.received_at, UTC), worker)
        for raw, reason, device_id in self.quarantined:
            batch.quarantine.append(
                (datetime.fromtimestamp(raw.received_at, UTC), raw.topic, device_id, reason, raw.payload)
            )
        return batch


class Ingestor:
    """Turns batches of raw messages into committed rows. Holds per-device sequence state."""

    def __init__(
        self,
        db: Database,
        registry: RegistryCache,
        metrics: HubMetrics,
        *,
        partition: int = 0,
        partitions: int = 1,
        retry_max_s: float = 5.0,
        engine: DetectionEngine | None = None,
        adapters: Adapters | None = None,
    ) -> None:
        self._db = db
        self._adapters = adapters or None
        self._engine = engine
        self._registry = registry
        self._metrics = metrics
        self._partition = partition
        self._partitions = partitions
        self._retry_max_s = retry_max_s
        self._positions: dict[str, tuple[int, datetime]] = {}
        # keys accepted into batches that are prepared but not yet committed
        self._inflight: set[Key] = set()
        self.database_ok = True

    def owns(self, topic: str) -> bool:
        device_id = _topic_device(topic)
        if device_id is None:
            if self._adapters is not None and self._adapters.for_topic(topic) is not None:
                return True  # which device it is for is known once it is mapped (see _mine)
            return self._partition == 0  # garbage topics are quarantined by worker 0 only
        return partition_of(device_id, self._partitions) == self._partition

    def _route(self, topic: str) -> Adapter | None:
        if self._adapters is None or topic.startswith(TOPIC_PREFIX):
            return None
        return self._adapters.for_topic(topic)

    def _mine(self, result: Message | Rejected) -> bool:
        """Whether this worker keeps an adapter's result: the device's owner does, and
        worker 0 quarantines what names no device."""
        if result.device_id is None:
            return self._partition == 0
        return partition_of(result.device_id, self._partitions) == self._partition

    async def prepare(self, inbound: list[Inbound]) -> Prepared:
        owned = [m for m in inbound if self.owns(m.topic)] if self._partitions > 1 else inbound
        started = time.perf_counter()
        routes = [self._route(m.topic) for m in owned]
        aliases: set[AliasKey] = set()
        for m, adapter in zip(owned, routes, strict=True):
            if adapter is not None:
                aliases.update(adapter.keys(m.topic))
        if aliases:
            await self._retrying(lambda: self._registry.resolve_aliases(aliases))
        decoded = await asyncio.to_thread(_decode_all, owned, routes) if owned else []
        decoded_at = time.perf_counter()
        self._metrics.stage_seconds.labels("decode").inc(decoded_at - started)
        quarantined: list[tuple[Inbound, str, str | None]] = []
        candidates: list[tuple[Inbound, Message]] = []
        adapted = self._partitions > 1 and any(a is not None for a in routes)
        for raw, result in decoded:
            if adapted and not raw.topic.startswith(TOPIC_PREFIX) and not self._mine(result):
                continue
            if isinstance(result, Rejected):
                quarantined.append((raw, result.reason, result.device_id))
            else:
                candidates.append((raw, result))

        await self._retrying(lambda: self._registry.resolve({m.device_id for _, m in candidates}))
        unseen = list(
            {m.device_id for _, m in candidates if m.seq >= 0 and m.device_id not in self._positions}
        )
        if unseen:
            found = await self._retrying(lambda: self._db.last_positions(unseen))
            self._positions.update(found)

        accepted: list[tuple[Inbound, Message]] = []
        suspects: list[tuple[Inbound, Message, str]] = []
        in_batch: set[Key] = set()
        redelivered = gaps = 0
        positions = self._positions
        for raw, msg in candidates:
            if self._registry.get(msg.device_id) is None:
                quarantined.append((raw, f"unknown device {msg.device_id}", msg.device_id))
                continue
            key = (msg.device_id, msg.ts, msg.seq)
            if key in in_batch or key in self._inflight:
                # delivered again while the first copy is in this batch or one not yet committed
                redelivered += 1
                continue
            last = positions.get(msg.device_id)
            if msg.seq < 0 or (last is not None and last[0] < 0):
                # No counter to judge by (see the module docstring): new unless stored.
                suspects.append((raw, msg, ""))
                in_batch.add(key)
                if msg.seq >= 0:
                    positions[msg.device_id] = (msg.seq, msg.ts)
                continue
            last_will = isinstance(msg, Status) and msg.state == "offline"
            verdict = classify(msg.seq, msg.ts, last, last_will=last_will)
            if verdict.accept and not verdict.advance:
                # a will that is not newer: new if it is not stored yet (see suspects below)
                suspects.append((raw, msg, ""))
                in_batch.add(key)
            elif verdict.accept:
                accepted.append((raw, msg))
                in_batch.add(key)
                if verdict.advance:
                    positions[msg.device_id] = (msg.seq, msg.ts)
                gaps += verdict.gap
            elif verdict.suspect:
                suspects.append((raw, msg, verdict.reason))
            else:
                quarantined.append((raw, verdict.reason, msg.device_id))
        self._inflight.update(in_batch)
        if suspects:
            keys = [(m.device_id, m.ts, m.seq) for _, m, _ in suspects]
            stored = await self._retrying(lambda: self._db.existing(keys))
            late = False
            for raw, msg, reason in suspects:
                if (msg.device_id, msg.ts, msg.seq) in stored:
                    redelivered += 1
                elif not reason:  # a last will, or an unsequenced message, seen for the first time
                    accepted.append((raw, msg))
                    late = True
                else:
                    quarantined.append((raw, reason, msg.device_id))
            if late:
                # Back in the order the values came: arrival, and within one foreign message the
                # order its adapter gave (a will before a reconnect's "online" stays before it; a
                # detector's test before the smoke alarm it causes).
                order = {id(m): i for i, (_, m) in enumerate(candidates)}
                accepted.sort(key=lambda item: order[id(item[1])])
        classified_at = time.perf_counter()
        self._metrics.stage_seconds.labels("classify").inc(classified_at - decoded_at)
        findings = None
        if self._engine is not None and accepted:
            items = [(m, raw.received_at) for raw, m in accepted]
            findings = await asyncio.to_thread(self._engine.feed, items)
            self._metrics.stage_seconds.labels("detect").inc(time.perf_counter() - classified_at)
        return Prepared(
            inbound=inbound,
            accepted=accepted,
            quarantined=quarantined,
            positions=positions,
            redelivered=redelivered,
            foreign=len(inbound) - len(owned),
            gaps=gaps,
            findings=findings,
        )

    async def commit(self, prepared: Prepared, stop: asyncio.Event | None = None) -> WriteResult | None:
        """Write a prepared batch, retrying while the database is away.

        Returns None only if ``stop`` was set before the batch could be written; the caller
        must then not acknowledge it (the broker will redeliver it).
        """
        try:
            return await self._commit(prepared, stop)
        finally:
            self._inflight.difference_update((m.device_id, m.ts, m.seq) for _, m in prepared.accepted)

    async def _commit(self, prepared: Prepared, stop: asyncio.Event | None) -> WriteResult | None:
        started = time.perf_counter()
        batch = prepared.store_batch(self._partition)
        self._metrics.stage_seconds.labels("rows").inc(time.perf_counter() - started)
        started = time.perf_counter()
        delay = 0.1
        while True:
            try:
                result = await self._db.write(batch)
            except StorageUnavailable as exc:
                if self.database_ok:
                    log.warning("database unavailable, holding %d messages: %s", len(prepared.inbound), exc)
                self.database_ok = False
                self._metrics.db_up.set(0)
                if stop is not None and stop.is_set():
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            except psycopg.Error:
                # Something in the batch that validation let through was refused by the
                # database. Write message by message and quarantine what is refused, so that
                # one bad message cannot block the stream.
                log.exception("batch refused by the database; isolating the bad messages")
                result = await self._commit_one_by_one(prepared)
            break
        self._metrics.stage_seconds.labels("write").inc(time.perf_counter() - started)
        if not self.database_ok:
            log.info("database is back")
        self.database_ok = True
        self._metrics.db_up.set(1)
        self._metrics.record(prepared, result)
        return result

    async def _commit_one_by_one(self, prepared: Prepared) -> WriteResult:
        stored = redelivered = 0
        extra: list[tuple[Inbound, str, str | None]] = []
        for raw, msg in prepared.accepted:
            single = Prepared([raw], [(raw, msg)], [], prepared.positions, 0, 0, 0)
            try:
                res = await self._db.write(single.store_batch(self._partition))
            except psycopg.Error as exc:
                extra.append((raw, f"rejected by the database: {str(exc)[:200]}", msg.device_id))
                continue
            stored += res.stored
            redelivered += res.redelivered
        rest = Prepared([], [], prepared.quarantined + extra, prepared.positions, 0, 0, 0, prepared.findings)
        try:
            await self._db.write(rest.store_batch(self._partition))
        except psycopg.Error:
            # The detections themselves were refused: keep the quarantine records and the
            # stream going rather than crash on a batch that would be redelivered forever.
            log.exception("the database refused this batch's detections; they are dropped")
            rest.findings = None
            await self._db.write(rest.store_batch(self._partition))
        prepared.quarantined = rest.quarantined
        return WriteResult(stored, redelivered, len(rest.quarantined), staged=True)

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a read that needs the database, waiting out outages."""
        delay = 0.1
        while True:
            try:
                return await op()
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                if self.database_ok:
                    log.warning("database unavailable: %s", exc)
                self.database_ok = False
                self._metrics.db_up.set(0)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
