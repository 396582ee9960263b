"""Honest evaluation of the fall detector: held-out simulated clips and HAPT by subject."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from hub.detectors.fall import (
    MODEL_PATH,
    PLACEMENTS,
    FallHit,
    FallModel,
    load_model,
)
from lab.falls.dataset import (
    EVAL_ADL_NS,
    EVAL_FALLS_NS,
    EVAL_RATES,
    HAPT_ACTIVITIES,
    HAPT_RATE_HZ,
    HIT_AFTER_S,
    HIT_BEFORE_S,
    Progress,
    Recipe,
    Recording,
    TrainingSet,
    add_glitches,
    adl_clip,
    as_device,
    detect,
    fall_clip,
    hapt_fold,
    load_hapt,
    resample,
    seeded_rng,
)
from lab.falls.training import build_training_set, choose_threshold, fit
from simulators.signals import FALL_KINDS

# -- evaluation ---------------------------------------------------------------------------

DOCS_REGION: Final = "fall-eval"  # the region of docs/detection.md that ``evaluate`` rewrites


@dataclass(frozen=True, slots=True)
class FallOutcome:
    kind: str
    placement: str
    rate: int
    detected: bool
    delay_s: float | None
    false_hits: int  # detections in the clip away from the fall


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def poisson_interval(k: int) -> tuple[float, float]:
    """Exact (Garwood) 95 % interval of the mean of a Poisson count ``k``."""

    def cdf(mean: float, upto: int) -> float:
        return sum(math.exp(-mean + i * math.log(mean) - math.lgamma(i + 1)) for i in range(upto + 1))

    def solve(f: Callable[[float], float]) -> float:
        lo, hi = 1e-9, 10.0 * k + 20.0  # f is increasing from negative to positive on this span
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda m: 0.975 - cdf(m, k - 1))
    upper = solve(lambda m: 0.025 - cdf(m, k))
    return lower, upper


def _share(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def eval_simulated_falls(
    model: FallModel, seed: int, per_cell: int, progress: Progress | None = None
) -> list[FallOutcome]:
    """Held-out simulated falls: every kind x placement x rate, ``per_cell`` of each."""
    cells = [(k, p, r) for k in FALL_KINDS for p in PLACEMENTS for r in EVAL_RATES]
    out: list[FallOutcome] = []
    total = len(cells) * per_cell
    for i in range(total):
        kind, placement, rate = cells[i % len(cells)]
        rng = seeded_rng(seed, EVAL_FALLS_NS, i)
        clip = fall_clip(rng, kind, placement, rate)
        assert clip.impact is not None  # noqa: S101
        hits, _ = detect(model, as_device(clip.acc, rng), clip.rate_hz, placement)
        near = [h for h in hits if -HIT_BEFORE_S <= h.t - clip.impact <= HIT_AFTER_S]
        delay = near[0].decided_at - clip.impact if near else None
        out.append(FallOutcome(kind, placement, rate, bool(near), delay, len(hits) - len(near)))
        if progress:
            progress("held-out simulated falls", i + 1, total)
    return out


def eval_simulated_adl(
    model: FallModel,
    seed: int,
    per_cell: int,
    seconds: float,
    progress: Progress | None = None,
    glitches: bool = False,
) -> list[tuple[str, int, int]]:
    """Held-out daily-living clips: (placement, rate, detections) per clip."""
    cells = [(p, r) for p in PLACEMENTS for r in EVAL_RATES]
    out: list[tuple[str, int, int]] = []
    total = len(cells) * per_cell
    offset = 1_000_000 if glitches else 0
    for i in range(total):
        placement, rate = cells[i % len(cells)]
        rng = seeded_rng(seed, EVAL_ADL_NS, offset + i)
        clip = adl_clip(rng, placement, rate, seconds)
        if glitches:
            add_glitches(clip.acc, clip.rate_hz, rng)
        hits, _ = detect(model, as_device(clip.acc, rng), clip.rate_hz, placement)
        out.append((placement, rate, len(hits)))
        if progress:
            progress("held-out simulated daily living" + (" with glitches" if glitches else ""), i + 1, total)
    return out


def eval_hapt(
    training: TrainingSet,
    recipe: Recipe,
    hapt: Sequence[Recording],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """False alarms on HAPT, each subject scored by a model that never saw that subject."""
    folds = sorted({hapt_fold(r.subject) for r in hapt})
    hours = sum(r.hours for r in hapt)
    alarms: list[dict[str, Any]] = []
    alarms_20: list[dict[str, Any]] = []
    triggers = candidates = 0
    done = 0
    for fold in folds:
        held_out = sorted({r.subject for r in hapt if hapt_fold(r.subject) == fold})
        threshold, _ = choose_threshold(training, recipe, exclude_subjects=held_out)
        model = FallModel(fit(training, recipe, exclude_subjects=held_out), threshold)
        for rec in (r for r in hapt if r.subject in held_out):
            hits, detector = detect(model, rec.acc, HAPT_RATE_HZ, "waist")
            triggers += detector.finder.stats.triggers
            candidates += detector.finder.stats.candidates
            alarms.extend(_hapt_alarm(rec, h) for h in hits)
            hits_20, _ = detect(model, resample(rec.acc, HAPT_RATE_HZ, 20.0), 20.0, "waist")
            alarms_20.extend(_hapt_alarm(rec, h) for h in hits_20)
            done += 1
            if progress:
                progress("HAPT false alarms (5-fold by subject)", done, len(hapt))
    return {
        "hours": round(hours, 3),
        "subjects": len({r.subject for r in hapt}),
        "folds": len(folds),
        "false_alarms": len(alarms),
        "per_hour": round(len(alarms) / hours, 4) if hours else None,
        "per_hour_ci95": [round(v / hours, 4) for v in poisson_interval(len(alarms))] if hours else None,
        "alarms": alarms,
        "false_alarms_20hz": len(alarms_20),
        "per_hour_20hz": round(len(alarms_20) / hours, 4) if hours else None,
        "alarms_20hz": alarms_20,
        "candidates_per_hour": round(candidates / hours, 1) if hours else None,
    }


def _hapt_alarm(rec: Recording, hit: FallHit) -> dict[str, Any]:
    i = min(len(rec.labels) - 1, max(0, round(hit.t * HAPT_RATE_HZ)))
    return {
        "subject": rec.subject,
        "experiment": rec.experiment,
        "t": round(hit.t, 2),
        "activity": HAPT_ACTIVITIES.get(int(rec.labels[i]), "unknown"),
        "confidence": round(hit.confidence, 3),
    }


def _group(outcomes: Sequence[FallOutcome], key: Callable[[FallOutcome], Any]) -> dict[str, Any]:
    keys = sorted({key(o) for o in outcomes}, key=lambda v: (str(type(v)), v))
    return {
        str(k): _share(
            sum(o.detected for o in outcomes if key(o) == k), sum(1 for o in outcomes if key(o) == k)
        )
        for k in keys
    }


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def evaluate(
    model_path: Path | None = None,
    seed: int = 11,
    falls_per_cell: int = 20,
    adl_per_cell: int = 25,
    adl_seconds: float = 60.0,
    hapt: Sequence[Recording] | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[FallOutcome]]:
    """Score the shipped model on held-out simulated clips and HAPT by subject folds."""
    started = time.monotonic()
    path = Path(model_path or MODEL_PATH)
    model = load_model(path)
    meta = dict(model.metadata)
    recipe = Recipe(**meta["recipe"])
    falls = eval_simulated_falls(model, seed, falls_per_cell, progress)
    adl = eval_simulated_adl(model, seed, adl_per_cell, adl_seconds, progress)
    glitch = eval_simulated_adl(model, seed, max(1, adl_per_cell // 5), adl_seconds, progress, glitches=True)
    sim_done = time.monotonic()
    hapt = load_hapt() if hapt is None else hapt
    training = build_training_set(recipe, hapt, progress)
    hapt_result = eval_hapt(training, recipe, hapt, progress)
    delays = [o.delay_s for o in falls if o.delay_s is not None]
    adl_clean = sum(1 for _, _, n in adl if n == 0)
    adl_hours = len(adl) * adl_seconds / 3600.0
    summary: dict[str, Any] = {
        "generated": datetime.now(UTC).date().isoformat(),
        "model": {
            "path": path.name,
            "created": meta.get("created"),
            "sklearn": meta.get("sklearn"),
            "threshold": model.threshold,
            "train_seed": recipe.seed,
            "training_seconds": meta.get("training", {}).get("seconds"),
        },
        "eval_seed": seed,
        "simulated": {
            "sensitivity": _share(sum(o.detected for o in falls), len(falls)),
            "by_kind": _group(falls, lambda o: o.kind),
            "by_placement": _group(falls, lambda o: o.placement),
            "by_rate": _group(falls, lambda o: o.rate),
            "fall_clips_with_other_detections": sum(1 for o in falls if o.false_hits),
            "specificity": _share(adl_clean, len(adl)),
            "specificity_by_placement": {
                p: _share(sum(1 for q, _, n in adl if q == p and n == 0), sum(1 for q, _, _ in adl if q == p))
                for p in PLACEMENTS
            },
            "specificity_by_rate": {
                str(r): _share(
                    sum(1 for _, q, n in adl if q == r and n == 0), sum(1 for _, q, _ in adl if q == r)
                )
                for r in EVAL_RATES
            },
            "adl_clip_seconds": adl_seconds,
            "adl_hours": round(adl_hours, 2),
            "adl_detections": sum(n for _, _, n in adl),
            "glitch_clips": len(glitch),
            "glitch_clips_with_detection": sum(1 for _, _, n in glitch if n),
        },
        "delay_s": {
            "median": _percentile(delays, 50),
            "p95": _percentile(delays, 95),
            "max": round(max(delays), 2) if delays else None,
        },
        "hapt": hapt_result,
        "seconds": {
            "simulated": round(sim_done - started, 1),
            "hapt": round(time.monotonic() - sim_done, 1),
        },
    }
    return summary, falls
