"""Fire and gas in a room, from the room's smoke/heat/CO detectors and its gas detectors.

One ``RoomFireDetector`` and one ``RoomGasDetector`` per ``facility/room``. Every detector
in the room feeds the same instance, so that two detectors can agree. Both are pure state
machines in device time: they never read a clock, and ``tick`` is only needed to clear an
episode when the detectors have gone quiet and have nothing new to say.

An episode is reported on transitions only: ``prealarm`` (``warning`` for gas), then
``alarm``, then ``clear`` once every detector in the room has been back to normal for
``CLEAR_AFTER_S``. Nothing is repeated while the level holds: the alert service turns each
detection into an alarm, and a stream of repeats would be a notification storm.

Fire criteria, per detector, on each reading (thresholds and their sources below):

- the detector's own ``smoke_alarm`` event, or its latched ``smoke`` metric: alarm at once;
- fixed heat (57 °C), rate of rise (8.3 °C/min, well above the room's own baseline) and the
  multi-criteria heat rule (46 °C while rising faster than 4 °C/min): alarm;
- smoke obscuration together with a rise in heat, or with CO: alarm;
- CO alone, on the UL 2034 time-at-concentration curve (a dose accumulated over time): alarm;
- smoke alone (cooking fumes, steam), heat or CO below those levels: prealarm at most.

Alarm and prealarm from telemetry need the condition on two consecutive readings of one
detector, or on two detectors at once, so that one absurd sample raises nothing; the
detector's own alarm event is never held back.

Gas (% LEL): warning at 10 % LEL, alarm at 25 % LEL or on the detector's ``gas_alarm``.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from devices.contract import METRIC_RANGES
from hub.detectors.base import Detection, Kind

# -- fire thresholds --------------------------------------------------------------------

# NFPA 72 / UL 521 "ordinary" fixed-temperature rating, 135 °F; EN 54-5 class A1 alarms
# between 54 and 65 °C.
FIXED_HEAT_C: Final = 57.0
# UL 521 / NFPA 72 rate-of-rise heat detectors: 15 °F (8.3 °C) per minute.
RATE_OF_RISE_C_MIN: Final = 8.3
# A rate of rise counts only once the detector is this far above the room's own baseline, so
# that a draught or a noisy jump of a degree or two over a few readings does not.
ROR_MIN_RISE_C: Final = 6.0
# Multi-criteria class A1 algorithm (a commercial example): alarm at 46 °C if the rise is
# faster than 4 °C/min, otherwise at 56 °C (covered here by the 57 °C fixed rule); the
# pre-warning sits 10 °C below each alarm level.
MULTI_ALARM_C: Final = 46.0
MULTI_RISE_C_MIN: Final = 4.0
PREWARN_MARGIN_C: Final = 10.0
# Telemetry smoke prealarm: 2 %/m is about 0.6 %/ft, at the sensitive end of the UL 217
# alarm window (0.5-4 %/ft) and half a typical detector's own alarm level (4 %/m).
SMOKE_PREALARM_PCT_M: Final = 2.0
# Smoke plus heat: the detector is well above its baseline and still warming. Cooking and
# steam warm a ceiling detector by a few degrees at most (+4 °C and +2 °C in the simulator's
# nuisance models) and slowly; a growing fire under a ceiling is hotter and faster.
SMOKE_HEAT_RISE_C: Final = 8.0
SMOKE_HEAT_RATE_C_MIN: Final = 2.0
# Smoke plus CO: 40 ppm is above UL 2034's 30 ppm no-alarm level and far above what cooking
# fumes or steam carry, so only combustion gives smoke and CO together.
SMOKE_CO_PPM: Final = 40.0

# UL 2034 CO alarm windows: 70 ppm within 60-240 min, 150 ppm within 10-50 min, 400 ppm
# within 4-15 min, and no alarm at 30 ppm for 30 days. The curve below sits inside each
# window with room for readings that arrive a minute apart; between its points the time to
# alarm is interpolated log-log (a power law, as the windows themselves are).
CO_CURVE: Final[tuple[tuple[float, float], ...]] = ((70.0, 100.0), (150.0, 25.0), (400.0, 8.0))  # (ppm, min)
# Below this, nothing accumulates: a third above the 30 ppm no-alarm level, to leave room
# for the error of an electrochemical cell near zero.
CO_FLOOR_PPM: Final = 40.0
CO_MIN_ALARM_MIN: Final = 1.0  # above the curve's last point the time shrinks, but not below this
# The dose stands for carboxyhaemoglobin, which UL 2034's curve is built to keep under 10 %;
# it washes out with a half-life commonly given as four to five hours in room air at rest.
CO_HALF_LIFE_S: Final = 4 * 3600.0
CO_PREALARM_DOSE: Final = 0.5
CO_MAX_GAP_S: Final = 120.0  # a silent detector's gap counts as this much exposure at most

# Rate of rise: a robust slope (Theil-Sen, the median of pairwise slopes) over the last
# minute of readings, which arrive irregularly (on change, or every sixth sample) and noisy;
# one absurd sample moves a median little where it would drag a least-squares line.
ROR_WINDOW_S: Final = 60.0
ROR_MAX_WINDOW_S: Final = 120.0  # reach further back when the last minute has too few readings
ROR_MIN_SPAN_S: Final = 20.0
ROR_MIN_POINTS: Final = 3

# The room's baseline temperature follows slow changes (day and night, heating) but not a
# fire: it moves only while the temperature is steady (under 1 °C/min, or within 3 °C of the
# baseline when there are too few readings for a rate) and no criterion is met, upwards with a
# 10 min time constant and downwards with 5 min. A baseline above 40 °C is not a room's
# normal, whatever the first reading was.
BASELINE_UP_TAU_S: Final = 600.0
BASELINE_DOWN_TAU_S: Final = 300.0
BASELINE_MAX_C: Final = 40.0

# -- shared -----------------------------------------------------------------------------

PERSIST_READINGS: Final = 2  # consecutive readings of one detector for a telemetry-only level
AGREE_WINDOW_S: Final = 120.0  # two detectors agree when both saw it within this span
# An episode clears after five minutes of normal readings everywhere in the room: long
# enough that a fire flickering around a threshold does not produce clear/alarm pairs, short
# enough that the room's state soon says what is true.
CLEAR_AFTER_S: Final = 300.0
TEST_WINDOW_S: Final = 60.0  # a smoke alarm this soon after the detector's test is the test
MAX_DEVICES: Final = 32  # per room; the least recently heard detector is forgotten beyond it
MAX_SAMPLES: Final = 32  # per detector, for the rate of rise

# -- gas thresholds ---------------------------------------------------------------------

# Two-stage settings of combustible gas detectors: GB 15322 (combustible gas detectors)
# sets the low alarm within 1-25 % LEL, and industrial practice uses A1 at 10 % LEL and
# A2 at 20-25 % LEL. Hysteresis: a detector is quiet again below 8 % LEL.
GAS_WARNING_LEL: Final = 10.0
GAS_ALARM_LEL: Final = 25.0
GAS_QUIET_LEL: Final = 8.0

_RANK: Final = {"none": 0, "prealarm": 1, "warning": 1, "alarm": 2}
# How much one cause says on its own, and which sensing channel it rests on. Causes that read
# the same thermistor are not independent evidence; another channel or another detector is.
_CONFIDENCE: Final[Mapping[str, tuple[float, frozenset[str]]]] = {
    "smoke_event": (0.9, frozenset({"smoke"})),
    "fixed_heat": (0.9, frozenset({"heat"})),
    "rate_of_rise": (0.8, frozenset({"heat"})),
    "multi_criteria": (0.85, frozenset({"heat"})),
    "co": (0.75, frozenset({"co"})),
    "smoke+heat": (0.9, frozenset({"smoke", "heat"})),
    "smoke+co": (0.85, frozenset({"smoke", "co"})),
    "smoke": (0.4, frozenset({"smoke"})),
    "heat": (0.5, frozenset({"heat"})),
    "co_rising": (0.5, frozenset({"co"})),
    "gas_event": (0.95, frozenset({"gas"})),
    "lel_alarm": (0.9, frozenset({"gas"})),
    "lel_warning": (0.6, frozenset({"gas"})),
}

RoomLevel = Literal["none", "prealarm", "warning", "alarm"]


def _metric(metrics: Mapping[str, float], name: str) -> float | None:
    """A finite value inside the contract's physical range, or None."""
    raw = metrics.get(name)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    low, high = METRIC_RANGES.get(name, (-1e9, 1e9))
    if not math.isfinite(value) or not low <= value <= high:
        return None
    return value


