"""The simulation engine: every device its own MQTT connection, publishing at its real rate.

Each device is a paho client driven by the asyncio loop (paho's external-loop interface:
``loop_read``/``loop_write``/``loop_misc`` on socket callbacks), so a process holds
thousands of connections with one file descriptor each and no threads. Devices connect
with a retained ``online`` status and a last will that says ``offline``.

Simulated time runs ``speed`` times faster than the wall clock and is placed so that it
never runs ahead of the wall clock (the hub refuses timestamps from the future).
Above ``MAX_DEVICES_PER_PROCESS`` devices, or with ``processes`` > 1, the fleet is split by
facility across processes, so that one room's devices always share one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import multiprocessing as mp
import queue
import resource
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.mqtt import MqttEndpoint
from simulators.fleet import Fleet, SimDevice
from simulators.scenario import GroundTruth, Incident, Scenario
from simulators.signals import SMOKE_ALARM_PCT_M, BedModel, Nuisance, RoomFire, WearableModel

log = logging.getLogger(__name__)

MAX_DEVICES_PER_PROCESS = 12_000
SHANGHAI = timezone(timedelta(hours=8))
GAS_ALARM_LEL = 10.0  # typical first alarm level of a domestic gas detector, % LEL


@dataclass
class _Device:
    spec: SimDevice
    rng: np.random.Generator
    client: paho.Client | None = None
    seq: int = 0
    battery: float = 100.0
    drain_per_s: float = 0.0
    silent: bool = False
    held: tuple[str, bytes] | None = None
    hold_next: bool = False
    last: tuple[str, bytes] | None = None
    wearable: WearableModel | None = None
    bed: BedModel | None = None
    latched: bool = False
    gas_alarmed: bool = False
    leak: bool = False
    ticks: int = 0
    reported: dict[str, float] = field(default_factory=dict)


@dataclass
class _Room:
    sources: list[RoomFire | Nuisance] = field(default_factory=list)
    gas_start: float | None = None
    gas_minutes: float = 10.0

    def air(self, t: float) -> dict[str, float]:
        temp, smoke, co = 22.0, 0.0, 0.0
        for src in self.sources:
            s = src.sample(t)
            temp = max(temp, s["temp_c"])
            smoke = min(100.0, smoke + s["smoke_density_pct_m"])
            co = min(10_000.0, co + s["co_ppm"])
        return {"temp_c": temp, "smoke_density_pct_m": smoke, "co_ppm": co}

    def gas_lel(self, t: float) -> float:
        if self.gas_start is None or t < self.gas_start:
            return 0.0
        return min(40.0, 30.0 * (t - self.gas_start) / (self.gas_minutes * 60.0))


@dataclass
class SimStats:
    published: int = 0
    connected: int = 0
    incidents: int = 0
    sim_seconds: float = 0.0


class Simulation:
    """Runs a fleet (or one process's share of it) against a broker."""

    def __init__(
        self,
        devices: Sequence[SimDevice],
        endpoint: MqttEndpoint,
        *,
        incidents: Sequence[Incident] = (),
        duration_s: float,
        speed: float = 1.0,
        seed: int = 0,
        start_epoch: float | None = None,
        truth: GroundTruth | None = None,
        client_prefix: str = "sim",
        on_progress: Callable[[SimStats], None] | None = None,
        wearable_rate_hz: int = 50,
        in_bed: tuple[float, float] | None = None,
    ) -> None:
        self._devices = [
            _Device(d, np.random.default_rng(zlib.crc32(f"{seed}:{d.id}".encode()))) for d in devices
        ]
        self._by_id = {d.spec.id: d for d in self._devices}
        self._endpoint = endpoint
        self._incidents = sorted(incidents, key=lambda i: i.at)
        self._duration = duration_s
        self._speed = speed
        self._truth = truth or GroundTruth(None)
        self._prefix = client_prefix
        self._on_progress = on_progress
        self._rate_hz = wearable_rate_hz
        now = time.time()
        # the simulated clock ends no later than the wall clock
        self.start_epoch = start_epoch if start_epoch is not None else now - duration_s + duration_s / speed
        self.stats = SimStats()
        self._rooms: dict[str, _Room] = {}
        for dev in self._devices:
            if dev.spec.kind == "wearable":
                dev.wearable = WearableModel(dev.spec.placement or "waist", dev.rng, wearable_rate_hz)  # type: ignore[arg-type]
            elif dev.spec.kind == "bed_sensor":
                dev.bed = BedModel(
                    dev.rng, hr_base=float(dev.rng.uniform(58, 82)), rr_base=float(dev.rng.uniform(12, 18))
                )
                if in_bed is not None:  # (from, until) in seconds of the local day
                    dev.bed.in_bed_from, dev.bed.in_bed_until = in_bed
            dev.battery = float(dev.rng.uniform(60, 100))
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- time -------------------------------------------------------------------------

    def epoch(self, t: float) -> float:
        return self.start_epoch + t

    def _ts(self, t: float) -> int:
        return int(self.epoch(t) * 1000)

    def _tod(self, t: float) -> float:
        local = datetime.fromtimestamp(self.epoch(t), SHANGHAI)
        return local.hour * 3600 + local.minute * 60 + local.second

    # -- connections ------------------------------------------------------------------

    def _client(self, dev: _Device) -> paho.Client:
        loop = self._loop
        assert loop is not None  # noqa: S101
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{self._prefix}-{dev.spec.id}", protocol=paho.MQTTv5
        )
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(2000)
        self._endpoint.configure(client)
        status_topic = f"ankang/v1/{dev.spec.id}/status"
        client.will_set(
            status_topic, orjson.dumps({"ts": self._ts(0), "seq": 0, "state": "offline"}), qos=1, retain=True
        )

        def on_close(_c: paho.Client, _u: Any, sock: Any) -> None:
            loop.remove_reader(sock)

        def on_unregister_write(_c: paho.Client, _u: Any, sock: Any) -> None:
            loop.remove_writer(sock)

        client.on_socket_open = lambda c, _u, sock: loop.add_reader(sock, c.loop_read)
        client.on_socket_close = on_close
        client.on_socket_register_write = lambda c, _u, sock: loop.add_writer(sock, c.loop_write)
        client.on_socket_unregister_write = on_unregister_write
        client.on_connect = lambda *_a: self._online(dev)
        return client

    def _connect(self, dev: _Device) -> None:
        client = dev.client or self._client(dev)
        dev.client = client
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        try:
            client.connect(
                self._endpoint.host, self._endpoint.port, keepalive=60, clean_start=True, properties=props
            )
        except OSError as exc:
            log.warning("device %s could not connect: %s", dev.spec.id, exc)

    def _online(self, dev: _Device) -> None:
        self.stats.connected += 1
        payload = {
            "ts": self._ts(self._now()),
            "seq": self._next_seq(dev),
            "state": "online",
            "fw": "1.4.2",
            "heartbeat_s": dev.spec.heartbeat_s,
        }
        self._send(dev, f"ankang/v1/{dev.spec.id}/status", orjson.dumps(payload), retain=True)

    def _next_seq(self, dev: _Device) -> int:
        dev.seq += 1
        return dev.seq

    def _send(self, dev: _Device, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if dev.client is None or dev.silent:
            return
        if dev.hold_next and not retain:
            dev.hold_next = False
            dev.held = (topic, payload)
            return
        dev.client.publish(topic, payload, qos=1, retain=retain)
        self.stats.published += 1
        dev.last = (topic, payload)
        if dev.held is not None:
            held, dev.held = dev.held, None
            dev.client.publish(*held, qos=1)
            self.stats.published += 1

    # -- signals ----------------------------------------------------------------------

    def _tick(self, dev: _Device, t: float) -> None:
        kind = dev.spec.kind
        dev.battery = max(0.0, dev.battery - dev.drain_per_s * dev.spec.period_s - 1e-6 * dev.spec.period_s)
        topic = f"ankang/v1/{dev.spec.id}/telemetry"
        base: dict[str, Any] = {"ts": self._ts(t)}
        if kind == "wearable":
            assert dev.wearable is not None  # noqa: S101
            block = np.round(dev.wearable.block(t, dev.spec.period_s), 3)
            base.update(
                rate_hz=self._rate_hz,
                acc_g=block,
                metrics={
                    "hr_bpm": round(float(dev.rng.normal(74, 3)), 1),
                    "battery_pct": round(dev.battery, 1),
                },
            )
        elif kind == "bed_sensor":
            assert dev.bed is not None  # noqa: S101
            base["metrics"] = dev.bed.sample(self._tod(t))
        elif kind == "smoke_detector":
            air = self._room(dev).air(t)
            # a thermistor reads with a little noise; a value that never moves is a stuck sensor
            air["temp_c"] += float(dev.rng.normal(0.0, 0.05))
            smoke = air["smoke_density_pct_m"]
            if not dev.latched and smoke >= SMOKE_ALARM_PCT_M:
                dev.latched = True
                self._event(dev, t, "smoke_alarm", {"obscuration_pct_m": round(smoke, 2)})
            elif dev.latched and smoke < SMOKE_ALARM_PCT_M / 2:
                dev.latched = False
                self._event(dev, t, "smoke_alarm_cleared")
            metrics = {**{k: round(v, 2) for k, v in air.items()}, "smoke": int(dev.latched)}
            if not self._report_due(
                dev, metrics, {"temp_c": 1.0, "smoke_density_pct_m": 0.5, "co_ppm": 5.0, "smoke": 0.5}
            ):
                return
            base["metrics"] = {**metrics, "battery_pct": round(dev.battery, 1)}
        elif kind == "gas_detector":
            lel = self._room(dev).gas_lel(t)
            if not dev.gas_alarmed and lel >= GAS_ALARM_LEL:
                dev.gas_alarmed = True
                self._event(dev, t, "gas_alarm", {"lel_pct": round(lel, 1)})
            if not self._report_due(dev, {"gas_lel_pct": round(lel, 2)}, {"gas_lel_pct": 1.0}):
                return
            base["metrics"] = {"gas_lel_pct": round(lel, 2), "battery_pct": round(dev.battery, 1)}
        elif kind == "water_leak":
            base["metrics"] = {"water_leak": int(dev.leak), "battery_pct": round(dev.battery, 1)}
        elif kind == "door_contact":
            base["metrics"] = {"contact": 1, "battery_pct": round(dev.battery, 1)}
        else:
            base["metrics"] = {"battery_pct": round(dev.battery, 1)}
        base["seq"] = self._next_seq(dev)  # after any event raised above, so seqs stay in order
        self._send(dev, topic, orjson.dumps(base, option=orjson.OPT_SERIALIZE_NUMPY))

    @staticmethod
    def _report_due(dev: _Device, values: dict[str, float], deltas: dict[str, float]) -> bool:
        """Detectors sample often but report on a significant change, or every sixth sample."""
        dev.ticks += 1
        changed = any(abs(values[k] - dev.reported.get(k, 0.0)) >= d for k, d in deltas.items())
        if changed or dev.ticks % 6 == 1:
            dev.reported = dict(values)
            return True
        return False

    def _event(self, dev: _Device, t: float, name: str, detail: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"ts": self._ts(t), "seq": self._next_seq(dev), "event": name}
        if detail:
            body["detail"] = detail
        self._send(dev, f"ankang/v1/{dev.spec.id}/event", orjson.dumps(body))

    def _room(self, dev: _Device) -> _Room:
        return self._rooms.setdefault(f"{dev.spec.facility}/{dev.spec.room}", _Room())

    # -- incidents --------------------------------------------------------------------

    def _targets(self, inc: Incident, kind: str | None = None) -> list[_Device]:
        if inc.device:
            dev = self._by_id.get(inc.device)
            return [dev] if dev else []
        if inc.resident:
            return [
                d
                for d in self._devices
                if d.spec.resident == inc.resident and (kind is None or d.spec.kind == kind)
            ]
        if inc.room:
            return [
                d
                for d in self._devices
                if f"{d.spec.facility}/{d.spec.room}" == inc.room and (kind is None or d.spec.kind == kind)
            ]
        return []

    def owns(self, inc: Incident) -> bool:
        if inc.kind in ("fire", "cooking", "steam", "gas_leak") and inc.room:
            return any(f"{d.spec.facility}/{d.spec.room}" == inc.room for d in self._devices)
        return bool(self._targets(inc))

    def keep_own_incidents(self) -> None:
        """Drop incidents aimed at devices or rooms that another process simulates."""
        self._incidents = [i for i in self._incidents if self.owns(i)]

    def _prepare(self) -> None:
        for inc in self._incidents:
            if inc.kind == "fall":
                for dev in self._targets(inc, "wearable"):
                    assert dev.wearable is not None  # noqa: S101
                    dev.wearable.schedule_fall(inc.fall, inc.at)
            elif inc.kind == "bed_exit":
                for dev in self._targets(inc, "bed_sensor"):
                    assert dev.bed is not None  # noqa: S101
                    start = self._tod(inc.at)
                    dev.bed.exits.append((start, start + inc.minutes * 60))

    def _apply(self, inc: Incident) -> None:
        t = inc.at
        record: dict[str, Any] = {"kind": inc.kind, "t": self.epoch(t), "time": _iso(self.epoch(t))}
        if inc.kind == "fall":
            for dev in self._targets(inc, "wearable"):
                assert dev.wearable is not None  # noqa: S101
                fall = next(f for f in dev.wearable.falls if abs(f.start - t) < 1e-6)
                record.update(
                    device=dev.spec.id,
                    resident=dev.spec.resident,
                    fall=fall.kind,
                    placement=dev.spec.placement,
                    impact=self.epoch(fall.impact),
                    impact_time=_iso(self.epoch(fall.impact)),
                    peak_g=round(fall.peak_g, 2),
                )
        elif inc.kind in ("fire", "cooking", "steam", "gas_leak"):
            if not inc.room:
                return
            room = self._rooms.setdefault(inc.room, _Room())
            if inc.kind == "fire":
                room.sources.append(RoomFire(ignition=t, growth=inc.growth))
                record["growth"] = inc.growth
            elif inc.kind == "gas_leak":
                room.gas_start, room.gas_minutes = t, inc.minutes
            else:
                room.sources.append(Nuisance(start=t, kind=inc.kind, duration_s=inc.minutes * 60))
            record["room"] = inc.room
        elif inc.kind == "bed_exit":
            devs = self._targets(inc, "bed_sensor")
            record.update(resident=inc.resident, devices=[d.spec.id for d in devs], minutes=inc.minutes)
        else:
            devs = self._targets(inc, "sos_button" if inc.kind == "sos" else None)
            if inc.kind == "sos":
                devs = devs[:1]
            record["devices"] = [d.spec.id for d in devs]
            for dev in devs:
                self._failure(dev, inc, t)
        self.stats.incidents += 1
        self._truth.write(record)

    def _failure(self, dev: _Device, inc: Incident, t: float) -> None:
        client = dev.client
        if inc.kind == "sos":
            self._event(dev, t, "sos_pressed")
        elif inc.kind == "test":
            self._event(dev, t, "test")
        elif inc.kind == "water_leak":
            dev.leak = True
            self._event(dev, t, "water_leak")
        elif inc.kind == "battery_drain":
            dev.drain_per_s = 1.0 / 60.0  # one percent a minute
            dev.battery = min(dev.battery, 15.0)
        elif inc.kind == "garbage":
            for i in range(inc.count):
                junk = [b"{not json", b'{"ts": "yesterday", "seq": 1}', b"\x00\xff" * 8, b'{"seq": -1}'][
                    i % 4
                ]
                if client is not None:
                    client.publish(f"ankang/v1/{dev.spec.id}/telemetry", junk, qos=1)
                    self.stats.published += 1
        elif inc.kind == "duplicate" and dev.last is not None and client is not None:
            for _ in range(inc.count):
                client.publish(*dev.last, qos=1)
                self.stats.published += 1
        elif inc.kind == "out_of_order":
            dev.hold_next = True
        elif inc.kind == "offline" and client is not None:
            dev.silent = True  # a clean DISCONNECT: the broker sends no last will
            client.disconnect()
        elif inc.kind == "power_loss" and client is not None:
            dev.silent = True  # MQTT 5 reason 0x04: disconnect and have the broker send the will
            client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
        elif inc.kind == "reconnect" and client is not None and self._loop is not None:
            client.disconnect()
            delay = inc.minutes * 60 / self._speed
            self._loop.call_later(delay, self._connect, dev)

    # -- run --------------------------------------------------------------------------

    def _now(self) -> float:
        return (time.monotonic() - self._wall0) * self._speed

    async def run(self) -> SimStats:
        self._loop = asyncio.get_running_loop()
        _raise_fd_limit(len(self._devices) + 256)
        self._prepare()
        self._wall0 = time.monotonic()
        for i, dev in enumerate(self._devices):
            self._connect(dev)
            if i % 200 == 199:
                await asyncio.sleep(0)  # let CONNACKs in; about 10,000 connections take a few seconds
        self._wall0 = time.monotonic()
        heap: list[tuple[float, int]] = []
        for i, dev in enumerate(self._devices):
            heapq.heappush(heap, (float(dev.rng.uniform(0, min(dev.spec.period_s, 5.0))), i))
        incidents = list(self._incidents)
        misc = asyncio.create_task(self._misc(), name="sim.misc")
        try:
            while True:
                now = self._now()
                self.stats.sim_seconds = min(now, self._duration)
                if now >= self._duration:
                    break
                while incidents and incidents[0].at <= now:
                    self._apply(incidents.pop(0))
                while heap and heap[0][0] <= now:
                    due, i = heapq.heappop(heap)
                    dev = self._devices[i]
                    if not dev.silent:
                        self._tick(dev, due)
                    heapq.heappush(heap, (due + dev.spec.period_s, i))
                if self._on_progress:
                    self._on_progress(self.stats)
                nxt = min(
                    heap[0][0] if heap else self._duration,
                    incidents[0].at if incidents else self._duration,
                    self._duration,
                )
                await asyncio.sleep(max(0.0, min((nxt - self._now()) / self._speed, 0.25)))
            await self._flush()
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc
            for dev in self._devices:
                if dev.client is not None and not dev.silent:
                    dev.client.disconnect()
            await asyncio.sleep(0.2)
        return self.stats

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for dev in self._devices:
                if dev.client is not None:
                    dev.client.loop_misc()

    async def _flush(self, timeout: float = 30.0) -> None:
        """Wait until every device's QoS 1 messages are acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = sum(len(d.client._out_messages) for d in self._devices if d.client is not None)
            if pending == 0:
                return
            await asyncio.sleep(0.1)
        log.warning("some messages were not acknowledged within %g s", timeout)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(max(wanted, soft), hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- several processes ----------------------------------------------------------------


def _shards(fleet: Fleet, processes: int) -> list[list[SimDevice]]:
    """Split by facility, so that a room's devices share a process."""
    by_fac: dict[str, list[SimDevice]] = {}
    for d in fleet.devices:
        by_fac.setdefault(d.facility, []).append(d)
    shards: list[list[SimDevice]] = [[] for _ in range(processes)]
    for devs in sorted(by_fac.values(), key=len, reverse=True):
        min(shards, key=len).extend(devs)
    return [s for s in shards if s]


def _worker(args: tuple[Any, ...], out: Any) -> None:
    devices, endpoint, incidents, duration, speed, seed, start_epoch, truth_path, prefix, rate, counter = args

    def progress(stats: SimStats) -> None:
        counter.value = stats.published

    sim = Simulation(
        devices,
        endpoint,
        incidents=incidents,
        duration_s=duration,
        speed=speed,
        seed=seed,
        start_epoch=start_epoch,
        truth=GroundTruth(truth_path),
        client_prefix=prefix,
        wearable_rate_hz=rate,
        on_progress=progress,
    )
    sim.keep_own_incidents()
    stats = asyncio.run(sim.run())
    out.put({"published": stats.published, "connected": stats.connected, "incidents": stats.incidents})


def run_scenario(
    scenario: Scenario,
    fleet: Fleet,
    endpoint: MqttEndpoint,
    *,
    speed: float,
    truth_path: Path | None,
    processes: int = 0,
    on_progress: Callable[[float, int], None] | None = None,
) -> dict[str, Any]:
    """Run a scenario, in one process or several; returns totals and the ground truth."""
    n = processes or max(1, math.ceil(len(fleet.devices) / MAX_DEVICES_PER_PROCESS))
    start_epoch = time.time() - scenario.duration + scenario.duration / speed
    if n == 1:
        truth = GroundTruth(truth_path)
        wall0 = time.monotonic()
        sim = Simulation(
            fleet.devices,
            endpoint,
            incidents=scenario.incidents,
            duration_s=scenario.duration,
            speed=speed,
            seed=scenario.seed,
            start_epoch=start_epoch,
            truth=truth,
            wearable_rate_hz=fleet.spec.wearable_rate_hz,
            on_progress=(lambda s: on_progress(s.sim_seconds, s.published)) if on_progress else None,
        )
        stats = asyncio.run(sim.run())
        return {
            "published": stats.published,
            "connected": stats.connected,
            "incidents": stats.incidents,
            "processes": 1,
            "wall_s": time.monotonic() - wall0,
            "truth": truth.records,
        }
    ctx = mp.get_context("spawn")
    shards = _shards(fleet, n)
    counters = [ctx.Value("q", 0) for _ in shards]
    parts = [
        None if truth_path is None else truth_path.with_suffix(f".part{k}.jsonl") for k in range(len(shards))
    ]
    jobs = [
        (
            shard,
            endpoint,
            list(scenario.incidents),
            scenario.duration,
            speed,
            scenario.seed,
            start_epoch,
            parts[k],
            f"sim{k}",
            fleet.spec.wearable_rate_hz,
            counters[k],
        )
        for k, shard in enumerate(shards)
    ]
    wall0 = time.monotonic()
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, out), name=f"sim-{k}") for k, job in enumerate(jobs)]
    for proc in procs:
        proc.start()
    results: list[dict[str, Any]] = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.5))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and out.empty():
                raise RuntimeError("a simulator process died") from None
        if on_progress:
            elapsed = (time.monotonic() - wall0) * speed
            on_progress(min(elapsed, scenario.duration), sum(int(c.value) for c in counters))
    for proc in procs:
        proc.join(30)
    records: list[dict[str, Any]] = []
    for part in parts:
        if part is not None and part.exists():
            records += [orjson.loads(line) for line in part.read_bytes().splitlines() if line.strip()]
            part.unlink()
    records.sort(key=lambda r: r["t"])
    if truth_path is not None:
        truth_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return {
        "published": sum(r["published"] for r in results),
        "connected": sum(r["connected"] for r in results),
        "incidents": len(records),
        "processes": len(jobs),
        "wall_s": time.monotonic() - wall0,
        "truth": records,
    }
