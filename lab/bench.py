"""``ankang bench ingest``: the hub against the bare pipe, on the same machine, in one run.

Phases (each with its own device ids, so that counts never mix):

``bare-drain`` / ``hub-drain``
    The consumer's persistent session is created, the consumer is stopped, a backlog of
    ``drain_messages`` is queued in the broker, and the consumer is started again. Its
    throughput is the backlog divided by the span of ``stored_at`` over the backlog, so the
    load generator's own speed does not limit the figure. hub/bare is the ratio.
``hub-nodetect-drain``
    The same with the hub's detectors switched off (``ANKANG_DETECTION=false``): the
    hub-drain/hub-nodetect-drain ratio is what detection costs. Every benchmark message is
    a wearable block, so the fall detector runs on each one.
``sustained``
    The load generator publishes at ``rate`` for ``duration`` seconds while the hub runs:
    the rate it keeps up with, and whether anything was lost or duplicated.
``sweep``
    Live phases of ``sweep_duration_s`` at rising rates, until the generator no longer
    reaches 95 % of the rate or the median lag exceeds ``sweep_max_lag_s`` (lag piling
    up): the last rate that passed is the maximum sustained rate on this machine,
    generator included.
``lag``
    A live phase at ``lag_fraction`` of the maximum sustained rate (of the hub's drain
    rate if there was no sweep): p50/p99 ingest lag, from the publish time (``ts``, the
    wall clock at publishing) to the row's ``stored_at`` (the start of the committing
    transaction).

CPU seconds of the consumer, broker, database and generator are read from /proc, and the
hub's own per-stage timings from its /metrics, so the report shows where the time went.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import Registry
from devices.mqtt import MqttEndpoint
from hub import migrate
from lab.localservices import MosquittoServer, PostgresServer, free_port
from simulators.load import LoadConfig, run_load

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLES_PER_MESSAGE = 50


@dataclass
class BenchConfig:
    devices: int = 5000
    rate: float = 5000.0
    duration_s: float = 60.0
    drain_messages: int = 100_000
    lag_fraction: float = 0.8
    connections: int = 4
    inject_loss: int = 0
    inject_duplicates: int = 0
    phases: tuple[str, ...] = ("bare-drain", "hub-drain", "hub-nodetect-drain", "sustained", "sweep", "lag")
    # The sweep finds the highest live rate the hub keeps up with: the generator reaches
    # 95 % of the rate and the median lag stays within sweep_max_lag_s.
    sweep_rates: tuple[float, ...] = (1000.0, 2000.0, 3000.0, 3500.0, 4000.0, 4500.0, 5000.0, 6000.0)
    sweep_duration_s: float = 20.0
    sweep_max_lag_s: float = 1.0
    mqtt_url: str | None = None  # None: start a broker and a database of our own
    database_url: str | None = None


@dataclass
class PhaseResult:
    name: str
    messages: int = 0
    stored: int = 0
    distinct: int = 0
    expected: int = 0
    quarantined: int = 0
    wall_s: float = 0.0
    rate: float = 0.0
    p50_lag_s: float | None = None
    p99_lag_s: float | None = None
    max_lag_s: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    consumer_peak_rss_mb: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    target_rate: float | None = None

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.distinct)

    @property
    def duplicated(self) -> int:
        return self.stored - self.distinct


# -- processes ------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _status_mb(pid: int, key: str) -> float:
    """A memory figure from /proc/PID/status (VmRSS now, VmHWM at its peak), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM")


def _rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    out.append(int(entry.name))
    return out


