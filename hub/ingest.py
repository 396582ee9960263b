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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import numpy as np
import orjson
import psycopg
from psycopg.types.json import Jsonb

from devices import Event, Message, Rejected, Status, Telemetry, decode
from devices.adapters import Adapter, Adapters, AliasKey
from devices.contract import TOPIC_PREFIX, QuarantineKind, is_device_input, printable
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import (
    Database,
    DetectionRow,
    HealthRecord,
    Key,
    StorageUnavailable,
    StoreBatch,
    WriteResult,
    dead_letter_row,
    quarantine_row,
)

if TYPE_CHECKING:  # the engine pulls in numpy models; ingest itself needs only the types
    from hub.detectors.base import Found
    from hub.detectors.engine import DetectionEngine, Output

log = logging.getLogger(__name__)
T = TypeVar("T")


Lane = Literal["all", "bulk", "urgent"]
# Which channels each lane judges sequence numbers by (docs/devices.md, "Lanes"): a device that
# shares one counter across its telemetry and its events shows gaps in each lane, never an
# out-of-order message because the other lane got ahead.
LANE_CHANNELS: Final[dict[Lane, tuple[str, ...] | None]] = {
    "all": None,
    "bulk": ("telemetry",),
    "urgent": ("event", "status"),
}
URGENT_CHANNELS: Final = frozenset({"event", "status"})


def is_urgent_topic(topic: str) -> bool:
    """A native event or status topic: small, urgent, never behind bulk telemetry."""
    if not topic.startswith(TOPIC_PREFIX):
        return False
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    return len(parts) == 2 and parts[1] in URGENT_CHANNELS


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
    add_found(batch, output.found)
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


def add_found(batch: StoreBatch, found: Sequence[Found]) -> None:
    """Detection rows, each with the registry context it concerns."""
    for f in found:
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


# A message whose handling raised this many times is acknowledged into dead_letters.
MAX_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message set aside with a reason. ``message`` is kept for sequence verdicts, which
    a neighbour refused by the database can change (see ``Ingestor._commit_one_by_one``)."""

    raw: Inbound
    reason: str
    device_id: str | None
    kind: QuarantineKind
    message: Message | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the hub could not handle after ``attempts`` tries."""

    raw: Inbound
    stage: str
    attempts: int
    reason: str
    device_id: str | None = None


@dataclass(slots=True)
class Prepared:
    """A decoded, classified batch waiting to be committed and acknowledged.

    ``advances`` holds the position each device reaches if the batch commits; positions
    move only when it has (``Ingestor.commit``).
    """

    inbound: list[Inbound]
    accepted: list[tuple[Inbound, Message]]
    quarantined: list[Quarantined]
    advances: dict[str, tuple[int, datetime]]
    redelivered: int
    foreign: int
    gaps: int
    findings: Output | None = None
    dead: list[DeadLetter] = field(default_factory=list)
    # keys of accepted messages that move their device's position, in arrival order
    advancing: list[Key] = field(default_factory=list)

    def store_batch(self, worker: int) -> StoreBatch:
        batch = StoreBatch()
        if self.findings is not None:
            add_findings(batch, self.findings)
        for raw, msg in self.accepted:
            _rows(batch, msg, datetime.fromtimestamp(raw.received_at, UTC), worker)
        for q in self.quarantined:
            batch.quarantine.append(
                quarantine_row(
                    _utc(q.raw.received_at), q.raw.topic, q.device_id, q.reason, q.raw.payload, q.kind
                )
            )
        for d in self.dead:
            batch.dead_letters.append(
                dead_letter_row(
                    _utc(d.raw.received_at),
                    d.raw.topic,
                    d.device_id,
                    d.stage,
                    d.attempts,
                    d.reason,
                    d.raw.payload,
                )
            )
        return batch