def _confidence(causes: set[str], detectors: int) -> float:
    """The strongest cause, with its doubt halved by each further channel and each further detector."""
    if not causes:
        return 0.0
    known = [_CONFIDENCE.get(c, (0.5, frozenset({c}))) for c in causes]
    base = max(conf for conf, _ in known)
    channels = set().union(*(ch for _, ch in known))
    doubt = (1.0 - base) * 0.5 ** (len(channels) - 1) * 0.5 ** max(0, detectors - 1)
    return round(min(0.99, 1.0 - doubt), 3)


def co_minutes_to_alarm(ppm: float) -> float:
    """Minutes of exposure at ``ppm`` before the CO rule alarms (inf below the floor)."""
    if not ppm >= CO_FLOOR_PPM:
        return math.inf
    pts = CO_CURVE
    if ppm <= pts[0][0]:
        (c0, m0), (c1, m1) = pts[0], pts[1]
    elif ppm >= pts[-1][0]:
        (c0, m0), (c1, m1) = pts[-2], pts[-1]
    else:
        k = next(i for i in range(len(pts) - 1) if pts[i][0] <= ppm <= pts[i + 1][0])
        (c0, m0), (c1, m1) = pts[k], pts[k + 1]
    slope = math.log(m1 / m0) / math.log(c1 / c0)
    minutes = m0 * math.exp(slope * math.log(ppm / c0))
    return max(CO_MIN_ALARM_MIN, minutes)