class _Probe:
    """CPU seconds used by a set of processes over a phase (children sampled live)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {p: _cpu_seconds(p) for p in self._pids()}

    def used(self) -> float:
        return sum(_cpu_seconds(p) - self._start.get(p, 0.0) for p in self._pids())


class Consumer:
    """The hub (``ankang hub``) or the bare pipe, as a subprocess."""

    def __init__(self, kind: str, mqtt_url: str, database_url: str, client_id: str, log_dir: Path) -> None:
        self.kind = kind
        self.client_id = client_id
        self.metrics_port = free_port()
        self._mqtt_url = mqtt_url
        self._database_url = database_url
        self._log = log_dir / f"{client_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "ANKANG_MQTT_URL": self._mqtt_url,
            "ANKANG_DATABASE_URL": self._database_url,
            "ANKANG_HUB_CLIENT_ID": self.client_id,
            "ANKANG_METRICS_PORT": str(self.metrics_port),
            "ANKANG_JOBS_INITIAL_DELAY_S": "86400",  # no rollup or retention run inside a phase
        }
        if self.kind == "hub-nodetect":
            env["ANKANG_DETECTION"] = "false"
        if self.kind.startswith("hub"):
            args = [sys.executable, "-m", "ankang.cli", "hub", "--no-migrate"]
        else:
            args = [sys.executable, "-m", "lab.barepipe", self._mqtt_url, self._database_url, self.client_id]
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early: {self._log.read_text()[-2000:]}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not become ready: {self._log.read_text()[-2000:]}")

    def ready(self) -> bool:
        if self.kind == "bare":
            time.sleep(1.0)  # it subscribes on connect; there is no health endpoint to ask
            return True
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stages(self) -> dict[str, float]:
        if not self.kind.startswith("hub"):
            return {}
        out: dict[str, float] = {}
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ankang_stage_seconds_total{"):
                    stage = line.split('stage="', 1)[1].split('"', 1)[0]
                    out[stage] = float(line.rsplit(" ", 1)[1])
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def forget_session(self) -> None:
        """End this consumer's persistent session, which would otherwise queue every later message."""
        _forget_session(self._mqtt_url, self.client_id)


def _forget_session(mqtt_url: str, client_id: str) -> None:
    # MQTT 5 §3.1.2.4: connecting with Clean Start discards the old session, and a Session
    # Expiry of 0 discards the new one on disconnect.
    endpoint = MqttEndpoint.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    endpoint.configure(client)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(endpoint.host, endpoint.port, clean_start=True, properties=props)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def _load_worker(cfg: LoadConfig, sent: Any, acked: Any, out: Any) -> None:
    def progress(s: int, a: int) -> None:
        sent.value, acked.value = s, a

    result = run_load(cfg, progress).as_dict()
    result["cpu_s"] = time.process_time()  # all threads of this process
    out.put(result)


# -- the benchmark ----------------------------------------------------------------------


