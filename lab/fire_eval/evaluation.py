"""The whole fire evaluation: every run, and their summary."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.fire_eval.cfast import DETECTORS_XYZ, CfastResult, cfast_runs
from lab.fire_eval.runs import (
    GROWTHS,
    NUISANCES,
    SIM_ROOMS,
    Growth,
    Mode,
    Progress,
    Run,
    sim_fire,
    sim_nuisance,
)

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
