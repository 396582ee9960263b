"""Training data, splits, a small end-to-end training run and the report region."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest

from hub.detectors.fall import FEATURES, FallDetector, load_model
from lab.falls.dataset import (
    HAPT_ACTIVITIES,
    DatasetError,
    Recipe,
    _HaptUnpickler,
    as_device,
    fall_clip,
    hapt_fold,
    load_hapt,
)
from lab.falls.evaluation import wilson
from lab.falls.report import write_report
from lab.falls.training import THRESHOLDS, build_training_set, train


@pytest.fixture(scope="module")
def hapt():
    return load_hapt()


def test_hapt_is_30_subjects_of_waist_acceleration_in_g(hapt):
    assert len({r.subject for r in hapt}) == 30
    hours = sum(r.hours for r in hapt)
    assert 6.0 < hours < 6.5
    for rec in hapt:
        assert rec.acc.shape == rec.gyro.shape == (len(rec.labels), 3)
        assert set(np.unique(rec.labels)) <= set(HAPT_ACTIVITIES)
        assert 0.95 < float(np.median(np.linalg.norm(rec.acc, axis=1))) < 1.05
    labels = set(np.concatenate([r.labels for r in hapt]).tolist())
    assert {9, 11} <= labels  # sit-to-lie and stand-to-lie transitions are there


def test_the_hapt_reader_refuses_anything_but_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    payload = pickle.dumps({1: [Evil()]}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"HAPT pickle: \w+\.print"):
        _HaptUnpickler(io.BytesIO(payload)).load()
    broken = tmp_path / "HAPT.pkl.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(DatasetError):
        load_hapt(broken)


def test_subject_folds_partition_the_subjects():
    folds = [hapt_fold(s) for s in range(1, 31)]
    assert sorted(folds.count(f) for f in set(folds)) == [6] * 5


def test_fall_clips_put_the_impact_where_they_say():
    for i, kind in enumerate(("forward", "slump")):
        rng = np.random.default_rng(i)
        clip = fall_clip(rng, kind, "wrist", 40)
        assert np.isfinite(clip.acc).all()
        mag = np.linalg.norm(clip.acc, axis=1)
        k = round(clip.impact * 40)
        assert mag[k - 4 : k + 8].max() > 1.6
        assert len(clip.acc) / 40 >= clip.impact + 14


def test_a_device_frame_keeps_the_magnitude():
    rng = np.random.default_rng(3)
    acc = np.tile([0.0, 0.0, 1.0], (500, 1))
    mag = np.linalg.norm(as_device(acc, rng), axis=1)
    assert abs(float(mag.mean()) - 1.0) < 0.06


def test_wilson_interval():
    lo, hi = wilson(97, 100)
    assert lo < 0.97 < hi
    assert wilson(0, 0) == (0.0, 1.0)


def test_training_end_to_end_writes_a_loadable_model(tmp_path, hapt):
    recipe = Recipe(seed=3, fall_clips=60, adl_clips=3, adl_seconds=120, max_iter=40, min_samples_leaf=5)
    path = tmp_path / "fall-small.npz"
    summary = train(path, recipe, hapt=hapt[:2])
    assert summary["positives"] >= 59  # a candidate for (nearly) every fall
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["features"] == list(FEATURES)
    assert meta["recipe"]["seed"] == 3
    assert meta["training"]["hapt_subjects"] == [1]
    model = load_model(path)
    assert model.threshold in THRESHOLDS
    clip = fall_clip(np.random.default_rng(99), "sideways", "waist", 50)
    detector = FallDetector(model, "waist")
    hits = []
    for s in range(0, len(clip.acc), 50):
        hits += detector.feed(s / 50, 50, clip.acc[s : s + 50])
    hits += detector.flush()
    assert any(abs(h.t - clip.impact) < 1.0 for h in hits)


def test_training_sets_are_reproducible(hapt):
    recipe = Recipe(seed=5, fall_clips=10, adl_clips=1, adl_seconds=60)
    a = build_training_set(recipe, hapt[:1])
    b = build_training_set(recipe, hapt[:1])
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.folds, b.folds)
    assert (a.groups[a.y == 1] == -1).all()


DOCS_START, DOCS_END = "<!-- fall-eval:start -->", "<!-- fall-eval:end -->"


def test_the_report_region_is_replaced_or_appended(tmp_path):
    docs = tmp_path / "detection.md"
    docs.write_text("# Detection\n\nintro\n")
    write_report(docs, "first\n")
    assert docs.read_text().endswith(f"{DOCS_START}\nfirst\n{DOCS_END}\n")
    docs.write_text(docs.read_text() + "\n## After\n")
    write_report(docs, "second\n")
    text = docs.read_text()
    assert "first" not in text
    assert f"{DOCS_START}\nsecond\n{DOCS_END}" in text
    assert text.startswith("# Detection\n\nintro\n") and text.endswith("## After\n")
