"""The alert benchmark's run: the services, the background load, the injections and the summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import psycopg

from api.auth import create_account
from devices import Registry
from devices.mqtt import MqttEndpoint
from devices.registry import parse_facility_yaml
from hub.detectors.health import GRACE
from lab.alertbench.pieces import (
    ADMIN,
    ALARM_TYPE,
    FACILITY,
    FALL_RATE_HZ,
    KINDS,
    QUIET_HEARTBEAT_S,
    TARGETS,
    AlarmStream,
    AlertBenchConfig,
    FallPlan,
    Injection,
    Injector,
    _percentiles,
    _Publish,
    _Service,
    fall_plans,
)
from lab.bench import BenchConfig, Consumer, IngestBench, _load_worker, _peak_rss_mb, _Probe
from lab.localservices import free_port
from simulators.load import LoadConfig

# -- the benchmark ------------------------------------------------------------------------


Progress = Callable[[str, float, float, str], None]


class AlertBench:
    def __init__(self, cfg: AlertBenchConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self._progress = progress or (lambda *_: None)
        self._services = IngestBench(
            BenchConfig(
                devices=cfg.background_devices
                if cfg.max_rate_from == "sweep"
                else min(5000, max(10, cfg.drain_messages // 20)),
                drain_messages=cfg.drain_messages,
                connections=cfg.connections,
                mqtt_url=cfg.mqtt_url,
                database_url=cfg.database_url,
            ),
            self._drain_progress,
        )
        self._run = f"{int(time.time()) % 100000:05d}"
        self.injections: dict[str, list[Injection]] = {k: [] for k in KINDS}
        self.queue_depths: list[float] = []  # the hub's messages received, not yet committed (1/s)

    def __enter__(self) -> AlertBench:
        self._services.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._services.__exit__(*exc)

    @property
    def mqtt_url(self) -> str:
        return self._services.mqtt_url

    @property
    def database_url(self) -> str:
        return self._services.database_url

    def _drain_progress(self, phase: str, sent: int, acked: int, stored: int) -> None:
        info = f"sent {sent} acked {acked} stored {stored}"
        if phase.endswith("drain"):
            self._progress("max-rate", stored, self.cfg.drain_messages, info)
        else:  # a step of the sweep
            self._progress(phase, 0, 0, info)

    # -- set-up -----------------------------------------------------------------------

    def _max_rate(self) -> tuple[float, str, dict[str, Any] | None]:
        if self.cfg.max_rate is not None:
            return self.cfg.max_rate, "given", None
        if self.cfg.max_rate_from == "sweep":
            best, steps = self._services.sweep()
            self._quieten_ingest_devices()
            info: dict[str, Any] = {
                "steps": [
                    {
                        "rate": s.target_rate,
                        "reached": round(s.rate, 1),
                        "p50_lag_s": s.p50_lag_s,
                        "p99_lag_s": s.p99_lag_s,
                    }
                    for s in steps
                ]
            }
            if best <= 0:
                raise RuntimeError(f"the sweep found no rate the hub keeps up with: {info}")
            return best, "sweep", info
        drain = self._services.drain("hub")
        self._quieten_ingest_devices()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            # Messages ÷ span of stored_at leaves out the work of the first transaction,
            # which a short backlog of a few batches makes a large share: count the
            # messages after it over the span instead.
            row = conn.execute(
                """
                WITH m AS (SELECT stored_at FROM messages JOIN devices d ON d.id = messages.device_id
                           WHERE d.facility_id = 'bench')
                SELECT count(*) FILTER (WHERE stored_at > (SELECT min(stored_at) FROM m)),
                       extract(epoch FROM max(stored_at) - min(stored_at))
                FROM m
                """
            ).fetchone()
        after_first, span = (int(row[0]), float(row[1] or 0.0)) if row else (0, 0.0)
        rate = after_first / span if span > 0 else 0.0
        if rate <= 0 and drain.wall_s > 0:
            # a backlog small enough to commit in one transaction has no span of stored_at:
            # its wall time (start-up included) gives a lower bound instead
            rate = drain.stored / drain.wall_s
        info = {
            "messages": drain.messages,
            "stored": drain.stored,
            "rate": round(rate, 1),
            "rate_with_first_batch": round(drain.rate, 1),
        }
        return rate, "drain", info

    def _quieten_ingest_devices(self) -> None:
        """The drain's or sweep's devices stay registered: they must not all go offline during
        the run (IngestBench registers them in facility ``bench``)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE devices SET heartbeat_s = %s WHERE facility_id = 'bench'", (QUIET_HEARTBEAT_S,)
            )

    def _ids(self, kind: str, n: int) -> list[str]:
        return [f"ab{self._run}-{kind}-{i:04d}" for i in range(n)]

    def _register(self) -> tuple[str, ...]:
        cfg = self.cfg
        background = tuple(f"ab{self._run}-load-{i:05d}" for i in range(cfg.background_devices))
        fires, falls, quiet = (
            self._ids("fire", cfg.fires),
            self._ids("fall", cfg.falls),
            self._ids("off", cfg.offline),
        )
        # every smoke detector in a room of its own: a fire's alarm is the room's
        lines = [f"facilities:\n  - id: {FACILITY}\n    name: ankang bench alerts\n    rooms:"]
        lines += [f'      - {{id: "r{i:04d}"}}' for i in range(cfg.fires)]
        lines.append("devices:")
        lines += [
            f'  - {{id: {d}, kind: smoke_detector, facility: {FACILITY}, room: "r{i:04d}"}}'
            for i, d in enumerate(fires)
        ]
        lines += [
            f"  - {{id: {d}, kind: wearable, facility: {FACILITY}, placement: waist,"
            f" heartbeat_s: {QUIET_HEARTBEAT_S}}}"
            for d in falls
        ]
        lines += [
            f"  - {{id: {d}, kind: motion_sensor, facility: {FACILITY}, heartbeat_s: {QUIET_HEARTBEAT_S}}}"
            for d in quiet
        ]
        spec = parse_facility_yaml("\n".join(lines) + "\n")

        async def register() -> None:
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                await Registry(conn).apply(spec)
                await Registry(conn).add_many(f"{FACILITY}-load", [(d, "wearable") for d in background])
                await conn.execute("DELETE FROM accounts WHERE username = %s", (ADMIN,))
                await create_account(conn, ADMIN, self._password, "admin", display_name="ankang bench alerts")

        asyncio.run(register())
        self.injections = {
            "fire": [Injection("fire", d) for d in fires],
            "fall": [Injection("fall", d) for d in falls],
            "offline": [Injection("offline", d) for d in quiet],
        }
        return background

    @property
    def _password(self) -> str:
        return f"bench alerts {self._run} {os.getpid()}"

    def _schedule(self, start: float, plans: list[FallPlan]) -> list[_Publish]:
        """Every injection's messages, spread evenly (with jitter) over the injection window."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed)
        window = max(1.0, cfg.duration_s - cfg.warmup_s - cfg.tail_s)

        def times(n: int) -> list[float]:
            return [start + cfg.warmup_s + (i + float(rng.uniform(0.1, 0.9))) * window / n for i in range(n)]

        out: list[_Publish] = []
        for inj, due in zip(self.injections["fire"], times(cfg.fires), strict=True):
            out.append(_Publish(due, f"ankang/v1/{inj.device}/event", _fire_payload, done=_fire_done(inj)))
        for inj, due, plan in zip(self.injections["fall"], times(cfg.falls), plans, strict=True):
            # block k holds [due + k, due + k + 1) and goes out when that second is over
            inj.reference = due + plan.impact_s
            for k, block in enumerate(plan.blocks):
                body = {"ts": round((due + k) * 1000), "seq": k + 1, "rate_hz": FALL_RATE_HZ, "acc_g": block}
                last = k == len(plan.blocks) - 1
                out.append(
                    _Publish(
                        due + k + 1,
                        f"ankang/v1/{inj.device}/telemetry",
                        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        done=_mark_published(inj) if k == 0 else (_mark_done(inj) if last else None),
                    )
                )
        heartbeat = cfg.offline_heartbeat_s
        for inj, due in zip(self.injections["offline"], times(cfg.offline), strict=True):
            status = {"ts": 0, "seq": 0, "state": "online", "fw": "bench", "heartbeat_s": heartbeat}
            out.append(
                _Publish(
                    due,
                    f"ankang/v1/{inj.device}/status",
                    _stamped(status),
                    retain=True,  # a status is retained (docs/devices.md)
                    done=_mark_published(inj),
                )
            )
            beat = {"ts": 0, "seq": 1, "metrics": {"battery_pct": 90}}
            out.append(
                _Publish(
                    due + 1.0,
                    f"ankang/v1/{inj.device}/telemetry",
                    _stamped(beat),
                    done=_offline_done(inj, heartbeat * GRACE),
                )
            )
        return out

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        machine = {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
        self._progress("max-rate", 0, 1, cfg.max_rate_from if cfg.max_rate is None else "given")
        max_rate, source, drain = self._max_rate()
        rate = max_rate * cfg.load_fraction
        self._progress("set-up", 0, 1, "registering devices, checking fall waveforms")
        background = self._register()
        plans = fall_plans(cfg.falls, cfg.seed)
        log_dir = self._services._tmp
        hub = Consumer("hub", self.mqtt_url, self.database_url, f"alertbench-hub-{self._run}", log_dir)
        env = {"ANKANG_MQTT_URL": self.mqtt_url, "ANKANG_DATABASE_URL": self.database_url}
        alerts = _Service(
            "alerts",
            ["alerts", "--no-migrate", "--mqtt" if cfg.alerts_mqtt else "--no-mqtt"],
            env,
            log_dir,
            lambda s: "alert service running" in s.log(),
        )
        port = free_port()
        api = _Service(
            "api",
            ["api", "--no-migrate"],
            {**env, "ANKANG_API_PORT": str(port), "ANKANG_LOGIN_FAILURES_PER_CLIENT": "1000"},
            log_dir,
            lambda _s: _feed_listening(port),
        )
        stream: AlarmStream | None = None
        injector: Injector | None = None
        try:
            self._progress("set-up", 0, 1, "starting hub, alerts and api")
            hub.start()
            alerts.start()
            api.start()
            base = f"http://127.0.0.1:{port}"
            token = httpx.post(
                f"{base}/api/v1/auth/token", data={"username": ADMIN, "password": self._password}, timeout=30
            ).json()["access_token"]
            stream = AlarmStream(base, token)
            stream.start()
            if not stream.ready.wait(30):
                raise RuntimeError(f"the alarm stream did not open: {stream.error}")
            pids = self._services._pids(hub)
            pids["alerts"] = lambda: [alerts.proc.pid] if alerts.proc else []
            pids["api"] = lambda: [api.proc.pid] if api.proc else []
            probes = {k: _Probe(f) for k, f in pids.items()}
            for p in probes.values():
                p.start()
            stages_before = hub.stages()
            batches_before = _batches(hub.metrics_port)
            started = time.time()
            load_proc, sent, acked, out = self._start_load(background, rate)
            injector = Injector(
                MqttEndpoint.from_url(self.mqtt_url),
                f"alertbench-inject-{self._run}",
                self._schedule(started, plans),
            )
            injector.start()
            ledger = self._watch(started, stream, injector, load_proc, sent, acked, out, hub)
            self._settle(stream, injector)
            wall = time.time() - started
            cpu = {k: round(p.used(), 2) for k, p in probes.items()}
            cpu["load generator"] = round(float(ledger["cpu_s"]), 2)
            stages_after = hub.stages()
            batches = tuple(a - b for a, b in zip(_batches(hub.metrics_port), batches_before, strict=True))
            hub_rss = _peak_rss_mb(hub.proc.pid) if hub.proc is not None else 0.0
            stages = {k: round(v - stages_before.get(k, 0.0), 3) for k, v in stages_after.items()}
        finally:
            if injector is not None:
                injector.close()
            if stream is not None:
                stream.close()
            api.stop()
            alerts.stop()
            hub.stop()
            hub.forget_session()
        if injector.error is not None:
            raise RuntimeError(f"injecting failed: {injector.error}")
        self._poll(stream)
        summary = self._summarize(max_rate, source, drain, rate, background, ledger, wall, cpu, stages)
        summary["hub_peak_rss_mb"] = round(hub_rss, 1)
        summary["hub_batches"] = {
            "committed": int(batches[0]),
            "mean_messages": round(batches[1] / batches[0], 1) if batches[0] else None,
        }
        summary["machine"] = {**machine, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
        summary["stream"] = {"alarm_events": stream.events, "resyncs": stream.resyncs}
        return summary

    def _start_load(
        self, background: tuple[str, ...], rate: float
    ) -> tuple[mp.process.BaseProcess, Any, Any, Any]:
        cfg = LoadConfig(
            endpoint=MqttEndpoint.from_url(self.mqtt_url),
            device_ids=background,
            rate=rate,
            duration_s=self.cfg.duration_s,
            connections=self.cfg.connections,
            client_prefix=f"alertbench-load-{self._run}",
            clock="wall",
        )
        ctx = mp.get_context("spawn")
        sent, acked, out = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Queue()
        proc = ctx.Process(target=_load_worker, args=(cfg, sent, acked, out), name="alertbench-load")
        proc.start()
        return proc, sent, acked, out

    def _counts(self) -> str:
        parts = []
        for kind in KINDS:
            injs = self.injections[kind]
            done = sum(1 for i in injs if i.complete)
            seen = sum(1 for i in injs if i.arrived is not None)
            parts.append(f"{kind} {seen}/{done}/{len(injs)}")
        return " · ".join(parts)

    def _poll(self, stream: AlarmStream) -> None:
        for kind, injs in self.injections.items():
            for inj in injs:
                if inj.arrived is None:
                    hit = stream.arrival(ALARM_TYPE[kind], inj.device)
                    if hit is not None:
                        inj.arrived, inj.alarm_id = hit

    def _watch(
        self,
        started: float,
        stream: AlarmStream,
        injector: Injector,
        load_proc: mp.process.BaseProcess,
        sent: Any,
        acked: Any,
        out: Any,
        hub: Consumer,
    ) -> dict[str, Any]:
        ledger: dict[str, Any] | None = None
        sampled = 0.0
        while ledger is None:
            if time.monotonic() - sampled >= 1.0:
                sampled = time.monotonic()
                depth = _queue_depth(hub.metrics_port)
                if depth is not None:
                    self.queue_depths.append(depth)
            with contextlib.suppress(Exception):
                ledger = out.get(timeout=0.5)
            self._poll(stream)
            elapsed = min(time.time() - started, self.cfg.duration_s)
            self._progress(
                "alerts",
                elapsed,
                self.cfg.duration_s,
                f"load sent {int(sent.value)} acked {int(acked.value)} · seen/sent/planned {self._counts()}",
            )
            if ledger is None and not load_proc.is_alive() and out.empty():
                raise RuntimeError("the load generator died")
            if injector.error is not None:
                raise RuntimeError(f"injecting failed: {injector.error}")
        load_proc.join(30)
        return ledger

    def _settle(self, stream: AlarmStream, injector: Injector) -> None:
        """Wait for the injector to finish and for the alarms still on their way."""
        while not injector.finished:
            self._poll(stream)
            self._progress("settle", 0, 1, f"injecting · {self._counts()}")
            time.sleep(0.25)
        every = [i for injs in self.injections.values() for i in injs]
        last = max((i.reference or 0.0 for i in every), default=0.0)
        deadline = max(time.time(), last) + self.cfg.settle_s
        while time.time() < deadline:
            self._poll(stream)
            self._progress("settle", 0, 1, f"waiting for alarms · {self._counts()}")
            if all(i.arrived is not None for i in every):
                break
            time.sleep(0.25)
        self._poll(stream)

    # -- results ------------------------------------------------------------------------

    def _stages(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """Per kind, where each alarm's time went, from the rows the pipeline wrote."""
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for kind, injs in self.injections.items():
                seen = [i for i in injs if i.arrived is not None and i.reference is not None]
                if not seen:
                    continue
                rows = conn.execute(
                    """
                    SELECT DISTINCT ON (device_id) device_id, extract(epoch FROM t),
                           extract(epoch FROM detected_at), extract(epoch FROM alerted_at)
                    FROM detections WHERE kind = %s AND level = 'alarm' AND device_id = ANY(%s)
                    ORDER BY device_id, id
                    """,
                    ("device_offline" if kind == "offline" else kind, [i.device for i in seen]),
                ).fetchall()
                det = {
                    r[0]: (float(r[1]), float(r[2]), float(r[3]) if r[3] is not None else None) for r in rows
                }
                msgs: dict[str, tuple[float, float]] = {}
                if kind == "fire":
                    for device, received, stored in conn.execute(
                        """
                        SELECT device_id, extract(epoch FROM received_at), extract(epoch FROM stored_at)
                        FROM messages WHERE device_id = ANY(%s) AND channel = 'event'
                        """,
                        ([i.device for i in seen],),
                    ).fetchall():
                        msgs[device] = (float(received), float(stored))
                spans: dict[str, list[float]] = {}

                def add(name: str, value: float, spans: dict[str, list[float]] = spans) -> None:
                    spans.setdefault(name, []).append(value)

                for inj in seen:
                    d = det.get(inj.device)
                    if d is None or d[2] is None or inj.arrived is None or inj.reference is None:
                        continue
                    t, detected, alerted = d[0], d[1], d[2]
                    if kind == "fire" and inj.device in msgs:
                        received, stored = msgs[inj.device]
                        add("publish → hub received", received - inj.reference)
                        add("received → commit began", stored - received)
                        add("commit began → alert service applied", alerted - stored)
                    elif kind == "offline":
                        add("deadline → hub's deadline (last message's ingest)", t - inj.reference)
                        add("hub's deadline → detection committed", detected - t)
                        add("detection → alert service applied", alerted - detected)
                    elif kind == "fall":
                        add("impact → detection committed", detected - inj.reference)
                        add("detection → alert service applied", alerted - detected)
                    add("alert service applied → on the stream", inj.arrived - alerted)
                out[kind] = {name: _percentiles(values) for name, values in spans.items()}
        return out

    def _lag(self, background: tuple[str, ...]) -> dict[str, Any]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT count(*), count(DISTINCT (device_id, seq)),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)),
                       max(extract(epoch FROM stored_at - ts))
                FROM messages WHERE device_id BETWEEN %s AND %s
                """,
                (background[0], background[-1]),
            ).fetchone()
        assert row is not None  # noqa: S101
        return {
            "stored": int(row[0]),
            "distinct": int(row[1]),
            "p50_lag_s": round(float(row[2]), 4) if row[2] is not None else None,
            "p99_lag_s": round(float(row[3]), 4) if row[3] is not None else None,
            "max_lag_s": round(float(row[4]), 4) if row[4] is not None else None,
        }

    def _summarize(
        self,
        max_rate: float,
        source: str,
        drain: dict[str, Any] | None,
        rate: float,
        background: tuple[str, ...],
        ledger: dict[str, Any],
        wall: float,
        cpu: dict[str, float],
        stages: dict[str, float],
    ) -> dict[str, Any]:
        lag = self._lag(background)
        span = float(ledger["finished"]) - float(ledger["started"])
        kinds: dict[str, Any] = {}
        breakdown = self._stages()
        for kind, injs in self.injections.items():
            latencies = [i.latency for i in injs if i.latency is not None]
            injected = sum(1 for i in injs if i.complete)
            row: dict[str, Any] = {
                "injected": injected,
                "seen": len(latencies),
                "missing": injected - len(latencies),
                **_percentiles(latencies),
                "min_s": round(min(latencies), 4) if latencies else None,
                "latencies_s": [round(v, 4) for v in latencies],
                "stages": breakdown.get(kind, {}),
            }
            target = TARGETS.get(kind)
            if target is not None:
                stat, bound = target
                value = row[f"{stat}_s"]
                row["target"] = {"statistic": stat, "seconds": bound}
                row["met"] = value is not None and row["missing"] == 0 and value <= bound
            else:
                row["target"] = None
                row["met"] = None
            kinds[kind] = row
        return {
            "max_rate_msgs_per_s": round(max_rate, 1),
            "max_rate_from": source,
            "drain": drain,
            "load_fraction": self.cfg.load_fraction,
            "target_rate_msgs_per_s": round(rate, 1),
            "background": {
                "devices": len(background),
                "sent": int(ledger["sent"]),
                "acked": int(ledger["acked"]),
                "rate_msgs_per_s": round(int(ledger["sent"]) / span, 1) if span > 0 else 0.0,
                **lag,
            },
            "duration_s": self.cfg.duration_s,
            "wall_s": round(wall, 1),
            "offline_heartbeat_s": self.cfg.offline_heartbeat_s,
            "kinds": kinds,
            "cpu_s": cpu,
            "hub_stages_s": stages,
            "hub_queue_depth": {
                "max": max(self.queue_depths, default=None),
                "median": float(np.median(self.queue_depths)) if self.queue_depths else None,
                "samples": len(self.queue_depths),
            },
        }


# -- helpers for the schedule --------------------------------------------------------------


def _fire_payload() -> bytes:
    return orjson.dumps(
        {"ts": round(time.time() * 1000), "seq": 1, "event": "smoke_alarm", "detail": {"sensitivity": "high"}}
    )


def _fire_done(inj: Injection) -> Callable[[float], None]:
    def done(published: float) -> None:
        inj.published = inj.reference = published
        inj.complete = True

    return done


def _mark_published(inj: Injection) -> Callable[[float], None]:
    def done(published: float) -> None:
        inj.published = published

    return done


def _mark_done(inj: Injection) -> Callable[[float], None]:
    def done(_published: float) -> None:
        inj.complete = True

    return done


def _offline_done(inj: Injection, grace_s: float) -> Callable[[float], None]:
    def done(published: float) -> None:
        inj.reference = published + grace_s  # the deadline (hub/detectors/health.py)
        inj.complete = True

    return done


def _stamped(body: dict[str, Any]) -> Callable[[], bytes]:
    def payload() -> bytes:
        return orjson.dumps({**body, "ts": round(time.time() * 1000)})

    return payload


def _batches(port: int) -> tuple[float, float]:
    """The hub's committed batches so far: (count, messages)."""
    count = total = 0.0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ankang_ingest_batch_size_count "):
                    count = float(line.rsplit(" ", 1)[1])
                elif line.startswith("ankang_ingest_batch_size_sum "):
                    total = float(line.rsplit(" ", 1)[1])
    except (OSError, ValueError):
        pass
    return count, total


def _queue_depth(port: int) -> float | None:
    """The hub's ``ankang_ingest_queue_depth``: messages received and not yet committed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ankang_ingest_queue_depth "):
                    return float(line.rsplit(" ", 1)[1])
    except (OSError, ValueError):
        return None
    return None


def _feed_listening(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(json.loads(r.read()).get("feed_listening"))
    except (OSError, ValueError):
        return False
