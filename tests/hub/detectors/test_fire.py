"""Room fire and gas detectors: thresholds, transitions, agreement and bad input."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from hub.detectors.base import Detection
from hub.detectors.fire import (
    CLEAR_AFTER_S,
    CO_MIN_ALARM_MIN,
    MAX_DEVICES,
    RoomFireDetector,
    RoomGasDetector,
    co_minutes_to_alarm,
    rise_rate_c_per_min,
)
from simulators.signals import Nuisance

T0 = 1_750_000_000.0
ROOM = "home-1/bedroom"


def air(temp: float = 22.0, smoke: float = 0.0, co: float = 0.0) -> dict[str, float]:
    return {"temp_c": temp, "smoke_density_pct_m": smoke, "co_ppm": co, "smoke": 0.0, "battery_pct": 90.0}


def warm_up(det: RoomFireDetector, device: str = "smoke-1", until: float = T0, step: float = 60.0) -> None:
    """Ten minutes of a quiet room, so that the detector knows its baseline."""
    t = until - 600.0
    while t < until:
        assert det.reading(device, t, air()) == []
        t += step


def fire(found: list[Detection]) -> list[Detection]:
    return [d for d in found if d.kind == "fire"]


# -- heat ---------------------------------------------------------------------------------


def test_fixed_heat_prealarm_then_alarm_on_a_slow_rise() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    for k in range(60):  # 1 °C a minute: too slow for any rate rule
        found += det.reading("smoke-1", T0 + 60.0 * k, air(temp=22.0 + k))
    levels = [(d.level, d.detail["causes"]) for d in fire(found)]
    assert levels == [("prealarm", ["heat"]), ("alarm", ["fixed_heat"])]
    alarm = fire(found)[1]
    assert alarm.detail["readings"]["smoke-1"]["temp_c"] >= 57.0
    # two readings over 57 °C: the first at 57, the alarm at 58
    assert alarm.t == T0 + 60.0 * 36
    assert alarm.window is not None and alarm.window[0] < alarm.t
    assert alarm.device_id == "smoke-1"
    assert alarm.subject == ROOM


def test_rate_of_rise_alarms_before_the_fixed_temperature() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    temps = {}
    for k in range(40):  # 12 °C a minute, a reading every 10 s
        t = T0 + 10.0 * k
        temps[t] = 22.0 + 2.0 * k
        found += det.reading("smoke-1", t, air(temp=temps[t]))
    alarm = next(d for d in fire(found) if d.level == "alarm")
    assert "rate_of_rise" in alarm.detail["causes"]
    assert "fixed_heat" not in alarm.detail["causes"]
    assert temps[alarm.t] < 40.0
    rise = alarm.detail["readings"]["smoke-1"]["rise_c_per_min"]
    assert rise == pytest.approx(12.0, abs=0.5)


def test_multi_criteria_alarms_at_46_when_rising_moderately() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    temps = {}
    for k in range(80):  # 6 °C a minute: above 4 °C/min, below the 8.3 °C/min rate of rise
        t = T0 + 10.0 * k
        temps[t] = 22.0 + k
        found += det.reading("smoke-1", t, air(temp=temps[t]))
    fires = fire(found)
    assert [d.level for d in fires] == ["prealarm", "alarm"]
    pre, alarm = fires
    assert pre.detail["causes"] == ["heat"]
    assert 36.0 <= temps[pre.t] < 46.0
    assert alarm.detail["causes"] == ["multi_criteria"]
    assert 46.0 <= temps[alarm.t] < 50.0


def test_a_small_noisy_jump_is_not_a_rate_of_rise() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    rng = np.random.default_rng(7)
    found: list[Detection] = []
    for k in range(180):  # a heater switched on: +4 °C within a minute, then noise
        t = T0 + 10.0 * k
        temp = 22.0 + min(4.0, 0.7 * k) + float(rng.normal(0.0, 0.3))
        found += det.reading("smoke-1", t, air(temp=temp))
    assert found == []


def test_rise_rate_is_robust_to_one_absurd_sample() -> None:
    points = [(10.0 * k, 22.0 + 0.1 * k) for k in range(7)]
    points[3] = (30.0, 400.0)
    rate = rise_rate_c_per_min(points)
    assert rate is not None and rate < 2.0
    assert rise_rate_c_per_min(points[:2]) is None  # too few points


# -- CO (UL 2034) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ppm", "low_min", "high_min"),
    [(400.0, 4.0, 15.0), (150.0, 10.0, 50.0), (70.0, 60.0, 240.0)],
)
def test_co_alone_alarms_inside_the_ul2034_window(ppm: float, low_min: float, high_min: float) -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    k = 0
    while not any(d.level == "alarm" for d in found) and k < 400:
        k += 1
        found += det.reading("smoke-1", T0 + 60.0 * k, air(co=ppm))  # a stable report every minute
    alarm = next(d for d in fire(found) if d.level == "alarm")
    minutes = (alarm.t - T0) / 60.0
    assert low_min <= minutes <= high_min
    assert alarm.detail["causes"] == ["co"]
    assert [d.level for d in fire(found)] == ["prealarm", "alarm"]
    assert fire(found)[0].detail["causes"] == ["co_rising"]


def test_co_at_30_ppm_never_alarms() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    for k in range(1, 30 * 24 * 30 + 1):  # 30 days, a reading every two minutes
        found += det.reading("smoke-1", T0 + 120.0 * k, air(co=30.0))
    assert found == []
    assert math.isinf(co_minutes_to_alarm(30.0))


def test_co_curve_is_monotonic() -> None:
    times = [co_minutes_to_alarm(c) for c in (45, 70, 100, 150, 300, 400, 1000, 5000)]
    assert all(a > b for a, b in pairwise(times) if b > CO_MIN_ALARM_MIN)
    assert times[-1] == CO_MIN_ALARM_MIN
    assert co_minutes_to_alarm(400.0) == pytest.approx(8.0)


# -- smoke, events, nuisances -------------------------------------------------------------


def test_smoke_alarm_event_raises_alarm_at_once() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found = det.event("smoke-1", T0 + 5.0, "smoke_alarm", {"obscuration_pct_m": 4.2})
    assert len(found) == 1
    alarm = found[0]
    assert (alarm.kind, alarm.level, alarm.t, alarm.device_id) == ("fire", "alarm", T0 + 5.0, "smoke-1")
    assert alarm.detail["causes"] == ["smoke_event"]
    assert alarm.detail["detectors"] == 1
    # the same event again (redelivery) and a later one change nothing
    assert det.event("smoke-1", T0 + 5.0, "smoke_alarm", None) == []
    assert det.reading("smoke-1", T0 + 10.0, {**air(smoke=5.0), "smoke": 1.0}) == []


def test_latched_smoke_metric_counts_as_the_detectors_alarm() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found = det.reading("smoke-1", T0 + 1.0, {**air(smoke=4.5), "smoke": 1.0})
    assert [(d.level, d.detail["causes"]) for d in found] == [("alarm", ["smoke_event"])]


def test_test_event_is_fire_test_not_fire() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found = det.event("smoke-1", T0, "test", None)
    assert [(d.kind, d.level) for d in found] == [("fire_test", "info")]
    assert det.event("smoke-1", T0, "test", None) == []  # a duplicate
    # a test button sounds the detector: its alarm and latched flag right after are the test
    assert det.event("smoke-1", T0 + 2.0, "smoke_alarm", None) == []
    assert det.reading("smoke-1", T0 + 3.0, {**air(), "smoke": 1.0}) == []
    assert det.event("smoke-1", T0 + 20.0, "smoke_alarm_cleared", None) == []
    assert det.level == "none"
    # later, a real alarm is a fire again
    later = det.event("smoke-1", T0 + 600.0, "smoke_alarm", None)
    assert [(d.kind, d.level) for d in later] == [("fire", "alarm")]


@pytest.mark.parametrize("kind", ["cooking", "steam"])
def test_cooking_and_steam_are_a_prealarm_at_most(kind: str) -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    source = Nuisance(start=T0, kind=kind, duration_s=1800.0)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    found: list[Detection] = []
    t = T0
    while t < T0 + 1800.0 + 600.0 + CLEAR_AFTER_S + 120.0:
        s = source.sample(t)
        noisy = {k: max(0.0, v + float(rng.normal(0.0, 0.05))) for k, v in s.items()}
        found += det.reading("smoke-1", t, {**noisy, "smoke": 0.0})
        found += det.tick(t)
        t += 10.0
    fires = fire(found)
    assert [d.level for d in fires] == ["prealarm", "clear"]
    assert fires[0].detail["causes"] == ["smoke"]


def test_smoke_with_co_is_an_alarm() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    for k in range(1, 4):
        found += det.reading("smoke-1", T0 + 10.0 * k, air(smoke=3.0, co=60.0))
    assert [d.level for d in fire(found)] == ["alarm"]
    assert "smoke+co" in found[0].detail["causes"]
    assert found[0].detail["supporting"] == ["smoke"]


def test_smoke_with_rising_heat_is_an_alarm() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    for k in range(1, 12):  # 3 °C a minute with smoke: neither heat rule alone would fire
        found += det.reading("smoke-1", T0 + 20.0 * k, air(temp=22.0 + k, smoke=3.0))
    fires = fire(found)
    assert [d.level for d in fires] == ["prealarm", "alarm"]
    assert fires[1].detail["causes"] == ["smoke+heat"]


# -- agreement, repeats, clearing ---------------------------------------------------------


def test_two_detectors_agreeing_raise_confidence() -> None:
    one = RoomFireDetector(ROOM)
    warm_up(one, "a")
    alone = one.reading("a", T0, air(temp=60.0)) + one.reading("a", T0 + 10.0, air(temp=61.0))
    two = RoomFireDetector(ROOM)
    warm_up(two, "a")
    warm_up(two, "b")
    assert two.reading("a", T0, air(temp=60.0)) == []  # one reading of one detector: not yet
    both = two.reading("b", T0 + 2.0, air(temp=60.0))  # a second detector agrees at once
    assert [d.level for d in alone] == ["alarm"]
    assert [d.level for d in both] == ["alarm"]
    assert both[0].detail["detectors"] == 2
    assert set(both[0].detail["readings"]) == {"a", "b"}
    assert both[0].confidence > alone[0].confidence
    assert both[0].device_id == "b"


def test_a_long_fire_gives_exactly_one_prealarm_and_one_alarm() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found: list[Detection] = []
    for k in range(360):  # an hour, a reading every 10 s
        t = T0 + 10.0 * k
        smoke = min(30.0, 0.05 * k)
        temp = 22.0 + max(0.0, 0.3 * (k - 60))
        co = max(0.0, 2.0 * (k - 40))
        found += det.reading("smoke-1", t, air(temp=min(temp, 400.0), smoke=smoke, co=min(co, 2000.0)))
        found += det.tick(t + 5.0)
        if k == 100:
            found += det.event("smoke-1", t + 1.0, "smoke_alarm", None)
    assert [d.level for d in fire(found)] == ["prealarm", "alarm"]
    assert len({d.key for d in found}) == len(found)


def test_clear_only_after_conditions_are_normal_for_a_while() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    assert [d.level for d in det.event("smoke-1", T0, "smoke_alarm", None)] == ["alarm"]
    # the detector's all-clear alone ends nothing while the air is still smoky
    assert det.event("smoke-1", T0 + 60.0, "smoke_alarm_cleared", None) == []
    for k in range(1, 61):
        assert det.reading("smoke-1", T0 + 60.0 + 10.0 * k, air(smoke=2.5)) == []
        assert det.tick(T0 + 65.0 + 10.0 * k) == []
    # back to normal at t1; nothing more is heard from the detector
    t1 = T0 + 1000.0
    assert det.reading("smoke-1", t1, air()) == []
    assert det.tick(t1 + CLEAR_AFTER_S - 1.0) == []
    cleared = det.tick(t1 + CLEAR_AFTER_S + 30.0)
    assert [(d.level, d.t) for d in cleared] == [("clear", t1 + CLEAR_AFTER_S)]
    assert cleared[0].window == (t1, t1 + CLEAR_AFTER_S)
    assert det.tick(t1 + 2 * CLEAR_AFTER_S) == []
    assert det.level == "none"
    # a new episode is reported again
    again = det.event("smoke-1", t1 + 3600.0, "smoke_alarm", None)
    assert [d.level for d in again] == ["alarm"]


def test_a_silent_detector_in_alarm_keeps_the_episode_open() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det, "a")
    warm_up(det, "b")
    assert [d.level for d in det.event("a", T0, "smoke_alarm", None)] == ["alarm"]
    for k in range(1, 100):  # b reads normal air; a (in the fire) says nothing more
        assert det.reading("b", T0 + 60.0 * k, air()) == []
    assert det.tick(T0 + 7200.0) == []


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_neither_crashes_nor_alarms() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    nan, inf = float("nan"), float("inf")
    bad: list[dict[str, float]] = [
        {"temp_c": nan, "smoke_density_pct_m": nan, "co_ppm": nan},
        {"temp_c": inf, "smoke_density_pct_m": -inf, "co_ppm": inf},
        {},
        {"battery_pct": 80.0},
        {"temp_c": 5000.0, "smoke_density_pct_m": 400.0, "co_ppm": 1e9},  # outside physical ranges
        {"temp_c": "hot", "co_ppm": None},  # type: ignore[dict-item]
        {"temp_c": True},  # type: ignore[dict-item]
    ]
    found: list[Detection] = []
    for k, metrics in enumerate(bad):
        found += det.reading("smoke-1", T0 + 10.0 * (k + 1), metrics)
    found += det.reading("smoke-1", nan, air(temp=90.0))
    found += det.event("smoke-1", inf, "smoke_alarm", None)
    found += det.event("smoke-1", T0 + 100.0, "door_open", {"x": 1})
    found += det.tick(nan)
    assert found == []


def test_one_absurd_sample_raises_nothing() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    found = det.reading("smoke-1", T0, air(temp=900.0, smoke=80.0, co=5000.0))
    for k in range(1, 60):
        found += det.reading("smoke-1", T0 + 10.0 * k, air())
    assert fire(found) == []


def test_duplicates_and_late_readings_are_ignored() -> None:
    det = RoomFireDetector(ROOM)
    warm_up(det)
    assert det.reading("smoke-1", T0 + 100.0, air()) == []
    found: list[Detection] = []
    for _ in range(3):  # the same hot reading redelivered: one reading, not three
        found += det.reading("smoke-1", T0 + 110.0, air(temp=70.0))
    found += det.reading("smoke-1", T0 + 50.0, air(temp=75.0))  # older than the last: late
    found += det.reading("smoke-1", T0 + 105.0, air(temp=75.0))
    assert found == []
    # the next genuinely new hot reading confirms the first one
    assert [d.level for d in det.reading("smoke-1", T0 + 120.0, air(temp=71.0))] == ["alarm"]


def test_state_is_bounded_per_room() -> None:
    det = RoomFireDetector(ROOM)
    for i in range(MAX_DEVICES * 3):
        det.reading(f"d{i}", T0 + i, air())
    for k in range(500):
        det.reading("d0", T0 + 1000.0 + 10.0 * k, air(temp=22.0 + (k % 3) * 0.1))
    devices = det._devices
    assert len(devices) <= MAX_DEVICES
    assert "d0" in devices
    assert len(devices["d0"].samples) <= 32


# -- gas ----------------------------------------------------------------------------------


def test_gas_warning_then_alarm_then_clear_with_hysteresis() -> None:
    det = RoomGasDetector("home-1/kitchen")
    found: list[Detection] = []
    t = T0
    for lel in [0.0, 2.0, 10.5, 12.0, 18.0, 26.0, 30.0, 31.0, 20.0, 9.0, 9.0]:
        t += 20.0
        found += det.reading("gas-1", t, {"gas_lel_pct": lel})
    levels = [(d.kind, d.level, d.detail["causes"]) for d in found]
    assert levels == [("gas", "warning", ["lel_warning"]), ("gas", "alarm", ["lel_alarm"])]
    assert found[0].t == T0 + 80.0  # the second reading over 10 % LEL
    assert found[1].detail["readings"]["gas-1"]["gas_lel_pct"] == 30.0
    # 9 % LEL is under the warning level but inside the hysteresis band: no clear
    for _ in range(30):
        t += 20.0
        found += det.reading("gas-1", t, {"gas_lel_pct": 9.0})
    assert len(found) == 2
    quiet_from = t + 20.0
    for _ in range(30):
        t += 20.0
        found += det.reading("gas-1", t, {"gas_lel_pct": 3.0})
    assert [d.level for d in found] == ["warning", "alarm", "clear"]
    assert found[-1].t == quiet_from + CLEAR_AFTER_S


def test_gas_alarm_event_raises_alarm_at_once() -> None:
    det = RoomGasDetector("home-1/kitchen")
    found = det.event("gas-1", T0, "gas_alarm", {"lel_pct": 10.2})
    assert [(d.kind, d.level, d.detail["causes"]) for d in found] == [("gas", "alarm", ["gas_event"])]
    assert det.event("gas-1", T0, "gas_alarm", None) == []
    assert det.event("gas-1", T0 + 30.0, "test", None) == []
    # readings stay high: nothing repeats; then the air clears and so does the episode
    assert det.reading("gas-1", T0 + 10.0, {"gas_lel_pct": 28.0}) == []
    assert det.reading("gas-1", T0 + 20.0, {"gas_lel_pct": 29.0}) == []
    assert det.reading("gas-1", T0 + 100.0, {"gas_lel_pct": 1.0}) == []
    assert det.tick(T0 + 100.0 + CLEAR_AFTER_S - 1.0) == []
    assert [d.level for d in det.tick(T0 + 100.0 + CLEAR_AFTER_S)] == ["clear"]


def test_gas_single_spike_and_bad_input() -> None:
    det = RoomGasDetector("home-1/kitchen")
    found = det.reading("gas-1", T0, {"gas_lel_pct": 60.0})
    found += det.reading("gas-1", T0 + 20.0, {"gas_lel_pct": 0.5})
    found += det.reading("gas-1", T0 + 40.0, {"gas_lel_pct": float("nan")})
    found += det.reading("gas-1", T0 + 30.0, {"gas_lel_pct": 50.0})  # late
    found += det.reading("gas-1", T0 + 60.0, {})
    found += det.event("gas-1", float("nan"), "gas_alarm", None)
    assert found == []


def test_two_gas_detectors_agree_at_once() -> None:
    det = RoomGasDetector("home-1/kitchen")
    assert det.reading("gas-1", T0, {"gas_lel_pct": 27.0}) == []
    found = det.reading("gas-2", T0 + 5.0, {"gas_lel_pct": 26.0})
    assert [(d.level, d.detail["detectors"]) for d in found] == [("alarm", 2)]
    assert found[0].confidence > 0.9
