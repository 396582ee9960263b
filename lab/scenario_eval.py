"""``ankang eval scenario``: a scenario through the whole pipeline, scored against its truth.

The simulator publishes a scenario over MQTT, a real hub ingests and detects, and every
injected incident in the ground truth is matched to what the hub recorded in
``detections``. This scores the system as deployed (contract, sequence rules, engine,
storage) rather than a detector on its own, and it counts what nobody asked for: a fall,
fire, gas or SOS alarm that matches no incident is a false alarm.

An incident is matched by kind, subject and time:

=============  ===========================  =============================================
incident       expected detection           matched when
=============  ===========================  =============================================
fall           ``fall`` on the wearable     ``t`` within [impact − 1 s, impact + 5 s]
fire           ``fire`` alarm in the room   after ignition; delay is time to alarm
gas_leak       ``gas`` warning or alarm     after the leak starts
sos            ``sos`` on the button        within 5 s
bed_exit       ``bed_exit`` on the mat      within 60 s, and only if it was night there
power_loss     ``device_offline``           its last will, any time after
test           ``fire_test`` from device    within 60 s
water_leak     ``water_leak`` on the sensor within 60 s
cooking/steam  no ``fire`` alarm in room    (a prealarm is allowed and counted)
=============  ===========================  =============================================

Other injected failures (garbage, duplicates, out-of-order, reconnects, silent offline
beyond the run) are there to stress ingest; they expect no detection and are not scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from devices import CareProfile, Registry
from devices.mqtt import MqttEndpoint
from hub import migrate
from lab.bench import Consumer
from lab.localservices import MosquittoServer, PostgresServer
from simulators.engine import run_scenario
from simulators.fleet import build_fleet
from simulators.scenario import load_scenario, with_prefix

ALARMS = frozenset({"fall", "fire", "gas", "sos"})  # the kinds whose false alarms are counted


@dataclass(frozen=True, slots=True)
class Seen:
    """A stored detection, as the scorer needs it."""

    kind: str
    level: str
    t: float
    subject: str
    device_id: str | None
    latency_s: float  # detected_at - t: from the event to the committed detection


@dataclass(slots=True)
class Outcome:
    incident: str
    target: str
    expected: str
    matched: bool
    delay_s: float | None = None  # detection time minus incident (or impact) time
    latency_s: float | None = None
    note: str = ""


@dataclass(slots=True)
class Score:
    outcomes: list[Outcome] = field(default_factory=list)
    false_alarms: list[Seen] = field(default_factory=list)
    nuisance_prealarms: int = 0

    @property
    def missed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.matched]

    def as_dict(self) -> dict[str, Any]:
        return {
            "incidents": len(self.outcomes),
            "matched": sum(o.matched for o in self.outcomes),
            "missed": [f"{o.incident} {o.target}: {o.note}" for o in self.missed],
            "false_alarms": [f"{s.kind} {s.subject} at {s.t:.1f}" for s in self.false_alarms],
            "nuisance_prealarms": self.nuisance_prealarms,
            "outcomes": [
                {
                    "incident": o.incident,
                    "target": o.target,
                    "expected": o.expected,
                    "matched": o.matched,
                    "delay_s": None if o.delay_s is None else round(o.delay_s, 2),
                    "latency_s": None if o.latency_s is None else round(o.latency_s, 3),
                    "note": o.note,
                }
                for o in self.outcomes
            ],
        }


def score(
    truth: Sequence[Mapping[str, Any]],
    seen: Iterable[Seen],
    *,
    device_rooms: Mapping[str, str],
    night: Mapping[str, bool] | None = None,
) -> Score:
    """Match ground-truth records to detections.

    ``device_rooms`` maps device ids to ``facility/room``; ``night`` says, per bed-exit
    record's time (``str(t)``), whether it fell in the facility's night hours.
    """
    detections = sorted(seen, key=lambda s: s.t)
    used: set[int] = set()
    result = Score()

    def first(pred: Any) -> tuple[int, Seen] | None:
        for i, s in enumerate(detections):
            if i not in used and pred(s):
                return i, s
        return None

    def take(out: Outcome, hit: tuple[int, Seen] | None, t0: float) -> None:
        if hit is not None:
            used.add(hit[0])
            out.matched = True
            out.delay_s = hit[1].t - t0
            out.latency_s = hit[1].latency_s
        result.outcomes.append(out)

    for rec in truth:
        kind, t = rec["kind"], float(rec["t"])
        if kind == "fall":
            impact = float(rec["impact"])
            dev = rec["device"]
            out = Outcome("fall", dev, "fall", False, note=f"{rec.get('fall')} at the {rec.get('placement')}")
            hit = first(
                lambda s, d=dev, i=impact: s.kind == "fall" and s.subject == d and i - 1 <= s.t <= i + 5
            )
            take(out, hit, impact)
        elif kind == "fire":
            room = rec["room"]
            out = Outcome("fire", room, "fire alarm", False, note=str(rec.get("growth")))
            hit = first(
                lambda s, r=room, t0=t: (
                    s.kind == "fire" and s.level == "alarm" and s.subject == r and s.t >= t0
                )
            )
            take(out, hit, t)
        elif kind == "gas_leak":
            room = rec["room"]
            out = Outcome("gas_leak", room, "gas", False)
            hit = first(
                lambda s, r=room, t0=t: (
                    s.kind == "gas" and s.level in ("warning", "alarm") and s.subject == r and s.t >= t0
                )
            )
            take(out, hit, t)
        elif kind in ("cooking", "steam"):
            room = rec["room"]
            pre = [
                s
                for s in detections
                if s.kind == "fire" and s.subject == room and s.t >= t and s.level == "prealarm"
            ]
            result.nuisance_prealarms += len(pre)
            alarm = first(
                lambda s, r=room, t0=t: (
                    s.kind == "fire" and s.level == "alarm" and s.subject == r and s.t >= t0
                )
            )
            result.outcomes.append(
                Outcome(kind, room, "no fire alarm", alarm is None, note=f"{len(pre)} prealarm(s)")
            )
            if alarm is not None:
                used.add(alarm[0])
                result.false_alarms.append(alarm[1])
        elif kind == "bed_exit":
            for dev in rec.get("devices", []):
                if night is not None and not night.get(str(t), True):
                    result.outcomes.append(
                        Outcome("bed_exit", dev, "none (day time)", True, note="not night")
                    )
                    continue
                out = Outcome("bed_exit", dev, "bed_exit", False)
                hit = first(
                    lambda s, d=dev, t0=t: (
                        s.kind == "bed_exit" and s.subject == d and t0 - 5 <= s.t <= t0 + 60
                    )
                )
                take(out, hit, t)
        elif kind in ("sos", "power_loss", "test", "water_leak"):
            expected = {
                "sos": "sos",
                "power_loss": "device_offline",
                "test": "fire_test",
                "water_leak": "water_leak",
            }[kind]
            # a will's offline is stamped with the hub's clock, which runs ahead of simulated
            # time when the scenario runs faster than real time
            window = 5.0 if kind == "sos" else float("inf") if kind == "power_loss" else 60.0
            for dev in rec.get("devices", []):
                out = Outcome(kind, dev, expected, False)
                hit = first(
                    lambda s, d=dev, e=expected, t0=t, w=window: (
                        s.kind == e and d in (s.device_id, s.subject) and t0 - 1 <= s.t <= t0 + w
                    )
                )
                take(out, hit, t)
    for i, s in enumerate(detections):
        if i not in used and s.kind in ALARMS and s.level == "alarm":
            result.false_alarms.append(s)
    return result


# -- running a scenario against a live hub ----------------------------------------------


def night_flags(truth: Sequence[Mapping[str, Any]], tz: str = "Asia/Shanghai") -> dict[str, bool]:
    """Whether each bed-exit record fell in the default night hours (docs/detection.md)."""
    care = CareProfile()
    out: dict[str, bool] = {}
    for rec in truth:
        if rec["kind"] != "bed_exit":
            continue
        local = datetime.fromtimestamp(float(rec["t"]), ZoneInfo(tz))
        minute = local.hour * 60 + local.minute
        out[str(rec["t"])] = minute >= care.night_start_min or minute < care.night_end_min
    return out


def stored_detections(database_url: str, facilities: Sequence[str]) -> list[Seen]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(
            """
            SELECT kind, level, extract(epoch FROM t)::float8, subject, device_id,
                   extract(epoch FROM detected_at - t)::float8
            FROM detections WHERE facility_id = ANY(%s) ORDER BY t
            """,
            (list(facilities),),
        )
        return [Seen(*row) for row in cur.fetchall()]


def settle(
    database_url: str, facilities: Sequence[str], *, quiet_s: float = 5.0, timeout_s: float = 120.0
) -> None:
    """Wait until the hub has stored everything: no new messages for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM messages m JOIN devices d ON d.id = m.device_id"
                " WHERE d.facility_id = ANY(%s)",
                (list(facilities),),
            ).fetchone()
        count = int(row[0]) if row else 0
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)