def _why(exc: BaseException) -> str:
    """An exception as a reason: its type and first line, printable and short."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 300)


class Ingestor:
    """Turns batches of raw messages into committed rows. Holds per-device sequence state.

    Positions: ``_positions`` is what the database holds (newest committed per device);
    ``_tentative`` what batches prepared and not yet committed will make of it. The next
    batch is judged against the tentative position, so a pipelined batch sees its
    predecessor; only a commit moves ``_positions``.
    """

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
        lane: Lane = "all",
    ) -> None:
        self._db = db
        self.lane: Lane = lane
        self._channels = LANE_CHANNELS[lane]
        # the hub's receive time of the newest message this lane has prepared
        self.heard = 0.0
        self._adapters = adapters or None
        self._engine = engine
        self._registry = registry
        self._metrics = metrics
        self._partition = partition
        self._partitions = partitions
        self._retry_max_s = retry_max_s
        self._positions: dict[str, tuple[int, datetime]] = {}
        self._tentative: dict[str, tuple[int, datetime]] = {}
        # keys accepted into batches that are prepared but not yet committed
        self._inflight: set[Key] = set()
        # devices whose tentative position a refusal took back, until the batches prepared
        # against it are committed: their sequence verdicts are judged again (see commit)
        self._misjudged: set[str] = set()
        self.database_ok = True

    def position(self, device_id: str) -> tuple[int, datetime] | None:
        """The device's newest committed (seq, ts), as far as this worker has seen."""
        return self._positions.get(device_id)

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

    async def prepare_isolated(self, inbound: list[Inbound]) -> list[Prepared]:
        """Prepare a batch whose ``prepare`` raised: message by message, each tried up to
        ``MAX_ATTEMPTS`` times, so one message that cannot be handled is dead-lettered and
        acknowledged instead of stopping the hub or being redelivered forever."""
        out: list[Prepared] = []
        for raw in inbound:
            error: BaseException | None = None
            for _attempt in range(MAX_ATTEMPTS):
                try:
                    out.append(await self.prepare([raw]))
                except Exception as exc:  # noqa: BLE001 - isolating it is the point
                    error = exc
                    continue
                error = None
                break
            if error is not None:
                log.error(
                    "dead-lettered a message on %s after %d tries: %s",
                    printable(raw.topic, 200),
                    MAX_ATTEMPTS,
                    _why(error),
                )
                device_id = _topic_device(raw.topic)
                letter = DeadLetter(raw, "prepare", MAX_ATTEMPTS, _why(error), device_id)
                out.append(Prepared([raw], [], [], {}, 0, 0, 0, dead=[letter]))
        return out

    async def prepare(self, inbound: list[Inbound]) -> Prepared:
        """Decode, classify and run the detectors over one batch.

        Nothing of this worker's state changes unless it returns: a ``prepare`` that raised
        can be tried again with the same messages (``prepare_isolated``).
        """
        # Topics that are not this lane's: the alert service's own and the command topics,
        # and in the bulk lane the events and statuses the urgent lane takes (its session
        # receives them too; acknowledged untouched here).
        if self.lane == "bulk":
            service = [m for m in inbound if not is_device_input(m.topic) or is_urgent_topic(m.topic)]
            candidates_in = [m for m in inbound if is_device_input(m.topic) and not is_urgent_topic(m.topic)]
        else:
            service = [m for m in inbound if not is_device_input(m.topic)]
            candidates_in = [m for m in inbound if is_device_input(m.topic)] if service else inbound
        owned = [m for m in candidates_in if self.owns(m.topic)] if self._partitions > 1 else candidates_in
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
        quarantined: list[Quarantined] = []
        candidates: list[tuple[Inbound, Message]] = []
        adapted = self._partitions > 1 and any(a is not None for a in routes)
        for raw, result in decoded:
            if adapted and not raw.topic.startswith(TOPIC_PREFIX) and not self._mine(result):
                continue
            if isinstance(result, Rejected):
                kind = result.kind or QuarantineKind.CONTRACT
                quarantined.append(Quarantined(raw, result.reason, result.device_id, kind))
            else:
                candidates.append((raw, result))

        await self._retrying(lambda: self._registry.resolve({m.device_id for _, m in candidates}))
        unseen = list(
            {m.device_id for _, m in candidates if m.seq >= 0 and m.device_id not in self._positions}
        )
        if unseen:
            found = await self._retrying(lambda: self._db.last_positions(unseen, self._channels))
            self._positions.update(found)  # what the database holds: safe to keep at once

        accepted: list[tuple[Inbound, Message]] = []
        suspects: list[tuple[Inbound, Message, str]] = []
        in_batch: set[Key] = set()
        advances: dict[str, tuple[int, datetime]] = {}
        advancing: list[Key] = []
        redelivered = gaps = 0

        def current(device_id: str) -> tuple[int, datetime] | None:
            return advances.get(device_id) or self._tentative.get(device_id) or self._positions.get(device_id)

        for raw, msg in candidates:
            if self._registry.get(msg.device_id) is None:
                quarantined.append(
                    Quarantined(
                        raw, f"unknown device {msg.device_id}", msg.device_id, QuarantineKind.UNKNOWN_DEVICE
                    )
                )
                continue
            key = (msg.device_id, msg.ts, msg.seq)
            if key in in_batch or key in self._inflight:
                # delivered again while the first copy is in this batch or one not yet committed
                redelivered += 1
                continue
            last = current(msg.device_id)
            if msg.seq < 0 or (last is not None and last[0] < 0):
                # No counter to judge by (see the module docstring): new unless stored.
                suspects.append((raw, msg, ""))
                in_batch.add(key)
                if msg.seq >= 0:
                    advances[msg.device_id] = (msg.seq, msg.ts)
                    advancing.append(key)
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
                advances[msg.device_id] = (msg.seq, msg.ts)
                advancing.append(key)
                gaps += verdict.gap
            elif verdict.suspect:
                suspects.append((raw, msg, verdict.reason))
            else:
                quarantined.append(
                    Quarantined(raw, verdict.reason, msg.device_id, QuarantineKind.SEQUENCE, msg)
                )
        if suspects:
            keys = [(m.device_id, m.ts, m.seq) for _, m, _ in suspects]
            stored = await self._retrying(lambda: self._db.existing(keys))
            late = False
            for raw, msg, reason in suspects:
                if (msg.device_id, msg.ts, msg.seq) in stored:
                    redelivered += 1
                    in_batch.discard((msg.device_id, msg.ts, msg.seq))
                elif not reason:  # a last will, or an unsequenced message, seen for the first time
                    accepted.append((raw, msg))
                    late = True
                else:
                    quarantined.append(Quarantined(raw, reason, msg.device_id, QuarantineKind.SEQUENCE, msg))
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
        # Only now, with nothing left that can fail, does the batch become this worker's.
        self._inflight.update(in_batch)
        self._tentative.update(advances)
        if inbound:
            self.heard = max(self.heard, inbound[-1].received_at)  # arrival order
        return Prepared(
            inbound=inbound,
            accepted=accepted,
            quarantined=quarantined,
            advances=advances,
            redelivered=redelivered,
            foreign=len(candidates_in) - len(owned) + len(service),
            gaps=gaps,
            findings=findings,
            advancing=advancing,
        )

    async def commit(self, prepared: Prepared, stop: asyncio.Event | None = None) -> WriteResult | None:
        """Write a prepared batch, retrying while the database is away.

        Returns None only if ``stop`` was set before the batch could be written; the caller
        must then not acknowledge it (the broker will redeliver it). Anything else that
        goes wrong is isolated to the message, detection or row it concerns: never raises
        for what a batch holds.
        """
        try:
            result = await self._commit(prepared, stop)
        finally:
            self._inflight.difference_update((m.device_id, m.ts, m.seq) for _, m in prepared.accepted)
        if result is not None:
            self._settle(prepared)
        return result

    def _settle(self, prepared: Prepared) -> None:
        """Move positions to what the batch committed."""
        for device_id, position in prepared.advances.items():
            self._positions[device_id] = position
            if self._tentative.get(device_id) == position:
                del self._tentative[device_id]  # no later batch has moved it further

    async def _commit(self, prepared: Prepared, stop: asyncio.Event | None) -> WriteResult | None:
        started = time.perf_counter()
        if self._misjudged:
            await self._rejudge(prepared)
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
            except Exception as exc:  # noqa: BLE001 - refused by the database, or unencodable
                # Something in the batch that validation let through was refused. Write it
                # message by message, and detection by detection, and set aside what is
                # refused, so that one bad message or detection cannot block the stream.
                log.warning("batch refused (%s); isolating what the database refuses", _why(exc))
                try:
                    result = await self._commit_one_by_one(prepared)
                except StorageUnavailable:
                    continue  # the database went away meanwhile: the whole batch again
            break
        self._metrics.stage_seconds.labels("write").inc(time.perf_counter() - started)
        if not self.database_ok:
            log.info("database is back")
        self.database_ok = True
        self._metrics.db_up.set(1)
        self._metrics.record(prepared, result)
        return result

    async def _write_alone(self, batch: StoreBatch) -> BaseException | None:
        """Write one small batch; the error if the database refused it. An outage raises."""
        try:
            await self._db.write(batch)
        except StorageUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller sets the row aside with this reason
            return exc
        return None

    async def _commit_one_by_one(self, prepared: Prepared) -> WriteResult:
        """The slow path after a refused batch. Each accepted message is written alone; a
        refused one is quarantined (kind ``storage``) and does not move its device's
        position, and the sequence verdicts it caused are judged again. Detections, health
        and quiet spells are written one at a time; a refused detection is quarantined
        alone (kind ``detection``). A quarantine record that is itself refused is replaced
        by a minimal one."""
        stored = redelivered = 0
        refused: list[Quarantined] = []
        refused_keys: set[Key] = set()
        for raw, msg in prepared.accepted:
            single = Prepared([raw], [(raw, msg)], [], {}, 0, 0, 0)
            try:
                res = await self._db.write(single.store_batch(self._partition))
            except StorageUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - set aside with the database's reason
                refused.append(
                    Quarantined(
                        raw, f"rejected by the database: {_why(exc)}", msg.device_id, QuarantineKind.STORAGE
                    )
                )
                refused_keys.add((msg.device_id, msg.ts, msg.seq))
                continue
            stored += res.stored
            redelivered += res.redelivered
        if refused_keys:
            prepared.accepted = [
                (r, m) for r, m in prepared.accepted if (m.device_id, m.ts, m.seq) not in refused_keys
            ]
            again = self._take_back(prepared, refused_keys)
            for raw, msg in again:
                single = Prepared([raw], [(raw, msg)], [], {}, 0, 0, 0)
                if await self._write_alone(single.store_batch(self._partition)) is None:
                    prepared.accepted.append((raw, msg))
                    stored += 1
        findings = StoreBatch()
        if prepared.findings is not None:
            add_findings(findings, prepared.findings)
        refused += await self._write_findings_alone(findings)
        rest = Prepared([], [], prepared.quarantined + refused, {}, 0, 0, 0, dead=prepared.dead)
        await self._write_quarantine_alone(rest)
        prepared.quarantined = rest.quarantined
        return WriteResult(stored, redelivered, len(rest.quarantined), staged=True)

    def _take_back(self, prepared: Prepared, refused: set[Key]) -> list[tuple[Inbound, Message]]:
        """Positions without the refused messages; and the messages of this batch that were
        quarantined as out of sequence only because of them, now accepted."""
        devices = {k[0] for k in refused}
        for device_id in devices:
            kept = [k for k in prepared.advancing if k[0] == device_id and k not in refused]
            if kept:
                prepared.advances[device_id] = (kept[-1][2], kept[-1][1])
            else:
                prepared.advances.pop(device_id, None)
            if device_id in self._tentative:
                del self._tentative[device_id]
                self._misjudged.add(device_id)  # a batch already prepared may have judged by it
        position = {d: prepared.advances.get(d) or self._positions.get(d) for d in devices}
        again: list[tuple[Inbound, Message]] = []
        kept_q: list[Quarantined] = []
        for q in prepared.quarantined:
            msg = q.message
            if q.kind is QuarantineKind.SEQUENCE and msg is not None and msg.device_id in devices:
                verdict = classify(msg.seq, msg.ts, position[msg.device_id])
                if verdict.accept:
                    again.append((q.raw, msg))
                    position[msg.device_id] = (msg.seq, msg.ts)
                    prepared.advances[msg.device_id] = (msg.seq, msg.ts)
                    continue
            kept_q.append(q)
        prepared.quarantined = kept_q
        return again

    async def _rejudge(self, prepared: Prepared) -> None:
        """Before committing a batch prepared while a refusal took a position back: its
        sequence verdicts for those devices are judged again against what is committed."""
        devices = {m.device_id for _, m in prepared.accepted} | {
            q.device_id for q in prepared.quarantined if q.device_id
        }
        touched = devices & self._misjudged
        self._misjudged -= devices
        if not touched:
            return
        position = {d: self._positions.get(d) for d in touched}
        for _, m in prepared.accepted:
            if m.device_id in touched and (m.device_id, m.ts, m.seq) in prepared.advancing:
                position[m.device_id] = (m.seq, m.ts)
        kept: list[Quarantined] = []
        for q in prepared.quarantined:
            msg = q.message
            if q.kind is QuarantineKind.SEQUENCE and msg is not None and msg.device_id in touched:
                verdict = classify(msg.seq, msg.ts, position[msg.device_id])
                if verdict.accept:
                    prepared.accepted.append((q.raw, msg))
                    position[msg.device_id] = (msg.seq, msg.ts)
                    prepared.advances[msg.device_id] = (msg.seq, msg.ts)
                    continue
            kept.append(q)
        prepared.quarantined = kept

    async def write_findings_isolated(self, findings: StoreBatch) -> None:
        """Store time-driven findings one by one after the database refused them together;
        refused detections are quarantined alone. An outage raises ``StorageUnavailable``."""
        refused = await self._write_findings_alone(findings)
        if refused:
            await self._write_quarantine_alone(Prepared([], [], refused, {}, 0, 0, 0))

    async def _write_findings_alone(self, findings: StoreBatch) -> list[Quarantined]:
        """Detections, health and quiet spells, each in its own transaction. A refused
        detection becomes a quarantine record of its own; refused health or a refused
        quiet spell is logged (both are derived again from later messages)."""
        if not findings.findings:
            return []
        if await self._write_alone(findings) is None:
            return []
        out: list[Quarantined] = []
        now = time.time()
        for row in findings.detections:
            error = await self._write_alone(StoreBatch(detections=[row]))
            if error is not None:
                key, kind, device_id = row[0], row[1], row[8]
                log.error("detection %s refused by the database: %s", printable(key, 200), _why(error))
                body = orjson.dumps({"key": key, "kind": kind, "subject": row[4], "t": row[3].isoformat()})
                raw = Inbound(f"detection/{kind}", body, 0, 0, now, 0)
                out.append(
                    Quarantined(
                        raw,
                        f"detection refused by the database: {_why(error)}",
                        device_id,
                        QuarantineKind.DETECTION,
                    )
                )
        for health in findings.health:
            error = await self._write_alone(StoreBatch(health=[health]))
            if error is not None:
                log.error("health of %s refused by the database: %s", printable(health[0]), _why(error))
        for gap in findings.gaps:
            error = await self._write_alone(StoreBatch(gaps=[gap]))
            if error is not None:
                log.error("quiet spell of %s refused by the database: %s", printable(gap[0]), _why(error))
        return out

    async def _write_quarantine_alone(self, rest: Prepared) -> None:
        batch = rest.store_batch(self._partition)
        if await self._write_alone(batch) is None:
            return
        for row in batch.quarantine:
            if await self._write_alone(StoreBatch(quarantine=[row])) is None:
                continue
            # The minimal record: nothing of the device's text but an ASCII excerpt of it.
            minimal = (row[0], ascii(row[1])[:300], None, ascii(row[3])[:500], b"", row[5], row[6], row[7])
            error = await self._write_alone(StoreBatch(quarantine=[minimal]))
            if error is not None:
                log.error("a quarantine record was refused even in its minimal form: %s", _why(error))
        for letter in batch.dead_letters:
            error = await self._write_alone(StoreBatch(dead_letters=[letter]))
            if error is not None:
                log.error("a dead letter was refused by the database: %s", _why(error))

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