def rise_rate_c_per_min(points: list[tuple[float, float]]) -> float | None:
    """Theil-Sen slope of (t, temp) points, in °C/min; None when they span too little."""
    if len(points) < ROR_MIN_POINTS or points[-1][0] - points[0][0] < ROR_MIN_SPAN_S:
        return None
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in combinations(points, 2) if b[0] > a[0]]
    return 60.0 * float(statistics.median(slopes)) if slopes else None


# -- the room episode -------------------------------------------------------------------


@dataclass(slots=True)
class _Episode:
    """What the room has reported: the level, and since when everything has been quiet."""

    level: RoomLevel = "none"
    normal_since: float | None = None

    def quiet(self, all_quiet: bool, t: float) -> None:
        if not all_quiet:
            self.normal_since = None
        elif self.normal_since is None:
            self.normal_since = t

    def clear_due(self, now: float) -> float | None:
        """The time the episode clears, if it is due by ``now``."""
        if self.level == "none" or self.normal_since is None:
            return None
        due = self.normal_since + CLEAR_AFTER_S
        return due if now >= due else None


def _prune(devices: dict[str, Any], keep: str) -> None:
    """Forget the least recently heard detector once a room holds too many."""
    while len(devices) > MAX_DEVICES:
        oldest = min((k for k in devices if k != keep), key=lambda k: devices[k].seen)
        del devices[oldest]


class _DeviceState(Protocol):
    seen: float
    last_eval_t: float | None


D = TypeVar("D", bound=_DeviceState)


class _RoomDetector(Generic[D]):
    """What the fire and gas detectors of a room share: their detectors' state, the
    episode, freshness for agreement, and the clear after ``CLEAR_AFTER_S`` of quiet."""

    kind: Kind

    def __init__(self, room: str, new_device: Callable[[], D]) -> None:
        self.room = room
        self._new_device = new_device
        self._devices: dict[str, D] = {}
        self._episode = _Episode()

    @property
    def level(self) -> RoomLevel:
        return self._episode.level

    def _device(self, device_id: str, t: float) -> D:
        dev = self._devices.get(device_id)
        if dev is None:
            dev = self._devices[device_id] = self._new_device()
            _prune(self._devices, device_id)
        dev.seen = max(dev.seen, t)
        return dev

    def tick(self, now: float) -> list[Detection]:
        if not math.isfinite(now):
            return []
        return self._maybe_clear(now)

    @staticmethod
    def _fresh(dev: D, t: float) -> bool:
        return dev.last_eval_t is not None and t - dev.last_eval_t <= AGREE_WINDOW_S

    def _maybe_clear(self, now: float) -> list[Detection]:
        episode = self._episode
        due = episode.clear_due(now)
        if due is None:
            return []
        since = episode.normal_since
        assert since is not None  # noqa: S101 - clear_due checked it
        episode.level, episode.normal_since = "none", None
        return [
            Detection(
                self.kind,
                "clear",
                due,
                self.room,
                confidence=1.0,
                window=(since, due),
                detail={"quiet_s": CLEAR_AFTER_S, "detectors": len(self._devices)},
            )
        ]


