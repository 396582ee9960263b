"""The signal models have the shapes the literature describes, and are reproducible."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulators.signals import FALL_KINDS, SMOKE_ALARM_PCT_M, Nuisance, RoomFire, WearableModel


def _run(model: WearableModel, seconds: int) -> np.ndarray:
    return np.vstack([model.block(float(s)) for s in range(seconds)])


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


@pytest.mark.parametrize("placement", ["waist", "chest", "wrist"])
@pytest.mark.parametrize("kind", FALL_KINDS)
def test_falls_have_free_fall_impact_rotation_and_stillness(placement, kind):
    model = WearableModel(placement, np.random.default_rng(11), rate_hz=50)
    model.schedule_fall(kind, 20.0)
    acc = _run(model, 50)
    mag = np.linalg.norm(acc, axis=1)
    impact = int(model.falls[0].impact * 50)
    before, after = (
        acc[impact - 150 : impact - 60].mean(axis=0),
        acc[impact + 100 : impact + 400].mean(axis=0),
    )
    dip = mag[impact - 30 : impact + 1].min()
    peak = mag[impact : impact + 15].max()
    if kind == "slump":
        assert dip < 0.9 and peak >= 1.4  # a slump barely leaves the ground
    else:
        assert dip < 0.6, f"free fall should read well under 1 g, got {dip:.2f}"
        assert peak >= 2.0, f"impact should reach 2 g or more, got {peak:.2f}"
    assert _angle(before, after) >= 45, "the gravity vector turns as the wearer ends up lying"
    assert mag[impact + 100 : impact + 400].std() < 0.05, "lying still after the fall"


def test_daily_living_has_no_impacts_of_fall_size():
    model = WearableModel("waist", np.random.default_rng(5))
    mag = np.linalg.norm(_run(model, 1800), axis=1)
    assert mag.max() < 3.0
    assert np.percentile(mag, 99) < 1.6
    assert 0.95 < np.median(mag) < 1.05


@pytest.mark.parametrize("rate", [20, 50, 100, 200])
def test_any_sampling_rate(rate):
    block = WearableModel("chest", np.random.default_rng(1), rate_hz=rate).block(0.0)
    assert block.shape == (rate, 3)


def test_same_seed_same_signal():
    a = _run(WearableModel("wrist", np.random.default_rng(3)), 30)
    b = _run(WearableModel("wrist", np.random.default_rng(3)), 30)
    c = _run(WearableModel("wrist", np.random.default_rng(4)), 30)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_t_squared_fire_raises_heat_smoke_and_co():
    fire = RoomFire(ignition=0.0, growth="medium")
    readings = [fire.sample(float(t)) for t in range(0, 301, 5)]
    temps = [r["temp_c"] for r in readings]
    assert all(b >= a for a, b in itertools.pairwise(temps)), "heat only grows in a growing fire"
    first_alarm = next(i * 5 for i, r in enumerate(readings) if r["smoke_density_pct_m"] >= SMOKE_ALARM_PCT_M)
    first_57 = next(i * 5 for i, r in enumerate(readings) if r["temp_c"] >= 57.0)
    assert first_alarm < first_57, "smoke reaches a detector before heat does"
    assert first_57 < 300
    assert readings[-1]["co_ppm"] > 100


def test_smouldering_fire_is_smoky_and_cool():
    fire = RoomFire(ignition=0.0, growth="smoldering")
    last = [fire.sample(float(t)) for t in range(0, 1801, 10)][-1]
    assert last["temp_c"] < 35
    assert last["smoke_density_pct_m"] > SMOKE_ALARM_PCT_M
    assert last["co_ppm"] > 50


@pytest.mark.parametrize("kind", ["cooking", "steam"])
def test_nuisances_stay_below_the_alarm_and_bring_no_heat(kind):
    nuisance = Nuisance(start=0.0, kind=kind, duration_s=900)
    readings = [nuisance.sample(float(t)) for t in range(0, 1500, 10)]
    assert max(r["smoke_density_pct_m"] for r in readings) < SMOKE_ALARM_PCT_M
    assert max(r["smoke_density_pct_m"] for r in readings) > 1.0
    assert max(r["temp_c"] for r in readings) < 30


def test_a_fall_scheduled_after_samples_were_generated_leaves_no_hole() -> None:
    model = WearableModel("waist", np.random.default_rng(1))
    for k in range(30):
        model.block(float(k))
    model.schedule_fall("forward", 60.0)
    samples = np.concatenate([model.block(float(k)) for k in range(30, 70)])
    assert np.isfinite(samples).all()
    assert np.abs(samples).max() < 16.0
    quiet = np.linalg.norm(samples[: 25 * 50], axis=1)  # 30-55 s: daily living, before the fall
    assert 0.5 < float(np.median(quiet)) < 1.5