class IngestBench:
    def __init__(
        self, cfg: BenchConfig, progress: Callable[[str, int, int, int], None] | None = None
    ) -> None:
        self.cfg = cfg
        self._progress = progress
        self._tmp = Path(tempfile.mkdtemp(prefix="ankang-bench-", dir="/var/tmp"))
        self._broker: MosquittoServer | None = None
        self._pg: PostgresServer | None = None
        self.mqtt_url = cfg.mqtt_url or ""
        self.database_url = cfg.database_url or ""
        self._run = f"{int(time.time()) % 100000:05d}"
        self.results: list[PhaseResult] = []

    def __enter__(self) -> IngestBench:
        if not self.cfg.mqtt_url:
            self._broker = MosquittoServer(self._tmp / "mosquitto")
            self._broker.start()
            self.mqtt_url = self._broker.url
        if not self.cfg.database_url:
            self._pg = PostgresServer(self._tmp / "postgres")
            self._pg.start()
            self.database_url = self._pg.url
        asyncio.run(migrate(self.database_url))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._broker is not None:
            self._broker.stop()
        if self._pg is not None:
            self._pg.destroy()

    def _pids(self, consumer: Consumer | None) -> dict[str, Callable[[], list[int]]]:
        out: dict[str, Callable[[], list[int]]] = {}
        if consumer is not None and consumer.proc is not None:
            pid = consumer.proc.pid
            out["consumer"] = lambda: [pid]
        if self._broker is not None and self._broker.pid():
            bpid = self._broker.pid() or 0
            out["mosquitto"] = lambda: [bpid]
        if self._pg is not None:
            try:
                master = int((self._pg.directory / "data" / "postmaster.pid").read_text().split()[0])
                out["postgres"] = lambda: [master, *_children(master)]
            except (OSError, ValueError, IndexError):
                pass
        return out

    def _devices(self, phase: str) -> tuple[str, ...]:
        prefix = f"b{self._run}{phase[0]}{len(self.results)}-"
        ids = tuple(f"{prefix}{i:05d}" for i in range(self.cfg.devices))

        async def register() -> None:
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                await Registry(conn).add_many("bench", [(d, "wearable") for d in ids])

        asyncio.run(register())
        return ids

    def _load(
        self,
        phase: str,
        ids: tuple[str, ...],
        *,
        rate: float | None,
        duration: float | None,
        count: int | None,
        faults: bool,
    ) -> tuple[dict[str, Any], float]:
        cfg = LoadConfig(
            endpoint=MqttEndpoint.from_url(self.mqtt_url),
            device_ids=ids,
            rate=rate,
            duration_s=duration,
            count=count,
            connections=self.cfg.connections,
            inject_loss=self.cfg.inject_loss if faults else 0,
            inject_duplicates=self.cfg.inject_duplicates if faults else 0,
            client_prefix=f"load-{phase}-{self._run}",
            # a backlog is published faster than real time; its blocks still follow each other
            clock="blocks" if rate is None else "wall",
        )
        ctx = mp.get_context("spawn")
        sent, acked, out = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Queue()
        proc = ctx.Process(target=_load_worker, args=(cfg, sent, acked, out), name=f"load-{phase}")
        proc.start()
        result: dict[str, Any] | None = None
        stored_fn = self._stored_counter(ids)
        while result is None:
            with contextlib.suppress(Exception):
                result = out.get(timeout=0.5)
            if self._progress:
                self._progress(phase, int(sent.value), int(acked.value), stored_fn())
            if result is None and not proc.is_alive() and out.empty():
                raise RuntimeError("the load generator died")
        proc.join(30)
        return result, float(result["cpu_s"])

    def _stored_counter(self, ids: tuple[str, ...]) -> Callable[[], int]:
        low, high = ids[0], ids[-1]
        last = [0.0, 0]

        def count() -> int:
            if time.monotonic() - last[0] < 0.5:
                return int(last[1])
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM messages WHERE device_id BETWEEN %s AND %s", (low, high)
                ).fetchone()
            last[0], last[1] = time.monotonic(), int(row[0]) if row else 0
            return int(last[1])

        return count

    def _settle(self, phase: str, ids: tuple[str, ...], expected: int, timeout: float = 120.0) -> None:
        """Wait until every expected message is stored, or the count stops moving for 5 s."""
        count = self._stored_counter(ids)
        deadline = time.monotonic() + timeout
        previous, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = count()
            if self._progress:
                self._progress(phase, expected, expected, n)
            if n >= expected:
                return
            if n != previous:
                previous, still_since = n, time.monotonic()
            elif time.monotonic() - still_since > 5.0:
                return
            time.sleep(0.25)

    def _measure(self, result: PhaseResult, ids: tuple[str, ...], ledger: dict[str, Any]) -> None:
        low, high = ids[0], ids[-1]
        result.expected = sum(int(v) for v in ledger["per_device"].values())
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT count(*), count(DISTINCT (device_id, seq)),
                       extract(epoch FROM max(stored_at) - min(stored_at)),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)),
                       max(extract(epoch FROM stored_at - ts))
                FROM messages WHERE device_id BETWEEN %s AND %s
                """,
                (low, high),
            ).fetchone()
            q = conn.execute(
                "SELECT count(*) FROM quarantine WHERE device_id BETWEEN %s AND %s", (low, high)
            ).fetchone()
        assert row is not None  # noqa: S101
        result.stored, result.distinct = int(row[0]), int(row[1])
        span = float(row[2] or 0.0)
        result.rate = result.distinct / span if span > 0 else 0.0
        result.p50_lag_s, result.p99_lag_s, result.max_lag_s = (
            (float(row[3]), float(row[4]), float(row[5])) if row[3] is not None else (None, None, None)
        )
        result.quarantined = int(q[0]) if q else 0

    def drain(self, kind: str) -> PhaseResult:
        phase = f"{kind}-drain"
        ids = self._devices(phase)
        consumer = Consumer(kind, self.mqtt_url, self.database_url, f"{phase}-{self._run}", self._tmp)
        consumer.start()  # creates the persistent session and its subscription
        consumer.stop()
        ledger, _ = self._load(
            phase, ids, rate=None, duration=None, count=self.cfg.drain_messages, faults=False
        )
        result = PhaseResult(phase, messages=self.cfg.drain_messages)
        started = time.monotonic()
        consumer.start()
        running = self._probes(consumer)
        self._settle(phase, ids, self.cfg.drain_messages)
        result.wall_s = time.monotonic() - started
        self._finish(consumer, running, result, ids, ledger)
        return result

    def _probes(self, consumer: Consumer) -> dict[str, _Probe]:
        running = {k: _Probe(f) for k, f in self._pids(consumer).items()}
        for probe in running.values():
            probe.start()
        return running

    def _finish(
        self,
        consumer: Consumer,
        running: dict[str, _Probe],
        result: PhaseResult,
        ids: tuple[str, ...],
        ledger: dict[str, Any],
    ) -> None:
        """Read the consumer's CPU, memory and stages, end it and its session, count the rows."""
        result.cpu_s.update({k: p.used() for k, p in running.items()})
        result.stages = consumer.stages()
        if consumer.proc is not None:
            result.consumer_peak_rss_mb = _peak_rss_mb(consumer.proc.pid)
        consumer.stop()
        consumer.forget_session()
        self._measure(result, ids, ledger)
        self.results.append(result)

    def sweep(self) -> tuple[float, list[PhaseResult]]:
        """Step the live rate up until the hub falls behind; returns the last rate it kept up with."""
        best, steps = 0.0, []
        for rate in self.cfg.sweep_rates:
            step = self.live(f"sweep-{rate:.0f}", rate, duration_s=self.cfg.sweep_duration_s)
            steps.append(step)
            # keeping up: the generator reached the rate, and lag did not pile up (median);
            # the tail is what the lag phase then measures at 80 % of this rate
            kept_up = step.rate >= 0.95 * rate and (step.p50_lag_s or 0.0) <= self.cfg.sweep_max_lag_s
            if not kept_up:
                break
            best = rate
        return best, steps

    def live(self, name: str, rate: float, duration_s: float | None = None) -> PhaseResult:
        ids = self._devices(name)
        consumer = Consumer("hub", self.mqtt_url, self.database_url, f"{name}-{self._run}", self._tmp)
        consumer.start()
        running = self._probes(consumer)
        started = time.monotonic()
        ledger, load_cpu = self._load(
            name, ids, rate=rate, duration=duration_s or self.cfg.duration_s, count=None, faults=True
        )
        self._settle(name, ids, int(ledger["sent"]))
        result = PhaseResult(name, messages=int(ledger["sent"]), target_rate=rate)
        result.wall_s = time.monotonic() - started
        result.cpu_s["load generator"] = load_cpu
        self._finish(consumer, running, result, ids, ledger)
        # the achieved rate is what the generator kept up, measured the same way for both
        span = ledger["finished"] - ledger["started"]
        result.rate = result.distinct / span if span > 0 else 0.0
        return result

    def run(self) -> dict[str, Any]:
        phases = self.cfg.phases
        by_name: dict[str, PhaseResult] = {}
        if "bare-drain" in phases:
            by_name["bare-drain"] = self.drain("bare")
        if "hub-drain" in phases:
            by_name["hub-drain"] = self.drain("hub")
        if "hub-nodetect-drain" in phases:
            by_name["hub-nodetect-drain"] = self.drain("hub-nodetect")
        if "sustained" in phases:
            by_name["sustained"] = self.live("sustained", self.cfg.rate)
        max_sustained: float | None = None
        if "sweep" in phases:
            max_sustained, steps = self.sweep()
            by_name.update({s.name: s for s in steps})
        if "lag" in phases:
            drain = by_name["hub-drain"].rate if "hub-drain" in by_name else self.cfg.rate
            base = max_sustained or drain
            by_name["lag"] = self.live("lag", base * self.cfg.lag_fraction)
        summary = summarize(self.cfg, by_name)
        summary["max_sustained_msgs_per_s"] = max_sustained
        return summary