def run_scenario_eval(
    scenario_path: Path,
    *,
    speed: float,
    mqtt_url: str | None,
    database_url: str | None,
    workdir: Path,
    progress: Callable[[float, int], None] | None = None,
) -> tuple[Score, list[dict[str, Any]]]:
    """Services (own ones unless URLs are given), a hub, the scenario, and the score."""
    scen = load_scenario(scenario_path)
    prefix = f"e{int(time.time()) % 100000:05d}"
    scen = scen.model_copy(update={"fleet": scen.fleet.model_copy(update={"prefix": prefix})})
    scen = scen.model_copy(update={"incidents": with_prefix(list(scen.incidents), prefix)})
    fleet = build_fleet(scen.fleet)
    with contextlib.ExitStack() as stack:
        if mqtt_url is None:
            broker = MosquittoServer(workdir / "mosquitto")
            broker.start()
            stack.callback(broker.stop)
            mqtt_url = broker.url
        if database_url is None:
            pg = PostgresServer(workdir / "postgres")
            pg.start()
            stack.callback(pg.destroy)
            database_url = pg.url
        asyncio.run(migrate(database_url))

        async def register() -> None:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await Registry(conn).apply(fleet.facility_file)

        asyncio.run(register())
        hub = Consumer("hub", mqtt_url, database_url, f"ankang-eval-{prefix}", workdir)
        hub.start()
        stack.callback(hub.forget_session)
        stack.callback(hub.stop)
        result = run_scenario(
            scen, fleet, MqttEndpoint.from_url(mqtt_url), speed=speed, truth_path=None, on_progress=progress
        )
        facilities = [f.id for f in fleet.facility_file.facilities]
        settle(database_url, facilities)
        time.sleep(2.0)  # a last tick for time-driven rules
        seen = stored_detections(database_url, facilities)
    truth: list[dict[str, Any]] = list(result["truth"])
    rooms = {d.id: f"{d.facility}/{d.room}" for d in fleet.facility_file.devices if d.room}
    return score(truth, seen, device_rooms=rooms, night=night_flags(truth)), truth


