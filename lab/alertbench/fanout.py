"""``ankang bench fanout``: one alarm to many open live streams, from its commit to the last one.

``ankang api`` runs as it does in a deployment, its own process on a fresh PostgreSQL, with
``streams`` clients reading ``GET /api/v1/alarms/stream`` from another process. The streams
belong to accounts of four kinds, so that the scope of each is checked as well as its speed:

- ``centre``: staff of a monitoring centre, linked to every facility (see every alarm);
- ``ward``: staff linked to one facility;
- ``regulator``: a district's regulator (the district's alarms, without who they were about);
- ``family``: a resident's family (that resident's alarms only).

Several streams share an account, as a nurse's desk and phone would; each has a session of its
own. Once every stream is open, ``alarms`` alarms are raised one every ``interval_s`` through
the alert service's own path (a detection row, then ``alerts.apply_pending``, whose
transaction sends the ``NOTIFY``), each for another resident, so that each opens an alarm.

Each alarm's latency on a stream runs from the moment its committing call returned (the wall
clock just after ``apply_pending``) to the moment the stream's reader had the ``data:`` line
of its ``alarm`` event. Every stream the alarm's scope includes should have it once; every
other stream never. Nothing here is asserted in a test: this is a benchmark.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import orjson
import psycopg

from alerts import apply_pending
from api.auth import create_account, open_session
from devices import Registry
from devices.registry import parse_facility_yaml
from hub import migrate
from lab.alertbench.bench import _feed_listening
from lab.alertbench.pieces import _Service
from lab.bench import _Probe
from lab.localservices import PostgresServer, free_port

KINDS: Final = ("centre", "ward", "regulator", "family")
DEFAULT_MIX: Final = {"centre": 0.5, "ward": 0.2, "regulator": 0.05, "family": 0.25}
# The target: fan-out p99 ≤ 500 ms to the last of 1,000 streams, on this 2-core machine.
TARGET_S: Final = 0.5
PREFIX: Final = "fan"
_SESSION_TTL: Final = timedelta(hours=2)

Progress = Callable[[str, float, float, str], None]


@dataclass
class FanoutConfig:
    streams: int = 1000
    alarms: int = 20
    interval_s: float = 1.0
    facilities: int = 4  # in two districts
    residents_per_facility: int = 25
    centre_accounts: int = 20
    ward_accounts_per_facility: int = 2
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    open_concurrency: int = 50  # streams being opened at once (each open looks up its session)
    settle_s: float = 10.0  # how long after the last alarm a delivery may still arrive
    readers: int = 1  # client processes the streams are spread over
    api_env: dict[str, str] = field(default_factory=dict)  # more ANKANG_* settings for the API
    database_url: str | None = None  # None: a PostgreSQL of our own
    profile: Path | None = None  # py-spy's samples of the API while the alarms go out (raw stacks)


@dataclass(frozen=True)
class Viewer:
    """One account as the benchmark sees it, and what its streams should receive."""

    kind: str
    username: str
    facilities: frozenset[str] | None  # None: every facility
    resident: str | None = None  # family accounts

    def expects(self, facility: str, resident: str) -> bool:
        if self.resident is not None:
            return resident == self.resident
        return self.facilities is None or facility in self.facilities


@dataclass(frozen=True)
class Raised:
    alarm_id: int
    facility: str
    resident: str
    began: float  # epoch s: just before the committing call
    committed: float  # epoch s: just after it returned


@dataclass
class _Record:
    """What one stream's reader saw."""

    ready: bool = False
    arrivals: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    resyncs: int = 0
    degraded: int = 0
    error: str | None = None


def district_of(index: int) -> str:
    return f"d{index % 2}"


def _links(v: Viewer, cfg: FanoutConfig) -> dict[str, Any]:
    """``create_account``'s role and links for a viewer."""
    every = tuple(f"{PREFIX}{f}" for f in range(cfg.facilities))
    if v.kind == "centre":
        return {"role": "staff", "facilities": every}
    if v.kind == "ward":
        return {"role": "staff", "facilities": tuple(sorted(v.facilities or ()))}
    if v.kind == "regulator":
        districts = {district_of(every.index(f)) for f in v.facilities or ()}
        return {"role": "regulator", "districts": tuple(sorted(districts))}
    return {"role": "family", "residents": (v.resident,)}