def summarize(cfg: BenchConfig, phases: dict[str, PhaseResult]) -> dict[str, Any]:
    hub = phases.get("hub-drain")
    bare = phases.get("bare-drain")
    nodetect = phases.get("hub-nodetect-drain")
    live = [p for k, p in phases.items() if k in ("sustained", "lag")]
    lag = phases.get("lag") or phases.get("sustained")
    hub_rate = hub.rate if hub else (phases["sustained"].rate if "sustained" in phases else 0.0)
    out: dict[str, Any] = {
        "msgs_per_s": round(hub_rate, 1),
        "samples_per_s": round(hub_rate * SAMPLES_PER_MESSAGE, 1),
        "bare_msgs_per_s": round(bare.rate, 1) if bare else None,
        "ratio": round(hub.rate / bare.rate, 3) if hub and bare and bare.rate else None,
        "nodetect_msgs_per_s": round(nodetect.rate, 1) if nodetect else None,
        "nodetect_ratio": round(nodetect.rate / bare.rate, 3) if nodetect and bare and bare.rate else None,
        "detection_cost": round(hub.rate / nodetect.rate, 3) if hub and nodetect and nodetect.rate else None,
        "lost": sum(p.lost for p in phases.values()),
        "duplicated": sum(p.duplicated for p in phases.values()),
        "quarantined": sum(p.quarantined for p in phases.values()),
        "p50_lag_s": round(lag.p50_lag_s, 4) if lag and lag.p50_lag_s is not None else None,
        "p99_lag_s": round(lag.p99_lag_s, 4) if lag and lag.p99_lag_s is not None else None,
        "lag_at_rate": round(lag.target_rate, 1) if lag and lag.target_rate else None,
        "hub_cpu_pct": round(100 * hub.cpu_s.get("consumer", 0.0) / hub.wall_s, 1)
        if hub and hub.wall_s
        else None,
        "hub_peak_rss_mb": round(
            max((p.consumer_peak_rss_mb for k, p in phases.items() if k != "bare-drain"), default=0.0), 1
        ),
        "devices": cfg.devices,
        "duration_s": cfg.duration_s,
        "phases": {
            k: {
                "messages": p.messages,
                "stored": p.stored,
                "lost": p.lost,
                "duplicated": p.duplicated,
                "quarantined": p.quarantined,
                "rate": round(p.rate, 1),
                "target_rate": p.target_rate,
                "wall_s": round(p.wall_s, 2),
                "p50_lag_s": p.p50_lag_s,
                "p99_lag_s": p.p99_lag_s,
                "max_lag_s": p.max_lag_s,
                "cpu_s": {n: round(v, 2) for n, v in p.cpu_s.items()},
                "consumer_peak_rss_mb": round(p.consumer_peak_rss_mb, 1),
                "stages_s": {n: round(v, 3) for n, v in p.stages.items()},
            }
            for k, p in phases.items()
        },
    }
    if live:
        out["sustained_msgs_per_s"] = round(phases["sustained"].rate, 1) if "sustained" in phases else None
    return out