def report(score_: Score, scenario: str, command: str) -> str:
    """The scenario-eval region of docs/detection.md."""
    lines = [
        f"Scenario `{scenario}` through the whole pipeline (simulator → Mosquitto → hub → TimescaleDB), "
        f"scored with `{command}`. *Delay* is from the incident (the impact, for falls) to the detection's "
        "own time; *latency* is from the detection's time to its commit in the database.",
        "",
        "| incident | target | expected | matched | delay s | latency s | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in score_.outcomes:
        delay = "" if o.delay_s is None else f"{o.delay_s:.1f}"
        latency = "" if o.latency_s is None else f"{o.latency_s:.2f}"
        lines.append(
            f"| {o.incident} | {o.target} | {o.expected} | {'yes' if o.matched else '**no**'} | {delay} | "
            f"{latency} | {o.note} |"
        )
    lines += [
        "",
        f"Matched {sum(o.matched for o in score_.outcomes)} of {len(score_.outcomes)} incidents; "
        f"false alarms (fall, fire, gas, SOS matching no incident): {len(score_.false_alarms)}; "
        f"prealarms during nuisances: {score_.nuisance_prealarms}.",
    ]
    lines += [f"- false alarm: {s.kind} on {s.subject} at t={s.t:.1f}" for s in score_.false_alarms]
    return "\n".join(lines)