def tenants(cfg: FanoutConfig) -> tuple[str, list[tuple[str, str, str]]]:
    """The registry YAML: facilities with one room, bed, resident and wearable per resident;
    and the residents as (facility, resident, device)."""
    lines = ["facilities:"]
    residents: list[tuple[str, str, str]] = []
    for f in range(cfg.facilities):
        fid = f"{PREFIX}{f}"
        lines += [f"  - id: {fid}", "    kind: institution", f"    district: {district_of(f)}", "    rooms:"]
        for r in range(cfg.residents_per_facility):
            rid, room = f"{fid}-p{r:03d}", f"r{r:03d}"
            bed = f'{{id: "{room}-1", resident: {{id: {rid}, name: "{rid}"}}}}'
            lines.append(f'      - {{id: "{room}", beds: [{bed}]}}')
            residents.append((fid, rid, f"{fid}-w{r:03d}"))
    lines.append("devices:")
    lines += [
        f"  - {{id: {dev}, kind: wearable, facility: {fid}, resident: {rid}, placement: wrist}}"
        for fid, rid, dev in residents
    ]
    return "\n".join(lines) + "\n", residents


def viewers(cfg: FanoutConfig, residents: list[tuple[str, str, str]]) -> dict[str, list[Viewer]]:
    facilities = [f"{PREFIX}{f}" for f in range(cfg.facilities)]
    out: dict[str, list[Viewer]] = {
        "centre": [Viewer("centre", f"{PREFIX}-centre-{i:02d}", None) for i in range(cfg.centre_accounts)],
        "ward": [
            Viewer("ward", f"{PREFIX}-ward-{fid}-{i}", frozenset({fid}))
            for fid in facilities
            for i in range(cfg.ward_accounts_per_facility)
        ],
        "regulator": [
            Viewer(
                "regulator",
                f"{PREFIX}-reg-{d}",
                frozenset(f for i, f in enumerate(facilities) if district_of(i) == d),
            )
            for d in sorted({district_of(i) for i in range(cfg.facilities)})
        ],
        "family": [
            Viewer("family", f"{PREFIX}-family-{rid}", frozenset({fid}), rid)
            for fid, rid, _dev in interleaved(cfg, residents)
        ],
    }
    return out


