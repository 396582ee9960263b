"""Physically plausible signals, seeded and reproducible.

Wearables
    3-axis acceleration in g as the sensor measures it (specific force: gravity minus body
    acceleration, so a body at rest reads 1 g and a body in free fall reads 0 g). Daily
    living is a sequence of activities; falls follow the phases described in the fall
    literature (see docs/standards.md): a free-fall dip well under 1 g for 0.1-0.5 s, an
    impact peak of 2-6 g with ringing, the gravity vector turning 60-90 degrees, then lying
    still. Placement (waist, chest, wrist) changes amplitudes and orientation.

Bed sensors
    Occupancy, heart and respiration rate with per-resident baselines and noise, movement.

Room fires
    A t-squared fire (HRR = alpha * t^2, NFPA 72 growth classes) under a ceiling. The
    ceiling-jet temperature follows Alpert's correlation; smoke obscuration and CO follow
    from the mass of fuel burnt with soot and CO yields mixed into the upper layer; the
    detector's own temperature lags the gas with a first-order time constant. Cooking and
    steam nuisances raise obscuration without the heat and CO of a fire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Placement = Literal["waist", "chest", "wrist"]
FallKind = Literal["forward", "backward", "sideways", "from_chair", "slump"]
FALL_KINDS: Final[tuple[FallKind, ...]] = ("forward", "backward", "sideways", "from_chair", "slump")
ACTIVITIES: Final = (
    "stand",
    "walk",
    "stairs",
    "sit",
    "sit_down",
    "stand_up",
    "lie_down",
    "lie",
    "bend",
    "eat",
)

Array = npt.NDArray[np.float64]


def _rot_x(deg: float) -> Array:
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _rot_y(deg: float) -> Array:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


UP: Final = np.array([0.0, 0.0, 1.0])  # sensor z points up when the wearer stands


@dataclass
class _Segment:
    activity: str
    start: float
    end: float
    tilt_from: Array
    tilt_to: Array
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FallTruth:
    """What was injected, for scoring: the impact time and the kind of fall."""

    kind: FallKind
    start: float
    impact: float
    peak_g: float


class WearableModel:
    """Acceleration of one wearer, generated one block at a time, continuous across blocks."""

    def __init__(self, placement: Placement, rng: np.random.Generator, rate_hz: float = 50.0) -> None:
        self.placement = placement
        self.rate_hz = rate_hz
        self._rng = rng
        self._segments: list[_Segment] = []
        self._orientation = UP.copy()
        self._t_end = 0.0
        self._posture = "stand"
        self._generated_until = 0.0
        self._noise = {"waist": 0.012, "chest": 0.010, "wrist": 0.02}[placement]
        self.falls: list[FallTruth] = []

    # -- schedule -------------------------------------------------------------------

    def _append(self, activity: str, duration: float, target: Array, **params: float) -> None:
        seg = _Segment(activity, self._t_end, self._t_end + duration, self._orientation, target, params)
        self._segments.append(seg)
        self._t_end += duration
        self._orientation = target

    def _tilted(self, deg_x: float, deg_y: float = 0.0) -> Array:
        v: Array = _rot_y(deg_y) @ _rot_x(deg_x) @ UP
        return v

    def _plan_daily_living(self) -> None:
        rng = self._rng
        if self._posture == "lie":
            self._append("stand_up", rng.uniform(2.0, 3.5), self._tilted(rng.uniform(-8, 8)), peak=1.3)
            self._posture = "stand"
            return
        if self._posture == "sit":
            choice = rng.choice(["sit", "eat", "stand_up", "bend"], p=[0.35, 0.25, 0.3, 0.1])
            if choice == "stand_up":
                self._append("stand_up", rng.uniform(1.2, 2.2), self._tilted(rng.uniform(-8, 8)), peak=1.4)
                self._posture = "stand"
            elif choice == "bend":
                self._append("bend", rng.uniform(2.0, 4.0), self._orientation, depth=rng.uniform(40, 80))
            else:
                self._append(str(choice), rng.uniform(10, 60), self._orientation)
            return
        choice = rng.choice(
            ["stand", "walk", "stairs", "sit_down", "lie_down", "bend"], p=[0.2, 0.4, 0.07, 0.2, 0.05, 0.08]
        )
        if choice == "sit_down":
            # sitting down heavily is the classic false alarm: a short bump of up to ~2 g
            self._append(
                "sit_down",
                rng.uniform(1.0, 2.0),
                self._tilted(rng.uniform(12, 25)),
                peak=rng.uniform(1.3, 2.2),
            )
            self._posture = "sit"
        elif choice == "lie_down":
            self._append("lie_down", rng.uniform(2.5, 4.0), self._tilted(rng.uniform(75, 95)), peak=1.2)
            self._append("lie", rng.uniform(30, 120), self._orientation)
            self._posture = "lie"
        elif choice == "walk":
            self._append(
                "walk",
                rng.uniform(5, 40),
                self._tilted(rng.uniform(-5, 5)),
                cadence=rng.uniform(1.5, 2.0),
                amp=rng.uniform(0.15, 0.35),
            )
        elif choice == "stairs":
            self._append(
                "stairs",
                rng.uniform(5, 15),
                self._tilted(rng.uniform(0, 10)),
                cadence=rng.uniform(1.2, 1.6),
                amp=rng.uniform(0.3, 0.5),
            )
        elif choice == "bend":
            self._append("bend", rng.uniform(2.0, 4.0), self._orientation, depth=rng.uniform(50, 90))
        else:
            self._append("stand", rng.uniform(3, 20), self._tilted(rng.uniform(-5, 5)))

    def schedule_fall(self, kind: FallKind, at: float) -> None:
        """Make a fall of ``kind`` start at time ``at`` (seconds), replacing what was planned."""
        rng = self._rng
        self._segments = [s for s in self._segments if s.end <= at]
        if self._segments:
            self._t_end = self._segments[-1].end
            self._orientation = self._segments[-1].tilt_to
        else:
            # everything planned was dropped (or already rendered and pruned): plan afresh
            # from the last sample generated, so that no stretch is left without a segment
            self._t_end = min(self._t_end, self._generated_until)
        if self._t_end < at:
            start_posture = self._tilted(18) if kind == "from_chair" else self._tilted(rng.uniform(-5, 5))
            self._append("sit" if kind == "from_chair" else "stand", at - self._t_end, start_posture)
        lying = {
            "forward": self._tilted(rng.uniform(70, 95), rng.uniform(-15, 15)),
            "backward": self._tilted(-rng.uniform(70, 95), rng.uniform(-15, 15)),
            "sideways": self._tilted(rng.uniform(-15, 15), rng.choice([-1, 1]) * rng.uniform(65, 95)),
            "from_chair": self._tilted(rng.uniform(60, 90), rng.uniform(-30, 30)),
            "slump": self._tilted(rng.uniform(55, 80), rng.uniform(-25, 25)),
        }[kind]
        if kind == "slump":
            free_fall, dip, peak = rng.uniform(0.6, 1.2), rng.uniform(0.55, 0.8), rng.uniform(1.4, 2.2)
        elif kind == "from_chair":
            free_fall, dip, peak = rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.6), rng.uniform(2.0, 3.5)
        else:
            free_fall, dip, peak = rng.uniform(0.15, 0.5), rng.uniform(0.05, 0.45), rng.uniform(2.5, 6.0)
        if self.placement == "wrist":
            peak *= rng.uniform(0.9, 1.4)  # the arm often takes the impact
        impact = self._t_end + free_fall
        width = rng.uniform(0.06, 0.12) if kind != "slump" else rng.uniform(0.1, 0.2)
        self._append("fall", free_fall + 0.8, lying, dip=dip, peak=peak, free_fall=free_fall, width=width)
        self._append("lie_still", rng.uniform(20, 60), lying)
        self._posture = "lie"
        self.falls.append(FallTruth(kind, at, impact, peak))

    # -- generation -----------------------------------------------------------------

    def block(self, t0: float, seconds: float = 1.0) -> Array:
        """Samples for [t0, t0 + seconds), shape (n, 3), in g."""
        n = round(seconds * self.rate_hz)
        t = t0 + np.arange(n) / self.rate_hz
        while self._t_end <= t[-1]:
            self._plan_daily_living()
        out = np.empty((n, 3))
        for seg in self._segments:
            if seg.end <= t[0] or seg.start > t[-1]:
                continue
            mask = (t >= seg.start) & (t < seg.end)
            if mask.any():
                out[mask] = self._render(seg, t[mask])
        self._segments = [s for s in self._segments if s.end > t[-1] - 5.0]
        self._generated_until = float(t[-1])
        out += self._rng.normal(0.0, self._noise, out.shape)
        return np.clip(out, -16.0, 16.0)  # a 16 g part saturates

    def _render(self, seg: _Segment, t: Array) -> Array:
        u = (t - seg.start) / max(seg.end - seg.start, 1e-9)
        p = seg.params
        wrist = self.placement == "wrist"
        if seg.activity == "fall":
            ff = p["free_fall"] / (seg.end - seg.start)
            frac = np.clip(u / ff, 0, 1)
            g = _slerp(seg.tilt_from, seg.tilt_to, np.clip(u / (ff + 0.1), 0, 1))
            mag = 1.0 - (1.0 - p["dip"]) * np.sin(np.pi / 2 * np.clip(frac * 1.5, 0, 1))
            acc = g * mag[:, None]
            dt = (u - ff) * (seg.end - seg.start)  # seconds after impact
            after = dt >= 0
            # the impact is a pulse of 60-120 ms (several samples even at 20 Hz), then ringing
            width = p["width"]
            d = dt[after]
            pulse = np.where(d < width, p["peak"] * np.sin(np.pi * np.clip(d / width, 0, 1)), 0.0)
            late = np.clip(d - width, 0, None)
            ring = np.where(
                d >= width, 0.3 * p["peak"] * np.exp(-late / 0.08) * np.sin(2 * np.pi * 8 * late), 0.0
            )
            direction = seg.tilt_to + 0.3 * seg.tilt_from
            direction = direction / np.linalg.norm(direction)
            settle = (p["dip"] + (1.0 - p["dip"]) * (1.0 - np.exp(-d / 0.05)))[:, None]
            acc[after] = seg.tilt_to * settle + np.outer(pulse + ring, direction)
            return acc
        g = _slerp(seg.tilt_from, seg.tilt_to, _smooth(u))
        acc = g.copy()
        if seg.activity in ("walk", "stairs"):
            f, amp = p["cadence"], p["amp"] * (1.6 if wrist else 1.0)
            phase = 2 * np.pi * f * t
            acc[:, 2] += amp * np.sin(2 * phase) + 0.3 * amp * np.sin(4 * phase + 0.7)
            acc[:, 1] += 0.5 * amp * np.sin(phase)
            acc[:, 0] += 0.3 * amp * np.sin(phase + 1.1) * (2.0 if wrist else 1.0)
        elif seg.activity in ("sit_down", "stand_up", "lie_down"):
            bump = (p.get("peak", 1.2) - 1.0) * np.exp(-(((u - 0.7) / 0.06) ** 2))
            acc += np.outer(bump, UP)
        elif seg.activity == "bend":
            bend = np.sin(np.pi * u) ** 2 * p["depth"]
            acc = np.array([_rot_x(float(b)) @ seg.tilt_from for b in bend])
        elif seg.activity == "eat" and wrist:
            roll = 30 * np.sin(2 * np.pi * 0.4 * t)
            acc = np.array([_rot_y(float(r)) @ v for r, v in zip(roll, g, strict=True)])
            acc += 0.1 * np.sin(2 * np.pi * 1.2 * t)[:, None]
        elif seg.activity in ("stand", "sit"):
            acc[:, 0] += 0.01 * np.sin(2 * np.pi * 0.3 * t)
        return acc


def _smooth(u: Array) -> Array:
    c = np.clip(u, 0, 1)
    return c * c * (3 - 2 * c)


def _slerp(a: Array, b: Array, w: Array) -> Array:
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    dot = float(np.clip(a @ b, -1.0, 1.0))
    omega = math.acos(dot)
    if omega < 1e-6:
        return np.tile(a, (len(w), 1))
    s = math.sin(omega)
    return (np.sin((1 - w) * omega) / s)[:, None] * a + (np.sin(w * omega) / s)[:, None] * b


# -- bed sensors ---------------------------------------------------------------------


@dataclass
class BedModel:
    """A pressure/BCG mat: occupancy, HR, RR, movement. Times are seconds of local day."""

    rng: np.random.Generator
    hr_base: float = 68.0
    rr_base: float = 15.0
    exits: list[tuple[float, float]] = field(default_factory=list)  # (start, end) out of bed
    in_bed_from: float = 21.5 * 3600
    in_bed_until: float = 6.5 * 3600

    def occupied(self, tod: float) -> bool:
        if self.in_bed_from > self.in_bed_until:  # the usual case: across midnight
            night = tod >= self.in_bed_from or tod < self.in_bed_until
        else:
            night = self.in_bed_from <= tod < self.in_bed_until
        if not night:
            return False
        return not any(start <= tod < end for start, end in self.exits)

    def sample(self, tod: float) -> dict[str, float]:
        if not self.occupied(tod):
            return {"occupied": 0.0, "movement": 0.0}
        rng = self.rng
        restless = rng.random() < 0.05
        return {
            "occupied": 1.0,
            "hr_bpm": round(float(self.hr_base + 3 * math.sin(tod / 1800) + rng.normal(0, 1.5)), 1),
            "rr_rpm": round(float(self.rr_base + rng.normal(0, 0.8)), 1),
            "movement": float(rng.integers(3, 12) if restless else rng.integers(0, 2)),
        }


# -- fire ------------------------------------------------------------------------------

FIRE_GROWTH: Final = {"slow": 0.00293, "medium": 0.01172, "fast": 0.0469}  # kW/s^2, NFPA 72 t-squared classes


@dataclass
class RoomFire:
    """A t-squared fire in a room with one ceiling detector at radius ``r_m`` from the plume."""

    ignition: float
    growth: Literal["slow", "medium", "fast", "smoldering"] = "medium"
    ceiling_m: float = 2.7
    r_m: float = 1.5
    room_m3: float = 40.0
    max_kw: float = 1000.0
    tau_s: float = 20.0  # detector element lag
    ambient_c: float = 22.0
    _temp: float = field(default=22.0, init=False)
    _smoke_g: float = field(default=0.0, init=False)
    _co_g: float = field(default=0.0, init=False)
    _last: float | None = field(default=None, init=False)

    def hrr_kw(self, t: float) -> float:
        dt = t - self.ignition
        if dt <= 0:
            return 0.0
        if self.growth == "smoldering":
            return min(2.0 + 0.002 * dt, 8.0)  # a few kW: little heat, much smoke and CO
        return min(FIRE_GROWTH[self.growth] * dt * dt, self.max_kw)

    def _gas_temp(self, q: float) -> float:
        if q <= 0:
            return self.ambient_c
        h, r = self.ceiling_m, self.r_m
        # Alpert (1972): ceiling-jet temperature rise over the plume, and away from it
        rise = 16.9 * q ** (2 / 3) / h ** (5 / 3) if r / h <= 0.18 else 5.38 * (q / r) ** (2 / 3) / h
        return float(self.ambient_c + rise)

    def sample(self, t: float) -> dict[str, float]:
        """Advance to ``t`` (seconds, monotonic) and return what the detector reads."""
        last = self._last if self._last is not None else t
        self._last = t
        dt = max(0.0, t - last)
        q = self.hrr_kw(t)
        smoldering = self.growth == "smoldering"
        # fuel burnt in dt: Q / heat of combustion (20 kJ/g); yields for flaming and smouldering fires
        burnt_g = 0.5 * (self.hrr_kw(last) + q) * dt / 20.0
        self._smoke_g += burnt_g * (0.10 if smoldering else 0.015)
        self._co_g += burnt_g * (0.15 if smoldering else 0.004)
        upper = 0.5 * self.room_m3  # smoke and CO collect in the upper half of the room
        k = 7.6 * self._smoke_g / upper  # extinction coefficient, 1/m (mass-specific 7.6 m^2/g)
        obscuration = 100.0 * (1.0 - math.exp(-k))
        co_ppm = (self._co_g / upper) / 1.145 * 1000.0  # 1 ppm CO = 1.145 mg/m^3 at 25 C
        gas = self._gas_temp(q)
        self._temp += (gas - self._temp) * (1.0 - math.exp(-dt / self.tau_s)) if dt else 0.0
        return {
            "temp_c": round(self._temp, 2),
            "smoke_density_pct_m": round(min(obscuration, 100.0), 3),
            "co_ppm": round(min(co_ppm, 10_000.0), 1),
        }


@dataclass
class Nuisance:
    """Cooking fumes or shower steam: obscuration rises, heat and CO barely."""

    start: float
    kind: Literal["cooking", "steam"] = "cooking"
    duration_s: float = 900.0
    ambient_c: float = 22.0

    def sample(self, t: float) -> dict[str, float]:
        dt = t - self.start
        if dt < 0 or dt > self.duration_s + 600:
            return {"temp_c": self.ambient_c, "smoke_density_pct_m": 0.0, "co_ppm": 0.0}
        rise = min(dt, 120.0) / 120.0
        fall = 1.0 if dt <= self.duration_s else max(0.0, 1.0 - (dt - self.duration_s) / 600.0)
        level = rise * fall
        if self.kind == "cooking":
            return {
                "temp_c": round(self.ambient_c + 4.0 * level, 2),
                "smoke_density_pct_m": round(3.0 * level * (0.8 + 0.2 * math.sin(dt / 20)), 3),
                "co_ppm": round(8.0 * level, 1),
            }
        return {
            "temp_c": round(self.ambient_c + 2.0 * level, 2),
            "smoke_density_pct_m": round(3.5 * level, 3),
            "co_ppm": 0.0,
        }


SMOKE_ALARM_PCT_M: Final = 4.0  # ~1.2 %/ft, inside the UL 217 window (0.5-4 %/ft)