# -- fire -------------------------------------------------------------------------------


@dataclass(slots=True)
class _FireDevice:
    seen: float = -math.inf
    last_t: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    baseline: float | None = None
    last_co: float | None = None
    last_co_t: float | None = None
    co_dose: float = 0.0
    latched_t: float | None = None  # the detector's own smoke alarm, while it lasts
    alarm_event_t: float = -math.inf
    cleared_event_t: float = -math.inf
    test_t: float = -math.inf
    alarm_causes: frozenset[str] = frozenset()
    pre_causes: frozenset[str] = frozenset()
    alarm_run: int = 0
    pre_run: int = 0
    run_since: float | None = None
    last_eval_t: float | None = None
    quiet: bool = True
    values: dict[str, float] = field(default_factory=dict)


class RoomFireDetector(_RoomDetector[_FireDevice]):
    """Fire in one room, from every smoke/heat/CO detector in it."""

    kind: Kind = "fire"

    def __init__(self, room: str) -> None:
        super().__init__(room, _FireDevice)

    # -- input ----------------------------------------------------------------------

    def reading(self, device_id: str, t: float, metrics: Mapping[str, float]) -> list[Detection]:
        if not math.isfinite(t):
            return []
        dev = self._device(device_id, t)
        if dev.last_t is not None and t <= dev.last_t:
            return []  # a duplicate or a late reading: the detector has moved on
        dev.last_t = t
        temp = _metric(metrics, "temp_c")
        smoke = _metric(metrics, "smoke_density_pct_m")
        co = _metric(metrics, "co_ppm")
        latch = _metric(metrics, "smoke")
        if latch is not None:
            self._latch_from_metric(dev, t, latch >= 0.5, smoke)
        if temp is not None or smoke is not None or co is not None:
            self._update_co(dev, t, co)
            ror = self._update_temp(dev, t, temp)
            self._assess(dev, t, temp, smoke, co, ror)
        dev.quiet = self._quiet(dev)
        return self._decide(t, device_id)

    def event(
        self, device_id: str, t: float, event: str, detail: Mapping[str, Any] | None
    ) -> list[Detection]:
        if not math.isfinite(t) or event not in ("test", "smoke_alarm", "smoke_alarm_cleared"):
            return []
        dev = self._device(device_id, t)
        if event == "test":
            if t <= dev.test_t:
                return []
            dev.test_t = t
            return [
                Detection(
                    "fire_test",
                    "info",
                    t,
                    self.room,
                    device_id=device_id,
                    window=(t, t),
                    detail={"event": "test"},
                )
            ]
        if event == "smoke_alarm":
            if t <= dev.alarm_event_t or t < dev.cleared_event_t:
                return []  # replayed, or older than the detector's own all-clear
            dev.alarm_event_t = t
            if self._is_test(dev, t, dev.values.get("smoke_density_pct_m")):
                return []
            obscuration = _metric(detail, "obscuration_pct_m") if detail else None
            if obscuration is not None:
                dev.values["event_obscuration_pct_m"] = obscuration
            if dev.latched_t is None:
                dev.latched_t = t
            dev.quiet = False
        elif event == "smoke_alarm_cleared":
            if t <= dev.cleared_event_t or t < dev.alarm_event_t:
                return []
            dev.cleared_event_t = t
            # the detector's own all-clear ends its latch; the episode ends only when the
            # readings have been normal for a while (see _decide)
            dev.latched_t = None
            dev.quiet = self._quiet(dev)
        return self._decide(t, device_id)

    # -- per detector ---------------------------------------------------------------

    def _is_test(self, dev: _FireDevice, t: float, smoke: float | None) -> bool:
        """A smoke alarm right after a test is the test, unless the air says otherwise."""
        recent_test = 0.0 <= t - dev.test_t <= TEST_WINDOW_S
        return recent_test and not (smoke is not None and smoke >= SMOKE_PREALARM_PCT_M)

    def _latch_from_metric(self, dev: _FireDevice, t: float, latched: bool, smoke: float | None) -> None:
        # The ``smoke`` metric is the detector's own latched alarm; a reading newer than the
        # last event is the better word on it (an event may have been lost).
        if latched and dev.latched_t is None and t > dev.cleared_event_t and not self._is_test(dev, t, smoke):
            dev.latched_t = t
        elif not latched and dev.latched_t is not None and t > dev.alarm_event_t:
            dev.latched_t = None

    def _update_co(self, dev: _FireDevice, t: float, co: float | None) -> None:
        if co is None:
            return
        if dev.last_co is not None and dev.last_co_t is not None:
            dt = min(t - dev.last_co_t, CO_MAX_GAP_S)
            # the lower of the two ends of the interval: a single spike adds nothing
            ppm = min(dev.last_co, co)
            minutes = co_minutes_to_alarm(ppm)
            if math.isfinite(minutes):
                dev.co_dose += dt / (60.0 * minutes)
            else:
                dev.co_dose *= 0.5 ** (dt / CO_HALF_LIFE_S)
            dev.co_dose = min(dev.co_dose, 10.0)
        dev.last_co, dev.last_co_t = co, t

    def _update_temp(self, dev: _FireDevice, t: float, temp: float | None) -> float | None:
        if temp is None:
            return None
        samples = dev.samples
        samples.append((t, temp))
        while samples and t - samples[0][0] > ROR_MAX_WINDOW_S:
            samples.popleft()
        points = [p for p in samples if t - p[0] <= ROR_WINDOW_S]
        if len(points) < ROR_MIN_POINTS:
            points = list(samples)
        ror = rise_rate_c_per_min(points)
        if dev.baseline is None:
            dev.baseline = min(temp, BASELINE_MAX_C)
        elif (
            dev.pre_run == 0
            and dev.latched_t is None
            and (abs(ror) < 1.0 if ror is not None else abs(temp - dev.baseline) < ROR_MIN_RISE_C / 2)
        ):
            prev = [p for p in samples if p[0] < t]
            dt = t - prev[-1][0] if prev else 0.0
            tau = BASELINE_UP_TAU_S if temp > dev.baseline else BASELINE_DOWN_TAU_S
            dev.baseline += (temp - dev.baseline) * (1.0 - math.exp(-dt / tau))
            dev.baseline = min(dev.baseline, BASELINE_MAX_C)
        return ror

    def _assess(
        self,
        dev: _FireDevice,
        t: float,
        temp: float | None,
        smoke: float | None,
        co: float | None,
        ror: float | None,
    ) -> None:
        alarm: set[str] = set()
        pre: set[str] = set()
        rising = ror if ror is not None else 0.0
        rise = (temp - dev.baseline) if temp is not None and dev.baseline is not None else 0.0
        if temp is not None:
            if temp >= FIXED_HEAT_C:
                alarm.add("fixed_heat")
            if rising >= RATE_OF_RISE_C_MIN and rise >= ROR_MIN_RISE_C:
                alarm.add("rate_of_rise")
            if temp >= MULTI_ALARM_C and rising > MULTI_RISE_C_MIN:
                alarm.add("multi_criteria")
            if temp >= FIXED_HEAT_C - PREWARN_MARGIN_C or (
                temp >= MULTI_ALARM_C - PREWARN_MARGIN_C and rising > MULTI_RISE_C_MIN
            ):
                pre.add("heat")
        smoky = smoke is not None and smoke >= SMOKE_PREALARM_PCT_M
        if smoky:
            pre.add("smoke")
            if rise >= SMOKE_HEAT_RISE_C and rising >= SMOKE_HEAT_RATE_C_MIN:
                alarm.add("smoke+heat")
            if co is not None and co >= SMOKE_CO_PPM:
                alarm.add("smoke+co")
        if dev.co_dose >= 1.0:
            alarm.add("co")
        elif dev.co_dose >= CO_PREALARM_DOSE:
            pre.add("co_rising")

        dev.alarm_run = dev.alarm_run + 1 if alarm else 0
        if alarm or pre:
            if not dev.pre_run:
                dev.run_since = t
            dev.pre_run += 1
        else:
            dev.pre_run = 0
            dev.run_since = None
        dev.alarm_causes, dev.pre_causes = frozenset(alarm), frozenset(pre)
        dev.last_eval_t = t
        values = {"temp_c": temp, "smoke_density_pct_m": smoke, "co_ppm": co}
        dev.values = {k: v for k, v in values.items() if v is not None}
        if ror is not None:
            dev.values["rise_c_per_min"] = round(ror, 2)
        if dev.baseline is not None:
            dev.values["baseline_c"] = round(dev.baseline, 2)
        if dev.co_dose:
            dev.values["co_dose"] = round(dev.co_dose, 3)

    @staticmethod
    def _quiet(dev: _FireDevice) -> bool:
        """Back to normal, with hysteresis below every prealarm level."""
        if dev.latched_t is not None or dev.alarm_run or dev.pre_run:
            return False
        v = dev.values
        temp, smoke, co = v.get("temp_c"), v.get("smoke_density_pct_m"), v.get("co_ppm")
        if smoke is not None and smoke >= SMOKE_PREALARM_PCT_M / 2:
            return False
        if temp is not None:
            if temp >= FIXED_HEAT_C - PREWARN_MARGIN_C - 5.0:
                return False
            if v.get("rise_c_per_min", 0.0) >= SMOKE_HEAT_RATE_C_MIN:
                return False
            if dev.baseline is not None and temp - dev.baseline >= ROR_MIN_RISE_C:
                return False
        if co is not None and co >= CO_FLOOR_PPM:
            return False
        return dev.co_dose < CO_PREALARM_DOSE / 2

    # -- per room -------------------------------------------------------------------

    def _decide(self, t: float, device_id: str) -> list[Detection]:
        devices = self._devices
        episode = self._episode
        out = self._maybe_clear(t)
        episode.quiet(all(d.quiet for d in devices.values()), t)

        latched = [k for k, d in devices.items() if d.latched_t is not None]
        alarm_now = [k for k, d in devices.items() if d.alarm_run and self._fresh(d, t)]
        pre_now = [k for k, d in devices.items() if d.pre_run and self._fresh(d, t)]
        target: Literal["alarm", "prealarm"]
        if latched or any(devices[k].alarm_run >= PERSIST_READINGS for k in alarm_now) or len(alarm_now) >= 2:
            target = "alarm"
        elif any(devices[k].pre_run >= PERSIST_READINGS for k in pre_now) or len(pre_now) >= 2:
            target = "prealarm"
        else:
            return out
        if _RANK[target] <= _RANK[episode.level]:
            return out
        episode.level = target
        episode.normal_since = None
        agreeing = sorted(set(latched) | set(pre_now) | set(alarm_now))
        causes: set[str] = set()
        supporting: set[str] = set()
        start = t
        for k in agreeing:
            d = devices[k]
            if d.latched_t is not None:
                causes.add("smoke_event")
                start = min(start, d.latched_t)
            if k in alarm_now or k in pre_now:
                if target == "alarm":
                    causes |= d.alarm_causes
                    supporting |= d.pre_causes
                else:
                    causes |= d.pre_causes
                start = min(start, d.run_since if d.run_since is not None else t)
                # the rate of rise is explained by the readings it was fitted on
                if d.samples and ("rate_of_rise" in d.alarm_causes or "multi_criteria" in d.alarm_causes):
                    start = min(start, max(d.samples[0][0], t - ROR_WINDOW_S))
        supporting -= causes
        detail: dict[str, Any] = {
            "causes": sorted(causes),
            "detectors": len(agreeing),
            "readings": {k: dict(devices[k].values) for k in agreeing},
        }
        if supporting:
            detail["supporting"] = sorted(supporting)
        out.append(
            Detection(
                "fire",
                target,
                t,
                self.room,
                confidence=_confidence(causes | supporting, len(agreeing)),
                device_id=device_id,
                window=(start, t),
                detail=detail,
            )
        )
        return out