def stream_plan(cfg: FanoutConfig, accounts: dict[str, list[Viewer]]) -> list[Viewer]:
    """Which account each stream reads as: ``mix`` shares of ``streams``, round-robin over
    each kind's accounts."""
    unknown = set(cfg.mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds in the mix: {', '.join(sorted(unknown))}")
    total = sum(cfg.mix.values())
    if total <= 0:
        raise ValueError("the mix has no streams")
    counts = {k: int(cfg.streams * cfg.mix.get(k, 0.0) / total) for k in KINDS}
    # what rounding left over goes to the largest share
    counts[max(cfg.mix, key=lambda k: cfg.mix[k])] += cfg.streams - sum(counts.values())
    plan: list[Viewer] = []
    for kind in KINDS:
        plan += [accounts[kind][i % len(accounts[kind])] for i in range(counts[kind])]
    return plan


# -- the readers (a process of their own) ---------------------------------------------------


def _reader_main(
    index: int,
    base_url: str,
    tokens: list[str],
    concurrency: int,
    opened: Any,
    delivered: Any,
    stop: Any,
    out: Any,
) -> None:
    records = asyncio.run(_read_all(base_url, tokens, concurrency, opened, delivered, stop))
    out.put((index, [vars(r) for r in records]))


async def _read_all(
    base_url: str, tokens: list[str], concurrency: int, opened: Any, delivered: Any, stop: Any
) -> list[_Record]:
    records = [_Record() for _ in tokens]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(30.0, read=None)  # a stream is read until the run ends
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        tasks = [
            asyncio.create_task(
                _read_one(client, token, rec, gate, opened, delivered), name=f"fanout.stream{i}"
            )
            for i, (token, rec) in enumerate(zip(tokens, records, strict=True))
        ]
        # ``stop`` is a multiprocessing event, which asyncio cannot await
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return records


async def _read_one(
    client: httpx.AsyncClient, token: str, rec: _Record, gate: asyncio.Semaphore, opened: Any, delivered: Any
) -> None:
    await gate.acquire()
    held = True
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with client.stream("GET", "/api/v1/alarms/stream", headers=headers) as response:
            if response.status_code != 200:
                rec.error = f"HTTP {response.status_code}"
                return
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                arrived = time.time()
                if event == "alarm":
                    alarm_id = int(orjson.loads(line[6:])["id"])
                    if alarm_id in rec.arrivals:
                        rec.duplicates += 1  # a change after the opening (there should be none)
                    else:
                        rec.arrivals[alarm_id] = arrived
                    with delivered.get_lock():
                        delivered.value += 1
                elif event == "ready":
                    rec.ready = True
                    with opened.get_lock():
                        opened.value += 1
                    gate.release()
                    held = False
                elif event == "resync":
                    rec.resyncs += 1
                elif event == "degraded":
                    rec.degraded += 1
            rec.error = rec.error or "the stream ended"
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        if held:
            gate.release()


# -- the benchmark --------------------------------------------------------------------------


class FanoutBench:
    def __init__(self, cfg: FanoutConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self._progress = progress or (lambda *_: None)
        self._tmp = Path(tempfile.mkdtemp(prefix="ankang-fanout-", dir="/var/tmp"))
        self._pg: PostgresServer | None = None
        self.database_url = cfg.database_url or ""
        self._password = f"fan-out bench {os.getpid()} {time.time_ns()}"

    def __enter__(self) -> FanoutBench:
        if not self.database_url:
            self._pg = PostgresServer(self._tmp / "postgres")
            self._pg.start()
            self.database_url = self._pg.url
        asyncio.run(migrate(self.database_url))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pg is not None:
            self._pg.destroy()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- set-up -------------------------------------------------------------------------

    def _seed(self) -> tuple[list[Viewer], list[str], list[tuple[str, str, str]]]:
        cfg = self.cfg
        yaml, residents = tenants(cfg)
        accounts = viewers(cfg, residents)
        plan = stream_plan(cfg, accounts)

        async def seed() -> list[str]:
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                await Registry(conn).apply(parse_facility_yaml(yaml))
                await conn.execute("DELETE FROM accounts WHERE username LIKE %s", (f"{PREFIX}-%",))
            every = [v for kind in KINDS for v in accounts[kind]]
            ids: dict[str, int] = {}
            done = 0
            # argon2 runs in threads; a few connections keep both cores busy with it
            slots = asyncio.Semaphore(4)

            async def one(v: Viewer) -> None:
                nonlocal done
                async with slots:
                    conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                    async with conn:
                        ids[v.username] = await create_account(
                            conn, v.username, self._password, **_links(v, cfg), display_name=v.username
                        )
                done += 1
                self._progress("accounts", done, len(every), f"{done}/{len(every)} accounts")

            await asyncio.gather(*(one(v) for v in every))
            tokens = []
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                for v in plan:
                    tokens.append((await open_session(conn, ids[v.username], ttl=_SESSION_TTL)).token)
            return tokens

        return plan, asyncio.run(seed()), residents

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        machine = {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }
        needed = cfg.streams // max(1, cfg.readers) + 100
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < needed:  # raised for the readers (inherited) and the API (a child too)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, cfg.streams + 200), hard), hard))
        self._progress("accounts", 0, 1, "registering residents, creating accounts")
        plan, tokens, residents = self._seed()
        port = free_port()
        api = _Service(
            "api",
            ["api", "--no-migrate"],
            {"ANKANG_DATABASE_URL": self.database_url, "ANKANG_API_PORT": str(port), **cfg.api_env},
            self._tmp,
            lambda _s: _feed_listening(port),
        )
        ctx = mp.get_context("spawn")
        opened, delivered, stop = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
        out: Any = ctx.Queue()
        readers: list[mp.process.BaseProcess] = []
        raised: list[Raised] = []
        records: list[_Record] = []
        api_log = ""
        try:
            api.start()
            assert api.proc is not None  # noqa: S101  (started above)
            api_pid = api.proc.pid
            base = f"http://127.0.0.1:{port}"
            n = max(1, cfg.readers)
            shares = [list(range(i, len(tokens), n)) for i in range(n)]
            for i, share in enumerate(shares):
                proc = ctx.Process(
                    target=_reader_main,
                    args=(
                        i,
                        base,
                        [tokens[j] for j in share],
                        max(1, cfg.open_concurrency // n),
                        opened,
                        delivered,
                        stop,
                        out,
                    ),
                    name=f"fanout-reader-{i}",
                )
                proc.start()
                readers.append(proc)
            self._open(opened, readers)
            expected_total = self._expected_total(plan, residents)
            probe = _Probe(lambda: [api_pid])
            probe.start()
            spy = _py_spy(api_pid, cfg.profile) if cfg.profile is not None else None
            raised = asyncio.run(self._raise(residents, delivered, expected_total))
            self._settle(delivered, expected_total)
            api_cpu = probe.used()
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
                spy.wait(60)
            stop.set()
            # the readers answer in any order: each stream goes back to its place in the plan
            by_index: dict[int, _Record] = {}
            for _ in readers:
                reader, got = out.get(timeout=60)
                for j, rec in zip(shares[reader], got, strict=True):
                    by_index[j] = _Record(**rec)
            records = [by_index[j] for j in range(len(tokens))]
        finally:
            stop.set()
            for reader_proc in readers:
                reader_proc.join(30)
                if reader_proc.is_alive():
                    reader_proc.kill()
            api.stop()
            api_log = api.log()
        summary = summarize(cfg, plan, raised, records)
        summary["api"] = {
            "cpu_s_while_raising": round(api_cpu, 2),
            "tracebacks": api_log.count("Traceback"),
            "settings": cfg.api_env,
        }
        summary["machine"] = {**machine, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
        return summary

    def _open(self, opened: Any, readers: list[mp.process.BaseProcess]) -> None:
        total = self.cfg.streams
        deadline = time.monotonic() + max(60.0, total / 10)
        while opened.value < total:
            self._progress("open", opened.value, total, f"{opened.value}/{total} streams ready")
            if any(not p.is_alive() for p in readers):
                raise RuntimeError("a stream reader exited early")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {opened.value} of {total} streams opened")
            time.sleep(0.2)
        self._progress("open", total, total, f"{total}/{total} streams ready")
        # let the session look-ups of the last streams opened finish before the first alarm
        time.sleep(2.0)

    def _expected_total(self, plan: list[Viewer], residents: list[tuple[str, str, str]]) -> int:
        chosen = _alarm_residents(self.cfg, residents)
        return sum(v.expects(fid, rid) for fid, rid, _dev in chosen for v in plan)

    async def _raise(
        self, residents: list[tuple[str, str, str]], delivered: Any, expected_total: int
    ) -> list[Raised]:
        cfg = self.cfg
        out: list[Raised] = []
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            start = time.monotonic()
            for i, (fid, rid, dev) in enumerate(_alarm_residents(cfg, residents)):
                wait = start + i * cfg.interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await conn.execute(
                    "INSERT INTO detections (key, kind, level, t, subject, facility_id, resident_id,"
                    " device_id, confidence) VALUES (%s, 'sos', 'alarm', %s, %s, %s, %s, %s, 1.0)",
                    (f"fanout:{os.getpid()}:{time.time_ns()}:{i}", datetime.now(UTC), rid, fid, rid, dev),
                )
                began = time.time()
                applied = await apply_pending(conn)
                committed = time.time()
                if len(applied.opened) != 1:
                    raise RuntimeError(f"alarm {i} for {rid} opened {applied.opened}, not one alarm")
                out.append(Raised(applied.opened[0], fid, rid, began, committed))
                info = f"{i + 1}/{cfg.alarms} alarms; {delivered.value}/{expected_total} delivered"
                self._progress("alarms", i + 1, cfg.alarms, info)
        return out

    def _settle(self, delivered: Any, expected_total: int) -> None:
        deadline = time.monotonic() + self.cfg.settle_s
        while delivered.value < expected_total and time.monotonic() < deadline:
            self._progress(
                "settle", delivered.value, expected_total, f"{delivered.value}/{expected_total} delivered"
            )
            time.sleep(0.2)
        self._progress(
            "settle", delivered.value, expected_total, f"{delivered.value}/{expected_total} delivered"
        )
        time.sleep(0.5)  # anything past the expected count (a wrong-scope delivery) has a moment to show


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    args = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def interleaved(cfg: FanoutConfig, residents: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The residents across the facilities in turn: the first of each facility, the second..."""
    per = cfg.residents_per_facility
    return [residents[(i % cfg.facilities) * per + i // cfg.facilities] for i in range(len(residents))]


def _alarm_residents(cfg: FanoutConfig, residents: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A different resident for each alarm, across the facilities in turn; the families with
    streams are those of the same residents first (:func:`viewers`)."""
    if cfg.alarms > len(residents):
        raise ValueError(f"{cfg.alarms} alarms need as many residents; there are {len(residents)}")
    return interleaved(cfg, residents)[: cfg.alarms]


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
    }


def summarize(
    cfg: FanoutConfig, plan: list[Viewer], raised: list[Raised], records: list[_Record]
) -> dict[str, Any]:
    """Latencies over every (alarm, stream) pair that should meet, the last stream of each
    alarm, and every delivery that should not have happened."""
    pairs: list[float] = []
    last: list[float] = []
    first: list[float] = []
    expected = delivered = 0
    missing_streams: set[int] = set()
    ours = {r.alarm_id: r for r in raised}
    wrong: list[dict[str, Any]] = []
    per_alarm: list[dict[str, Any]] = []
    for r in raised:
        lat = []
        for s, (viewer, rec) in enumerate(zip(plan, records, strict=True)):
            if not viewer.expects(r.facility, r.resident):
                continue
            expected += 1
            got = rec.arrivals.get(r.alarm_id)
            if got is None:
                missing_streams.add(s)
                continue
            delivered += 1
            lat.append(got - r.committed)
        pairs += lat
        if lat:
            last.append(max(lat))
            first.append(min(lat))
        per_alarm.append(
            {
                "alarm_id": r.alarm_id,
                "facility": r.facility,
                "resident": r.resident,
                "streams": len(lat),
                "first_ms": round(min(lat) * 1000, 1) if lat else None,
                "last_ms": round(max(lat) * 1000, 1) if lat else None,
                "commit_call_ms": round((r.committed - r.began) * 1000, 1),
            }
        )
    for viewer, rec in zip(plan, records, strict=True):
        for alarm_id in rec.arrivals:
            mine = ours.get(alarm_id)
            if mine is None or not viewer.expects(mine.facility, mine.resident):
                wrong.append({"stream_of": viewer.username, "alarm_id": alarm_id})
    by_kind = {
        kind: sum(1 for v in plan if v.kind == kind) for kind in KINDS if any(v.kind == kind for v in plan)
    }
    last_stats = _stats(last)
    return {
        "streams": cfg.streams,
        "streams_by_kind": by_kind,
        "streams_ready": sum(r.ready for r in records),
        "alarms": len(raised),
        "interval_s": cfg.interval_s,
        "expected": expected,
        "delivered": delivered,
        "missing": expected - delivered,
        "streams_missing_some": len(missing_streams),
        "wrong_scope": len(wrong),
        "wrong_scope_examples": wrong[:10],
        "duplicates": sum(r.duplicates for r in records),
        "resyncs": sum(r.resyncs for r in records),
        "degraded": sum(r.degraded for r in records),
        "stream_errors": sorted({r.error for r in records if r.error and r.error != "the stream ended"})[:10],
        "streams_per_alarm": {
            "min": min((a["streams"] for a in per_alarm), default=0),
            "max": max((a["streams"] for a in per_alarm), default=0),
        },
        "pair": _stats(pairs),
        "first_stream": _stats(first),
        "last_stream": last_stats,
        "target": {"statistic": "last stream p99", "ms": TARGET_S * 1000},
        "met": None if last_stats["p99_ms"] is None else bool(last_stats["p99_ms"] <= TARGET_S * 1000),
        "commit_call": _stats([r.committed - r.began for r in raised]),
        "per_alarm": per_alarm,
    }
