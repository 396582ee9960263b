"""Air at a ceiling smoke detector, read and reported the way a detector in the field does and
replayed through the hub's ``RoomFireDetector``; the simulated fires and nuisances."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np

from hub.detectors.base import Detection
from hub.detectors.fire import (
    CLEAR_AFTER_S,
    RoomFireDetector,
)
from simulators.signals import SMOKE_ALARM_PCT_M, Nuisance, RoomFire

Mode = Literal["full", "telemetry"]
Growth = Literal["slow", "medium", "fast", "smoldering"]
Air = Callable[[float], Mapping[str, float]]
Progress = Callable[[str], None]

EPOCH0: Final = 1_750_000_000.0  # device time of every run's start; any fixed epoch will do


PERIOD_S: Final = 10.0  # a smoke detector samples every 10 s (simulators/fleet.py)
PREROLL_S: Final = 600.0  # quiet air before ignition, for the baseline
FIRE_WINDOW_S: Final = 1800.0  # a fire not alarmed within 30 min of ignition is a miss
AMBIENT_C: Final = 22.0
# Sensor noise, one standard deviation: a thermistor's ±0.3 °C, a photoelectric chamber's
# drift of a few hundredths of %/m, an electrochemical CO cell's ±2 ppm near zero.
NOISE: Final[Mapping[str, float]] = {"temp_c": 0.3, "smoke_density_pct_m": 0.05, "co_ppm": 2.0}
# What the simulator counts as a significant change (simulators/engine.py).
REPORT_DELTAS: Final[Mapping[str, float]] = {
    "temp_c": 1.0,
    "smoke_density_pct_m": 0.5,
    "co_ppm": 5.0,
    "smoke": 0.5,
}
GROWTHS: Final[tuple[Growth, ...]] = ("slow", "medium", "fast", "smoldering")
# (name, detector radii from the plume in m, room volume m³, ceiling m); two radii are two
# detectors in one room.
SIM_ROOMS: Final[tuple[tuple[str, tuple[float, ...], float, float], ...]] = (
    ("small room, detector 1 m", (1.0,), 30.0, 2.5),
    ("bedroom, detector 1.5 m", (1.5,), 40.0, 2.7),
    ("living room, detector 3 m", (3.0,), 60.0, 2.7),
    ("living room, two detectors", (1.5, 3.0), 60.0, 2.7),
)
NUISANCES: Final[tuple[tuple[Literal["cooking", "steam"], float], ...]] = (
    ("cooking", 900.0),
    ("cooking", 2400.0),
    ("steam", 900.0),
    ("steam", 1800.0),
)
DOCS_REGION: Final = "fire-eval"  # the region of docs/detection.md that ``ankang eval fire`` rewrites


# -- a detector in the field ------------------------------------------------------------


@dataclass(slots=True)
class Reading:
    t: float
    metrics: dict[str, float]


@dataclass
class Sampler:
    """One smoke detector: samples, noise, report on change or every sixth sample, latch."""

    device_id: str
    rng: np.random.Generator
    ticks: int = 0
    latched: bool = False
    reported: dict[str, float] = field(default_factory=dict)

    def sample(
        self, t: float, air: Mapping[str, float]
    ) -> tuple[list[tuple[str, dict[str, Any]]], Reading | None]:
        measured = {
            k: round(max(0.0 if k != "temp_c" else -60.0, air[k] + float(self.rng.normal(0.0, s))), 2)
            for k, s in NOISE.items()
        }
        events: list[tuple[str, dict[str, Any]]] = []
        smoke = measured["smoke_density_pct_m"]
        if not self.latched and smoke >= SMOKE_ALARM_PCT_M:
            self.latched = True
            events.append(("smoke_alarm", {"obscuration_pct_m": round(smoke, 2)}))
        elif self.latched and smoke < SMOKE_ALARM_PCT_M / 2:
            self.latched = False
            events.append(("smoke_alarm_cleared", {}))
        values = {**measured, "smoke": float(self.latched)}
        self.ticks += 1
        changed = any(abs(values[k] - self.reported.get(k, 0.0)) >= d for k, d in REPORT_DELTAS.items())
        if changed or self.ticks % 6 == 1:
            self.reported = dict(values)
            return events, Reading(t, values)
        return events, None


@dataclass
class Run:
    """One replay: what the detectors reported and what the room detector made of it."""

    source: str
    scenario: str
    growth: str
    mode: Mode
    seed: int
    onset: float  # ignition, or the start of the nuisance (device time)
    fire: bool
    detections: list[Detection] = field(default_factory=list)
    readings: dict[str, list[Reading]] = field(default_factory=dict)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    reference: dict[str, float | None] = field(default_factory=dict)  # CFAST's own device activations

    def first(self, level: str) -> Detection | None:
        return next((d for d in self.detections if d.kind == "fire" and d.level == level), None)

    def after(self, level: str) -> float | None:
        hit = self.first(level)
        return None if hit is None else round(hit.t - self.onset, 1)

    def count(self, level: str) -> int:
        return sum(1 for d in self.detections if d.kind == "fire" and d.level == level)

    def early(self) -> int:
        """Fire detections before the fire started: false alarms on quiet air."""
        return sum(1 for d in self.detections if d.kind == "fire" and d.level != "clear" and d.t < self.onset)

    def row(self) -> dict[str, Any]:
        alarm = self.first("alarm")
        return {
            "source": self.source,
            "scenario": self.scenario,
            "growth": self.growth,
            "mode": self.mode,
            "seed": self.seed,
            "prealarm_s": self.after("prealarm"),
            "alarm_s": self.after("alarm"),
            "alarm_causes": list(alarm.detail.get("causes", [])) if alarm else [],
            "alarm_confidence": alarm.confidence if alarm else None,
            "detectors": alarm.detail.get("detectors") if alarm else None,
            "prealarms": self.count("prealarm"),
            "alarms": self.count("alarm"),
            "clears": self.count("clear"),
            "before_onset": self.early(),
            "reference": dict(self.reference),
        }


def replay(
    airs: Mapping[str, Air],
    *,
    onset: float,
    end: float,
    mode: Mode,
    seed: int,
    source: str,
    scenario: str,
    growth: str,
    fire: bool,
) -> Run:
    """Sample ``airs`` (one per detector) from ``EPOCH0`` to ``end`` and feed the room detector."""
    rng = np.random.default_rng(seed)
    detector = RoomFireDetector("eval/room")
    run = Run(source, scenario, growth, mode, seed, onset, fire)
    samplers = {name: Sampler(name, np.random.default_rng([seed, i])) for i, name in enumerate(airs)}
    clocks = {name: EPOCH0 + float(rng.uniform(0.0, 5.0)) for name in airs}
    run.readings = {name: [] for name in airs}
    while True:
        name = min(clocks, key=lambda n: clocks[n])
        t = clocks[name]
        if t >= end:
            break
        clocks[name] = t + PERIOD_S
        events, reading = samplers[name].sample(t, airs[name](t))
        if mode == "full":
            for event, detail in events:
                run.events.append((t, name, event))
                run.detections += detector.event(name, t, event, detail)
        if reading is not None:
            run.readings[name].append(reading)
            metrics = dict(reading.metrics)
            if mode == "telemetry":
                metrics.pop("smoke")
            run.detections += detector.reading(name, t, metrics)
        run.detections += detector.tick(t)
    return run


# -- simulated fires and nuisances ------------------------------------------------------


def _sim_fire_airs(
    growth: Growth, radii: Sequence[float], room_m3: float, ceiling_m: float
) -> dict[str, Air]:
    onset = EPOCH0 + PREROLL_S
    airs: dict[str, Air] = {}
    for i, r in enumerate(radii):
        fire = RoomFire(ignition=onset, growth=growth, r_m=r, room_m3=room_m3, ceiling_m=ceiling_m)
        airs[f"smoke-{i + 1}"] = fire.sample
    return airs


def sim_fire(growth: Growth, room: int, seed: int, mode: Mode) -> Run:
    name, radii, volume, ceiling = SIM_ROOMS[room]
    onset = EPOCH0 + PREROLL_S
    return replay(
        _sim_fire_airs(growth, radii, volume, ceiling),
        onset=onset,
        end=onset + FIRE_WINDOW_S,
        mode=mode,
        seed=seed,
        source="sim",
        scenario=name,
        growth=growth,
        fire=True,
    )


def sim_nuisance(kind: Literal["cooking", "steam"], duration_s: float, seed: int, mode: Mode) -> Run:
    onset = EPOCH0 + PREROLL_S
    source = Nuisance(start=onset, kind=kind, duration_s=duration_s, ambient_c=AMBIENT_C)
    # the fumes fade over 10 min; then long enough for the episode to clear
    end = onset + duration_s + 600.0 + CLEAR_AFTER_S + 300.0
    return replay(
        {"smoke-1": source.sample},
        onset=onset,
        end=end,
        mode=mode,
        seed=seed,
        source="sim",
        scenario=f"{kind}, {duration_s / 60:.0f} min",
        growth=kind,
        fire=False,
    )