# -- gas --------------------------------------------------------------------------------


@dataclass(slots=True)
class _GasDevice:
    seen: float = -math.inf
    last_t: float | None = None
    lel: float | None = None
    latched_t: float | None = None
    event_t: float = -math.inf
    warn_run: int = 0
    alarm_run: int = 0
    run_since: float | None = None
    last_eval_t: float | None = None


class RoomGasDetector(_RoomDetector[_GasDevice]):
    """Combustible gas in one room, from every gas detector in it."""

    kind: Kind = "gas"

    def __init__(self, room: str) -> None:
        super().__init__(room, _GasDevice)

    def reading(self, device_id: str, t: float, metrics: Mapping[str, float]) -> list[Detection]:
        if not math.isfinite(t):
            return []
        dev = self._device(device_id, t)
        if dev.last_t is not None and t <= dev.last_t:
            return []
        dev.last_t = t
        lel = _metric(metrics, "gas_lel_pct")
        if lel is None:
            return self._decide(t, device_id)
        dev.lel = lel
        dev.last_eval_t = t
        dev.alarm_run = dev.alarm_run + 1 if lel >= GAS_ALARM_LEL else 0
        if lel >= GAS_WARNING_LEL:
            if not dev.warn_run:
                dev.run_since = t
            dev.warn_run += 1
        else:
            dev.warn_run = 0
            dev.run_since = None
        if dev.latched_t is not None and t > dev.event_t and lel < GAS_QUIET_LEL:
            dev.latched_t = None  # the detector's own alarm has no all-clear event: the air is the word
        return self._decide(t, device_id)

    def event(
        self, device_id: str, t: float, event: str, detail: Mapping[str, Any] | None
    ) -> list[Detection]:
        if not math.isfinite(t) or event != "gas_alarm":
            return []
        dev = self._device(device_id, t)
        if t <= dev.event_t:
            return []
        dev.event_t = t
        if dev.latched_t is None:
            dev.latched_t = t
        reported = _metric(detail, "lel_pct") if detail else None
        if reported is not None and (dev.last_t is None or t >= dev.last_t):
            dev.lel = reported
        return self._decide(t, device_id)

    @staticmethod
    def _quiet(dev: _GasDevice) -> bool:
        return dev.latched_t is None and (dev.lel is None or dev.lel < GAS_QUIET_LEL)

    def _decide(self, t: float, device_id: str) -> list[Detection]:
        devices = self._devices
        episode = self._episode
        out = self._maybe_clear(t)
        episode.quiet(all(self._quiet(d) for d in devices.values()), t)
        latched = [k for k, d in devices.items() if d.latched_t is not None]
        alarm_now = [k for k, d in devices.items() if d.alarm_run and self._fresh(d, t)]
        warn_now = [k for k, d in devices.items() if d.warn_run and self._fresh(d, t)]
        if latched or any(devices[k].alarm_run >= PERSIST_READINGS for k in alarm_now) or len(alarm_now) >= 2:
            target: RoomLevel = "alarm"
        elif any(devices[k].warn_run >= PERSIST_READINGS for k in warn_now) or len(warn_now) >= 2:
            target = "warning"
        else:
            return out
        if _RANK[target] <= _RANK[episode.level]:
            return out
        episode.level = target
        episode.normal_since = None
        agreeing = sorted(set(latched) | set(warn_now))
        causes: set[str] = set()
        start = t
        for k in agreeing:
            d = devices[k]
            if d.latched_t is not None:
                causes.add("gas_event")
                start = min(start, d.latched_t)
            if k in alarm_now and target == "alarm":
                causes.add("lel_alarm")
            elif k in warn_now:
                causes.add("lel_warning")
            if d.run_since is not None:
                start = min(start, d.run_since)
        readings = {k: {"gas_lel_pct": devices[k].lel} for k in agreeing if devices[k].lel is not None}
        out.append(
            Detection(
                "gas",
                "alarm" if target == "alarm" else "warning",
                t,
                self.room,
                confidence=_confidence(causes, len(agreeing)),
                device_id=device_id,
                window=(start, t),
                detail={"causes": sorted(causes), "detectors": len(agreeing), "readings": readings},
            )
        )
        return out
