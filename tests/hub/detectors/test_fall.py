"""The fall detector finds simulated falls at any rate and placement, once each, and absorbs bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hub.detectors.fall import (
    FEATURES,
    MODEL_PATH,
    CandidateFinder,
    FallDetector,
    FallHit,
    FallModel,
    load_model,
)
from hub.errors import ConfigError
from simulators.signals import FALL_KINDS, WearableModel

EPOCH = 1_700_000_000.0


@pytest.fixture(scope="module")
def model() -> FallModel:
    return load_model()


def _signal(placement, rate, seconds, seed, falls=()):
    """Simulated acceleration and the impact times of the falls scheduled into it."""
    wearer = WearableModel(placement, np.random.default_rng(seed), rate_hz=rate)
    for kind, at in falls:
        wearer.schedule_fall(kind, at)
    acc = np.vstack([wearer.block(float(s)) for s in range(seconds)])
    return acc, [f.impact for f in wearer.falls]


def _feed(detector, acc, rate, t0=0.0, block_s=1.0):
    hits = []
    step = round(rate * block_s)
    for start in range(0, len(acc), step):
        hits += detector.feed(t0 + start / rate, rate, acc[start : start + step].astype(np.float32))
    return hits + detector.flush()


def _assert_one_hit(hits: list[FallHit], impact: float) -> FallHit:
    assert len(hits) == 1, [(round(h.t, 2), round(h.confidence, 3)) for h in hits]
    hit = hits[0]
    assert impact - 1.0 <= hit.t <= impact + 5.0
    assert hit.decided_at - hit.t <= 5.0
    assert hit.window[0] < hit.t < hit.window[1]
    assert 0.0 <= hit.confidence <= 1.0
    assert set(hit.features) == set(FEATURES)
    return hit


@pytest.mark.parametrize("placement", ["waist", "chest", "wrist"])
@pytest.mark.parametrize("kind", ["forward", "sideways", "slump"])
def test_detects_a_fall_at_each_placement(model, placement, kind):
    acc, (impact,) = _signal(placement, 50, 30, seed=3, falls=[(kind, 12.0)])
    _assert_one_hit(_feed(FallDetector(model, placement), acc, 50), impact)


@pytest.mark.parametrize("rate", [20, 50, 100, 200])
def test_detects_a_fall_at_any_rate_in_epoch_time(model, rate):
    acc, (impact,) = _signal("waist", rate, 30, seed=5, falls=[("backward", 14.0)])
    hit = _assert_one_hit(_feed(FallDetector(model, "waist"), acc, rate, t0=EPOCH), EPOCH + impact)
    assert hit.decided_at >= hit.t + 3.0  # it waited for the aftermath


@pytest.mark.parametrize("placement", ["waist", "wrist"])
def test_daily_living_raises_nothing(model, placement):
    acc, _ = _signal(placement, 50, 900, seed=21)
    detector = FallDetector(model, placement)
    assert _feed(detector, acc, 50) == []
    times, _, _ = detector.finder.recent(3600.0)
    assert len(times) <= 12 * 50  # memory stays bounded however long the stream


def test_one_impact_with_bounces_is_one_report(model):
    rate = 100
    acc, (impact,) = _signal("chest", rate, 30, seed=8, falls=[("forward", 10.0)])
    # two bounces on the floor after the impact, each a fresh candidate
    for delay in (1.4, 2.9):
        i = round((impact + delay) * rate)
        acc[i : i + 8] *= 3.0
    _assert_one_hit(_feed(FallDetector(model, "chest"), acc, rate), impact)


def test_a_second_fall_a_minute_later_is_reported(model):
    acc, impacts = _signal("waist", 50, 110, seed=13, falls=[("sideways", 10.0), ("forward", 72.0)])
    hits = _feed(FallDetector(model, "waist"), acc, 50)
    assert len(hits) == 2
    for hit, impact in zip(hits, impacts, strict=True):
        assert impact - 1.0 <= hit.t <= impact + 5.0


def test_duplicated_blocks_change_nothing(model):
    acc, (impact,) = _signal("waist", 50, 30, seed=4, falls=[("from_chair", 12.0)])
    detector = FallDetector(model, "waist")
    hits = []
    for s in range(30):
        block = acc[s * 50 : (s + 1) * 50]
        hits += detector.feed(float(s), 50, block)
        hits += detector.feed(float(s), 50, block)  # redelivered
        if s > 1:
            hits += detector.feed(float(s - 2), 50, acc[(s - 2) * 50 : (s - 1) * 50])  # late
    hits += detector.flush()
    _assert_one_hit(hits, impact)
    assert detector.finder.stats.dropped == 30 * 50 + 28 * 50


def test_out_of_order_blocks_do_not_crash_or_raise_a_fall(model):
    acc, _ = _signal("wrist", 50, 300, seed=9)
    detector = FallDetector(model, "wrist")
    order = list(range(300))
    rng = np.random.default_rng(1)
    for i in range(0, 296, 7):
        j = i + int(rng.integers(1, 4))
        order[i], order[j] = order[j], order[i]
    hits = []
    for s in order:
        hits += detector.feed(float(s), 50, acc[s * 50 : (s + 1) * 50])
    assert hits + detector.flush() == []
    assert detector.finder.stats.dropped > 0


def test_gaps_are_bridged_or_restart_the_stream(model):
    acc, (impact,) = _signal("waist", 50, 40, seed=6, falls=[("forward", 25.0)])
    detector = FallDetector(model, "waist")
    hits = []
    for s in range(40):
        if s in (5, 6, 11):
            continue  # blocks lost on the way
        block = acc[s * 50 : (s + 1) * 50]
        if s == 16:
            hits += detector.feed(float(s), 50, block[:20])
            hits += detector.feed(s + 0.6, 50, block[30:])  # 0.2 s missing: bridged
            continue
        hits += detector.feed(float(s), 50, block)
    hits += detector.flush()
    _assert_one_hit(hits, impact)
    assert detector.finder.stats.restarts == 2  # after block 4 and after block 10


def test_nan_and_infinite_samples_are_dropped(model):
    acc, (impact,) = _signal("chest", 50, 40, seed=10, falls=[("backward", 28.0)])
    acc[100:150] = np.nan  # a whole block
    acc[300:310, 1] = np.inf
    acc[500:505] = np.nan  # a short hole, bridged
    detector = FallDetector(model, "chest")
    _assert_one_hit(_feed(detector, acc, 50), impact)
    assert detector.finder.stats.dropped == 50 + 10 + 5


def test_saturated_and_garbage_blocks_raise_no_fall(model):
    rng = np.random.default_rng(2)
    acc, _ = _signal("waist", 50, 200, seed=12)
    acc[1000:1050] = 16.0  # a block pinned at full scale
    acc[2000:2100] = [-16.0, 16.0, -16.0]
    acc[3000:3250] = 0.0  # a part that reads nothing for 5 s
    acc[4000:4250] = [5.0, 5.0, 5.0]  # constant nonsense
    acc[5000:5150] = rng.uniform(-16, 16, (150, 3))  # noise at full scale
    acc[6000:6050] = rng.uniform(-2, 2, (50, 3))
    acc[7000] = [0.0, 0.0, 16.0]  # a lone spike
    acc[8000:8002] = [12.0, -9.0, 3.0]
    acc[9000:9050] = 1e6  # beyond any sensor: dropped
    assert _feed(FallDetector(model, "waist"), acc, 50) == []


def test_rate_changes_between_blocks(model):
    detector = FallDetector(model, "wrist")
    hits = []
    t = 0.0
    for rate, seconds in ((50, 20), (100, 15), (20, 15), (200, 10)):
        acc, _ = _signal("wrist", rate, seconds, seed=rate)
        hits += _feed(detector, acc, rate, t0=t)
        t += seconds
    acc, (impact,) = _signal("wrist", 25, 30, seed=14, falls=[("sideways", 12.0)])
    hits += _feed(detector, acc, 25, t0=t)
    _assert_one_hit(hits, t + impact)


def test_long_blocks_and_gyro_are_taken(model):
    rate = 100
    acc, (impact,) = _signal("waist", rate, 30, seed=15, falls=[("slump", 12.0)])
    gyro = np.random.default_rng(0).normal(0, 5, acc.shape)
    detector = FallDetector(model, "waist")
    hits = detector.feed(0.0, rate, acc[: 15 * rate], gyro[: 15 * rate])  # 15 s at once
    hits += detector.feed(15.0, rate, acc[15 * rate :], gyro[15 * rate :])
    _assert_one_hit(hits + detector.flush(), impact)
    times, kept, gyro_kept = detector.finder.recent(2.0)
    assert len(times) == len(kept) == len(gyro_kept) == 100  # 2 s at 50 Hz
    assert np.isfinite(gyro_kept).all()
    assert times[-1] == pytest.approx(30.0 - 1 / rate, abs=0.02)


def test_features_do_not_depend_on_how_the_sensor_is_mounted():
    acc, (impact,) = _signal("chest", 50, 25, seed=16, falls=[("forward", 10.0)])
    a, b = np.radians(37.0), np.radians(-110.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    found = []
    for frame in (np.eye(3), rz @ rx):
        finder = CandidateFinder("chest")
        cands = []
        for s in range(25):
            cands += finder.feed(float(s), 50, acc[s * 50 : (s + 1) * 50] @ frame.T)
        found.append([c for c in cands + finder.flush() if abs(c.t - impact) < 1.0])
    assert len(found[0]) == len(found[1]) == 1
    np.testing.assert_allclose(found[0][0].vector, found[1][0].vector, rtol=1e-6, atol=1e-6)


def test_every_kind_is_a_candidate_even_at_20_hz():
    for i, kind in enumerate(FALL_KINDS):
        acc, (impact,) = _signal("wrist", 20, 30, seed=30 + i, falls=[(kind, 12.0)])
        finder = CandidateFinder("wrist")
        cands = []
        for s in range(30):
            cands += finder.feed(float(s), 20, acc[s * 20 : (s + 1) * 20])
        assert any(abs(c.t - impact) < 1.0 for c in cands + finder.flush()), kind


def test_bad_arguments_are_absorbed(model):
    detector = FallDetector(model, "waist")
    assert detector.feed(0.0, 50, np.zeros((0, 3))) == []
    assert detector.feed(0.0, 50, np.zeros((50, 2))) == []
    assert detector.feed(float("nan"), 50, np.ones((50, 3))) == []
    assert detector.feed(0.0, 0.5, np.ones((50, 3))) == []  # too slow to show an impact
    assert detector.feed(0.0, 50, [["a", "b", "c"]]) == []
    assert detector.feed(0.0, 50, np.ones((50, 3)), gyro=np.ones((10, 3))) == []  # gyro ignored
    with pytest.raises(ValueError, match="placement"):
        FallDetector(model, "ankle")


def test_the_shipped_model_loads_once_and_refuses_strangers(tmp_path):
    assert load_model() is load_model()
    assert 0.5 <= load_model().threshold < 1.0
    with pytest.raises(ConfigError):
        load_model(tmp_path / "missing.npz")
    with np.load(MODEL_PATH, allow_pickle=False) as data:
        good = {name: data[name] for name in data.files}

    def written(name: str, **changes: object) -> object:
        (tmp_path / f"{name}.json").write_text("{}")
        path = tmp_path / f"{name}.npz"
        with path.open("wb") as fh:
            np.savez(fh, **{**good, **changes})
        return path

    # a pickled object inside is never loaded: arrays only
    with (tmp_path / "pickled.npz").open("wb") as fh:
        np.savez(fh, **{**good, "feature": np.array([os.getcwd], dtype=object)})
    (tmp_path / "pickled.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot load"):
        load_model(tmp_path / "pickled.npz")
    with pytest.raises(ConfigError, match="other features"):
        load_model(written("other", features=np.array(["peak_g"])))
    left = good["left"].copy()
    left[good["leaf"] == 0] = 10_000
    with pytest.raises(ConfigError, match="outside themselves"):
        load_model(written("wild", left=left))
    cyclic = good["left"].copy()
    cyclic[0, 0] = 0  # the root is its own child
    with pytest.raises(ConfigError, match="reached twice"):
        load_model(written("cyclic", left=cyclic))
    with pytest.raises(ConfigError, match="threshold"):
        load_model(written("sure", decision_threshold=np.asarray(1.5)))
    with pytest.raises(ConfigError, match="lacks"):
        load_model(_without(tmp_path, good, "value"))


def _without(tmp_path, good, name):
    (tmp_path / "partial.json").write_text("{}")
    path = tmp_path / "partial.npz"
    with path.open("wb") as fh:
        np.savez(fh, **{k: v for k, v in good.items() if k != name})
    return path