# -- many connected devices -----------------------------------------------------------


def run_devices_bench(
    devices: int,
    duration_s: float,
    *,
    mqtt_url: str | None = None,
    database_url: str | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> dict[str, Any]:
    """Connect ``devices`` simulated devices, one MQTT connection each, at their real rates.

    Reports what was published and stored and the hub's memory: idle with an empty registry,
    and at its peak with the whole fleet registered and connected.
    """
    import math

    from simulators.engine import run_scenario
    from simulators.fleet import FleetSpec, build_fleet
    from simulators.scenario import Scenario

    per_home = len(build_fleet(FleetSpec(care_homes=1, home_beds=0)).devices)
    fleet = build_fleet(
        FleetSpec(
            care_homes=math.ceil(devices / per_home), home_beds=0, prefix=f"d{int(time.time()) % 10000}"
        )
    )
    cfg = BenchConfig(mqtt_url=mqtt_url, database_url=database_url)
    with IngestBench(cfg) as bench:
        hub = Consumer("hub", bench.mqtt_url, bench.database_url, f"devices-{bench._run}", bench._tmp)
        hub.start()
        assert hub.proc is not None  # noqa: S101
        time.sleep(2.0)
        idle_rss = _rss_mb(hub.proc.pid)

        async def register() -> None:
            async with await psycopg.AsyncConnection.connect(bench.database_url, autocommit=True) as conn:
                await Registry(conn).apply(fleet.facility_file)

        asyncio.run(register())
        probe = _Probe(lambda: [hub.proc.pid] if hub.proc else [])
        probe.start()
        scenario = Scenario(duration=duration_s, fleet=fleet.spec)
        started = time.monotonic()
        result = run_scenario(
            scenario,
            fleet,
            MqttEndpoint.from_url(bench.mqtt_url),
            speed=1.0,
            truth_path=None,
            on_progress=progress,
        )
        ids = sorted(d.id for d in fleet.devices)
        bench._settle("devices", (ids[0], ids[-1]), int(result["published"]), timeout=60)
        wall = time.monotonic() - started
        peak_rss = _peak_rss_mb(hub.proc.pid)
        hub_cpu = probe.used()
        hub.stop()
        hub.forget_session()
        with psycopg.connect(bench.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT device_id) FROM messages WHERE device_id = ANY(%s)", (ids,)
            ).fetchone()
    stored, reporting = (int(row[0]), int(row[1])) if row else (0, 0)
    n = len(fleet.devices)
    return {
        "devices": n,
        "connected": result["connected"],
        "processes": result["processes"],
        "published": result["published"],
        "stored": stored,
        "devices_reporting": reporting,
        "duration_s": duration_s,
        "offered_msgs_per_s": round(int(result["published"]) / duration_s, 1),
        # stored over the wall time, which includes connecting 10,000 devices and settling
        "stored_msgs_per_s_wall": round(stored / wall, 1) if wall else 0.0,
        "hub_cpu_pct": round(100 * hub_cpu / wall, 1) if wall else 0.0,
        "hub_idle_rss_mb": round(idle_rss, 1),
        "hub_peak_rss_mb": round(peak_rss, 1),
        "hub_rss_mb_per_1000_devices": round(peak_rss / (n / 1000), 2),
        "hub_rss_increase_mb_per_1000_devices": round((peak_rss - idle_rss) / (n / 1000), 2),
    }
