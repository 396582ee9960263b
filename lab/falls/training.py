"""Training the fall classifier: the training set, the fit, the threshold, and the model file."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from hub.detectors.fall import (
    FEATURES,
    PLACEMENTS,
)
from lab.falls.dataset import (
    EVAL_ADL_NS,
    EVAL_FALLS_NS,
    HAPT_FOLDS,
    HAPT_RATE_HZ,
    HIT_AFTER_S,
    HIT_BEFORE_S,
    MONOTONIC,
    TRAIN_NS,
    Array,
    Progress,
    Recipe,
    Recording,
    TrainingSet,
    add_glitches,
    add_post_motion,
    adl_clip,
    as_device,
    candidates_of,
    draw_rate,
    fall_clip,
    hapt_fold,
    load_hapt,
    resample,
    seeded_rng,
)
from simulators.signals import FALL_KINDS

# -- training -----------------------------------------------------------------------------


def build_training_set(
    recipe: Recipe, hapt: Sequence[Recording], progress: Progress | None = None
) -> TrainingSet:
    """Features of every candidate in the training data, labelled 1 for the fall's own."""
    rows: list[Array] = []
    labels: list[int] = []
    groups: list[int] = []
    folds: list[int] = []
    counts: Counter[str] = Counter()
    report = progress or (lambda step, done, total: None)
    for i in range(recipe.fall_clips):
        rng = seeded_rng(recipe.seed, TRAIN_NS, i)
        kind = FALL_KINDS[i % len(FALL_KINDS)]
        placement = PLACEMENTS[(i // len(FALL_KINDS)) % len(PLACEMENTS)]
        clip = fall_clip(rng, kind, placement, draw_rate(rng))
        if rng.random() < recipe.post_motion_share:
            add_post_motion(clip, rng)
        acc = as_device(clip.acc, rng)
        cands, _ = candidates_of(acc, clip.rate_hz, placement)
        assert clip.impact is not None  # noqa: S101
        near = [c for c in cands if -HIT_BEFORE_S <= c.t - clip.impact <= HIT_AFTER_S]
        impact = clip.impact
        own = min(near, key=lambda c: abs(c.t - impact), default=None)
        counts["sim_falls"] += 1
        counts["sim_falls_without_candidate"] += own is None
        others = {id(c) for c in near if c is not own}  # bounces of the same fall: neither label
        for c in cands:
            if id(c) in others:
                continue
            rows.append(c.vector)
            labels.append(1 if c is own else 0)
            groups.append(-1)
            folds.append(i // (len(FALL_KINDS) * len(PLACEMENTS)) % HAPT_FOLDS)  # every fold has every cell
        report("simulated falls", i + 1, recipe.fall_clips)
    for i in range(recipe.adl_clips):
        rng = seeded_rng(recipe.seed, TRAIN_NS, 1_000_000 + i)
        placement = PLACEMENTS[i % len(PLACEMENTS)]
        clip = adl_clip(rng, placement, draw_rate(rng), recipe.adl_seconds)
        if rng.random() < recipe.glitch_share:
            add_glitches(clip.acc, clip.rate_hz, rng)
        acc = as_device(clip.acc, rng)
        cands, _ = candidates_of(acc, clip.rate_hz, placement)
        counts["sim_adl_candidates"] += len(cands)
        for c in cands:
            rows.append(c.vector)
            labels.append(0)
            groups.append(-1)
            folds.append(i // len(PLACEMENTS) % HAPT_FOLDS)
        report("simulated daily living", i + 1, recipe.adl_clips)
    for j, rec in enumerate(hapt):
        rng = seeded_rng(recipe.seed, TRAIN_NS, 2_000_000 + rec.subject * 100 + rec.experiment)
        streams: list[tuple[Array, float]] = [(rec.acc, HAPT_RATE_HZ)]
        for _ in range(recipe.hapt_augmented_passes):
            rate = draw_rate(rng)
            streams.append((as_device(resample(rec.acc, HAPT_RATE_HZ, rate), rng), float(rate)))
        for acc, hz in streams:
            cands, _ = candidates_of(acc, hz, "waist")
            counts["hapt_candidates"] += len(cands)
            for c in cands:
                rows.append(c.vector)
                labels.append(0)
                groups.append(rec.subject)
                folds.append(hapt_fold(rec.subject))
        report("HAPT daily living", j + 1, len(hapt))
    x = np.array(rows) if rows else np.empty((0, len(FEATURES)))
    return TrainingSet(
        x,
        np.array(labels, dtype=np.int64),
        np.array(groups, dtype=np.int64),
        np.array(folds, dtype=np.int64),
        dict(counts),
    )


def fit(training: TrainingSet, recipe: Recipe, exclude_subjects: Sequence[int] = ()) -> Any:
    """A gradient-boosted tree classifier on the training set (minus some HAPT subjects)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    keep = ~np.isin(training.groups, list(exclude_subjects))
    clf = HistGradientBoostingClassifier(
        max_iter=recipe.max_iter,
        learning_rate=recipe.learning_rate,
        max_leaf_nodes=recipe.max_leaf_nodes,
        min_samples_leaf=recipe.min_samples_leaf,
        l2_regularization=recipe.l2_regularization,
        monotonic_cst=[MONOTONIC.get(name, 0) for name in FEATURES],
        class_weight="balanced",
        early_stopping=False,
        random_state=recipe.seed,
    )
    clf.fit(training.x[keep], training.y[keep])
    return clf


THRESHOLDS: Final = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 ... 0.95


def choose_threshold(
    training: TrainingSet, recipe: Recipe, exclude_subjects: Sequence[int] = ()
) -> tuple[float, dict[str, Any]]:
    """The threshold from 5-fold cross-validation within the training set.

    Every training fall is scored by a model fitted without its fold; the threshold is the
    highest in ``THRESHOLDS`` that still finds ``recipe.min_cv_recall`` of them. Only the
    falls' scores are read, so no daily-living data steers it.
    """
    keep = ~np.isin(training.groups, list(exclude_subjects))
    part = TrainingSet(training.x[keep], training.y[keep], training.groups[keep], training.folds[keep])
    scores = np.zeros(len(part.y))
    for fold in range(HAPT_FOLDS):
        test = part.folds == fold
        if not test.any() or test.all():
            continue
        rest = TrainingSet(part.x[~test], part.y[~test], part.groups[~test], part.folds[~test])
        scores[test] = fit(rest, recipe).predict_proba(part.x[test])[:, 1]
    falls = scores[part.y == 1]
    recall = {th: float((falls >= th).mean()) if len(falls) else 0.0 for th in THRESHOLDS}
    good = [th for th in THRESHOLDS if recall[th] >= recipe.min_cv_recall]
    threshold = max(good) if good else THRESHOLDS[0]
    return threshold, {"cv_recall": {str(k): round(v, 4) for k, v in recall.items()}, "threshold": threshold}


def export_trees(classifier: Any) -> dict[str, npt.NDArray[Any]]:
    """The fitted trees of a binary HistGradientBoostingClassifier as padded arrays, for
    ``hub.detectors.fall.TreeEnsemble`` (which predicts without scikit-learn)."""
    trees = [predictors[0].nodes for predictors in classifier._predictors]
    width = max(len(nodes) for nodes in trees)
    if any(bool(nodes["is_categorical"].any()) for nodes in trees):
        raise ValueError("categorical splits are not supported by the exported format")
    out: dict[str, npt.NDArray[Any]] = {
        "feature": np.zeros((len(trees), width), np.int16),
        "threshold": np.zeros((len(trees), width), np.float64),
        "left": np.zeros((len(trees), width), np.int16),
        "right": np.zeros((len(trees), width), np.int16),
        "leaf": np.ones((len(trees), width), np.bool_),
        "value": np.zeros((len(trees), width), np.float64),
        "missing_left": np.zeros((len(trees), width), np.bool_),
    }
    for i, nodes in enumerate(trees):
        n = len(nodes)
        out["feature"][i, :n] = nodes["feature_idx"]
        out["threshold"][i, :n] = nodes["num_threshold"]
        out["left"][i, :n] = nodes["left"]
        out["right"][i, :n] = nodes["right"]
        out["leaf"][i, :n] = nodes["is_leaf"].astype(bool)
        out["value"][i, :n] = nodes["value"]
        out["missing_left"][i, :n] = nodes["missing_go_to_left"].astype(bool)
    out["baseline"] = np.asarray(float(np.ravel(classifier._baseline_prediction)[0]))
    return out


def save_model(
    classifier: Any, threshold: float, recipe: Recipe, path: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    import sklearn

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        **export_trees(classifier),
        "decision_threshold": np.asarray(threshold),
        "features": np.array(FEATURES),
    }
    with path.open("wb") as fh:  # a file object: savez would otherwise append ".npz"
        np.savez_compressed(fh, **arrays)
    metadata = {
        "name": path.stem,
        "version": 1,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "features": list(FEATURES),
        "threshold": threshold,
        "classifier": type(classifier).__name__,
        "sklearn": sklearn.__version__,
        "format": "numpy npz of the fitted trees (hub.detectors.fall.TreeEnsemble)",
        "numpy": np.__version__,
        "recipe": asdict(recipe),
        "seed_namespaces": {"train": TRAIN_NS, "eval_falls": EVAL_FALLS_NS, "eval_adl": EVAL_ADL_NS},
        "gyroscope": "accepted and resampled, not used by any feature",
        "data": (
            "simulated falls (5 kinds x waist/chest/wrist) and daily living from "
            "simulators.signals.WearableModel at 20-200 Hz in random sensor frames; "
            "real daily living from UCI HAPT (all 30 subjects, waist, 50 Hz, plus a pass "
            "resampled to a random rate); HAPT holds no falls"
        ),
        **extra,
    }
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def train(
    out: Path,
    recipe: Recipe | None = None,
    hapt: Sequence[Recording] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the training set, fit, and write the model to ``out`` and its metadata beside it."""
    recipe = recipe or Recipe()
    started = time.monotonic()
    hapt = load_hapt() if hapt is None else hapt
    training = build_training_set(recipe, hapt, progress)
    built = time.monotonic()
    clf = fit(training, recipe)
    threshold, cv = choose_threshold(training, recipe)
    fitted = time.monotonic()
    summary = {
        "rows": len(training.y),
        "positives": int(training.y.sum()),
        "counts": training.counts,
        "hapt_subjects": sorted({r.subject for r in hapt}),
        "threshold_selection": cv,
        "seconds": {
            "features": round(built - started, 1),
            "fit_and_cv": round(fitted - built, 1),
        },
    }
    metadata = save_model(clf, threshold, recipe, out, {"training": summary})
    summary["model"] = str(out)
    summary["model_bytes"] = out.stat().st_size
    summary["metadata"] = metadata["name"]
    return summary
