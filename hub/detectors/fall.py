"""Falls from a worn 3-axis accelerometer.

One ``FallDetector`` per wearable. It takes the blocks of samples the device sends, at any
rate, puts them on one 50 Hz grid and keeps the last 12 s. A *candidate* is any moment
where the acceleration magnitude leaves the band around 1 g that daily life keeps to: an
impact-sized peak or a free-fall dip. That test is one ``max``/``min`` over the new samples,
so a block without a candidate costs little. Three seconds after a candidate's impact the
detector measures the phases of a fall around it (see docs/standards.md: free fall well under 1 g,
an impact peak, the gravity vector turning, lying still), and a scikit-learn classifier
decides.

Every feature is a magnitude, a duration or an angle between two vectors measured in the
sensor's own frame, so none depends on how the device's axes are mounted. Gyroscope samples
are accepted and resampled alongside (``recent``), but no feature uses them yet: the
reference data for daily living (UCI HAPT) and many wearables carry no gyroscope.

Odd input is absorbed: non-finite and absurd samples are dropped, samples that are not
newer than what was already seen are dropped (duplicates, out-of-order blocks), holes up to
0.5 s are bridged by interpolation and longer ones restart the stream. A window whose
signal is implausible for a body (saturated for long stretches, not settling near 1 g) is
never reported as a fall.

    CandidateFinder   buffering, resampling, candidates and their features (no model)
    FallDetector      CandidateFinder + FallModel + one report per fall
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from hub.errors import ConfigError

Array = npt.NDArray[np.float64]

PLACEMENTS: Final = ("waist", "chest", "wrist")
MODEL_PATH: Final = Path(__file__).with_name("models") / "fall-v1.npz"

RATE_HZ: Final = 50.0  # the internal grid; UCI HAPT and many wearables sample at 50 Hz
_DT: Final = 1.0 / RATE_HZ
G_MS2: Final = 9.80665

# Accepted input. Devices send 20-200 Hz (docs/standards.md); slower streams cannot show an impact.
MIN_RATE_HZ: Final = 10.0
MAX_RATE_HZ: Final = 1000.0
MAX_ACC_G: Final = 64.0  # the v1 contract's bound: MEMS parts saturate at 16 g or below
MAX_BRIDGE_S: Final = 0.5  # a longer hole restarts the stream instead of being interpolated
CLOCK_JUMP_S: Final = 60.0  # a block this much older than the newest is a clock reset, not a duplicate
# History per device: a candidate needs 3.5 s before its impact and 3 s after, the impact
# comes up to 1.2 s after the trigger, and a block adds up to 1 s. The buffer holds 12 s and
# drops back to the last 9 s when full.
KEEP_S: Final = 9.0
BUFFER_S: Final = 12.0

# Candidates. docs/standards.md: impact peaks are usually 2-6 g and free fall reads well under 1 g.
# The peak threshold sits below 2 g because a 20 Hz device often samples beside the top of a
# 60-120 ms impact pulse, and a free-fall dip alone also opens a candidate for the same reason.
TRIGGER_HIGH_G: Final = 1.6
TRIGGER_LOW_G: Final = 0.5
CLUSTER_S: Final = 1.2  # the impact is the highest peak within this long after the trigger
# Windows around the impact (seconds). Free fall lasts 0.1-0.5 s (docs/standards.md), a slow collapse
# up to about 1.2 s, so the posture "before" ends 1.5 s ahead of the impact.
PRE_WINDOW: Final = (-3.5, -1.5)
FALL_WINDOW: Final = (-1.5, 0.0)
POST_WINDOW: Final = (1.0, 3.0)
MIN_POST_S: Final = 2.0  # at the end of the input, decide only with this much after the impact
LOW_G: Final = 0.75  # "well under 1 g" for counting free-fall time
# One fall, one report: candidates this soon after a reported fall belong to it (bounces,
# attempts to get up). A second fall a minute later is reported again.
SUPPRESS_S: Final = 10.0

# Screens applied before the classifier. The first two reject signals no body produces; the
# third spares the classifier the steps of walking and running, which neither turn the trunk
# nor end still (docs/standards.md: the gravity vector turns 60-90 degrees, then the person lies still).
PLAUSIBLE_POST_G: Final = (0.7, 1.3)  # a body at rest reads 1 g
MAX_IMPACT_S: Final = 0.3  # an impact pulse lasts 60-120 ms; a long plateau is saturation
SCREEN_POSTURE_DEG: Final = 30.0
SCREEN_STILL_G: Final = 0.12

FEATURES: Final = (
    "peak_g",  # |a| at the impact
    "dip_g",  # lowest |a| in the 1.5 s before it
    "low_s",  # time under 0.75 g in those 1.5 s (free fall)
    "velocity_ms",  # largest integral of (1 - |a|) g before the impact: speed gained falling
    "impulse_gs",  # integral of |a| - 1 above zero from 0.3 s before to 0.7 s after
    "posture_deg",  # angle between the mean gravity vector before and after
    "post_motion_g",  # RMS deviation of the acceleration vector 1-3 s after (0 when still)
    "post_std_g",  # standard deviation of |a| 1-3 s after
    "post_mean_g",  # mean |a| 1-3 s after (1 g at rest)
    "pre_motion_g",  # RMS deviation of the acceleration vector 3.5-1.5 s before
    "peaks_around",  # other peaks over 1.4 g within the window: the rhythm of steps
    "placement_waist",
    "placement_chest",
    "placement_wrist",
)


class Classifier(Protocol):
    def predict_proba(self, x: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class FallHit:
    """A detected fall.

    ``t`` is the impact and ``decided_at`` the time of the newest sample the decision saw,
    both in the time base of the input (epoch seconds in the hub, file seconds in replay).
    ``window`` is the span of raw signal that explains the decision.
    """

    t: float
    confidence: float
    decided_at: float
    window: tuple[float, float]
    features: Mapping[str, float]


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    """A moment that passed the screens, with its features, awaiting the classifier."""

    t: float
    decided_at: float
    vector: Array
    features: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class FallModel:
    """The fitted classifier, its decision threshold and the metadata it was shipped with."""

    classifier: Classifier
    threshold: float
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def probability(self, vector: Array) -> float:
        return float(self.probabilities(vector.reshape(1, -1))[0])

    def probabilities(self, matrix: Array) -> Array:
        """One call for many candidates: a call costs milliseconds whatever the rows."""
        proba: Array = np.asarray(self.classifier.predict_proba(matrix))[:, 1]
        return proba


@dataclass(slots=True)
class FinderStats:
    """What the finder saw, for cost and tuning reports."""

    samples: int = 0
    dropped: int = 0  # non-finite, absurd, duplicate or out-of-order samples
    restarts: int = 0  # holes longer than MAX_BRIDGE_S
    triggers: int = 0
    implausible: int = 0
    screened_out: int = 0
    undecidable: int = 0  # too little signal before or after the impact
    candidates: int = 0


def _n(seconds: float) -> int:
    return round(seconds * RATE_HZ)


_CLUSTER_N: Final = _n(CLUSTER_S)
_POST_END_N: Final = _n(POST_WINDOW[1])
_KEEP_N: Final = _n(KEEP_S)
_CAP_N: Final = _n(BUFFER_S)
_CHUNK_S: Final = 1.0  # long blocks (replay, buffered devices) are taken one second at a time
_SNAP_S: Final = 0.005  # a 50 Hz block this close to the grid is taken as it is (a quarter sample)


class CandidateFinder:
    """The stream of one wearable on a 50 Hz grid, and the candidates found in it."""

    def __init__(self, placement: str = "waist") -> None:
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}")
        self.placement = placement
        self._onehot = [1.0 if p == placement else 0.0 for p in PLACEMENTS]
        self.stats = FinderStats()
        self._acc = np.empty((_CAP_N, 3))
        self._gyro: Array | None = None  # allocated when a device first sends gyroscope samples
        self._mag = np.empty(_CAP_N)
        self._origin = 0.0  # time of grid index 0: the first sample since the last restart
        self._k0 = 0  # grid index of row 0
        self._len = 0
        self._last_t: float | None = None  # newest raw sample taken
        self._last_acc = np.zeros(3)
        self._last_gyro = np.full(3, np.nan)
        self._cluster: int | None = None  # grid index where the open cluster started
        self._pending: list[int] = []  # grid indices of impacts awaiting their post window
        # |a| of the newest samples put on the grid by the last ``feed`` (a view, valid
        # until the next one), so that callers can reuse it instead of recomputing it
        self.newest: Array = np.empty(0)

    # -- input ------------------------------------------------------------------------

    def feed(
        self,
        t0: float,
        rate_hz: float,
        acc: npt.ArrayLike,
        gyro: npt.ArrayLike | None = None,
    ) -> list[Candidate]:
        """Take one block starting at ``t0`` (seconds); return candidates decided by it."""
        self.newest = np.empty(0)
        block = _as_block(acc)
        if block is None or not (math.isfinite(t0) and math.isfinite(rate_hz)):
            return []
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            self.stats.dropped += len(block)
            return []
        gyro_block = _as_block(gyro) if gyro is not None else None
        if gyro_block is not None and gyro_block.shape != block.shape:
            gyro_block = None
        step = max(1, int(rate_hz * _CHUNK_S))
        if len(block) <= step:
            return self._take(t0, rate_hz, block, gyro_block)
        out: list[Candidate] = []
        for start in range(0, len(block), step):
            part = block[start : start + step]
            gpart = None if gyro_block is None else gyro_block[start : start + step]
            out.extend(self._take(t0 + start / rate_hz, rate_hz, part, gpart))
        return out

    def flush(self) -> list[Candidate]:
        """End of input: decide what is pending with the signal there is."""
        return self._close(final=True)

    def recent(self, seconds: float) -> tuple[Array, Array, Array]:
        """The last ``seconds`` on the grid: times, acceleration (g), gyroscope (deg/s or NaN)."""
        n = min(self._len, max(0, _n(seconds)))
        lo = self._len - n
        times = self._time(self._k0 + np.arange(lo, self._len))
        gyro = np.full((n, 3), np.nan) if self._gyro is None else self._gyro[lo : self._len].copy()
        return times, self._acc[lo : self._len].copy(), gyro

    # -- buffering --------------------------------------------------------------------

    def _time(self, k: Any) -> Any:
        return self._origin + k / RATE_HZ

    def _take(self, t0: float, rate: float, acc: Array, gyro: Array | None) -> list[Candidate]:
        n = len(acc)
        self.stats.samples += n
        out: list[Candidate] = []
        last = self._last_t
        if last is not None and t0 + (n - 1) / rate < last - CLOCK_JUMP_S:
            # not a late duplicate but a clock that went back: start over
            out = self._close(final=True)
            self.stats.restarts += 1
            self._reset()
            last = None
        # one test for the common case: false for NaN and infinity as well as absurd values
        if float(np.abs(acc).max()) <= MAX_ACC_G and (last is None or t0 > last + 1e-9):
            out.extend(self._segment(t0, rate, None, acc, gyro))
            return out
        times = t0 + np.arange(n) / rate
        good: npt.NDArray[np.bool_] = np.all(np.isfinite(acc), axis=1)
        good[good] = np.abs(acc[good]).max(axis=1) <= MAX_ACC_G
        if last is not None:
            good &= times > last + 1e-9
        self.stats.dropped += int(n - good.sum())
        times, acc = times[good], acc[good]
        gyro = None if gyro is None else gyro[good]
        if len(times) == 0:
            return out
        # split where samples are missing for longer than can be bridged
        holes = np.flatnonzero(np.diff(times) > MAX_BRIDGE_S) + 1
        for lo, hi in zip((0, *holes), (*holes, len(times)), strict=True):
            seg_g = None if gyro is None else gyro[lo:hi]
            out.extend(self._segment(float(times[lo]), rate, times[lo:hi], acc[lo:hi], seg_g))
        return out

    def _segment(
        self, t0: float, rate: float, times: Array | None, acc: Array, gyro: Array | None
    ) -> list[Candidate]:
        """Put samples on the grid. ``times`` is None when they are regular from ``t0``."""
        out: list[Candidate] = []
        if self._last_t is not None and t0 - self._last_t > MAX_BRIDGE_S:
            out.extend(self._close(final=True))
            self.stats.restarts += 1
            self._reset()
        t_last = t0 + (len(acc) - 1) / rate if times is None else float(times[-1])
        if self._last_t is None:
            # a new stream: its first sample fixes the grid
            self._origin, self._k0, self._len = t0, 0, 0
        k_first = self._k0 + self._len
        if times is None and rate == RATE_HZ and abs(t0 - self._time(k_first)) <= _SNAP_S:
            new_a, new_g = acc, gyro  # already on the grid: the usual 50 Hz device
        else:
            k_last = math.floor((t_last - self._origin) * RATE_HZ + 1e-6)
            if k_last < k_first:
                self._remember(t_last, acc, gyro)
                return out
            grid = self._time(np.arange(k_first, k_last + 1))
            if times is None:
                new_a, new_g = self._interpolate_regular(grid, t0, rate, acc, gyro)
            else:
                if self._last_t is not None:
                    # the previous sample bridges the blocks
                    times = np.concatenate(([self._last_t], times))
                    acc = np.concatenate((self._last_acc[None, :], acc))
                    if gyro is not None:
                        gyro = np.concatenate((self._last_gyro[None, :], gyro))
                new_a, new_g = _interpolate(grid, times, acc, gyro)
        self._remember(t_last, acc, gyro)
        self._append(new_a, new_g)
        new_mag = self._mag[self._len - len(new_a) : self._len]
        self.newest = new_mag
        if (
            self._cluster is None
            and not self._pending
            and new_mag.max() < TRIGGER_HIGH_G
            and new_mag.min() > TRIGGER_LOW_G
        ):
            return out  # the common case: nothing to look at
        self._scan(k_first, new_mag)
        out.extend(self._close(final=False))
        return out

    def _interpolate_regular(
        self, grid: Array, t0: float, rate: float, acc: Array, gyro: Array | None
    ) -> tuple[Array, Array | None]:
        """Linear interpolation of samples regular from ``t0``, bridged by the previous one."""
        u = (grid - t0) * rate  # position in samples of the block
        j = np.floor(u)
        w = u - j
        index = j.astype(np.intp)
        if self._last_t is None:
            index = np.maximum(index, 0)
            src_a, src_g = acc, gyro
        else:
            index += 1  # row 0 is the previous sample
            src_a = np.concatenate((self._last_acc[None, :], acc))
            src_g = None if gyro is None else np.concatenate((self._last_gyro[None, :], gyro))
            before = u < 0
            if before.any():  # between the previous sample and this block
                w[before] = (grid[before] - self._last_t) / (t0 - self._last_t)
                index[before] = 0
        nxt = np.minimum(index + 1, len(src_a) - 1)
        weight = w[:, None]
        new_g = None if src_g is None else src_g[index] + (src_g[nxt] - src_g[index]) * weight
        return src_a[index] + (src_a[nxt] - src_a[index]) * weight, new_g

    def _remember(self, t_last: float, acc: Array, gyro: Array | None) -> None:
        self._last_t = t_last
        self._last_acc = acc[-1].copy()
        self._last_gyro = gyro[-1].copy() if gyro is not None else np.full(3, np.nan)

    def _append(self, acc: Array, gyro: Array | None) -> None:
        m = len(acc)
        if self._len + m > _CAP_N:
            keep = min(self._len, _KEEP_N)
            drop = self._len - keep
            self._acc[:keep] = self._acc[drop : self._len]
            if self._gyro is not None:
                self._gyro[:keep] = self._gyro[drop : self._len]
            self._mag[:keep] = self._mag[drop : self._len]
            self._k0 += drop
            self._len = keep
        end = self._len + m
        self._acc[self._len : end] = acc
        if gyro is not None and self._gyro is None:
            self._gyro = np.full((_CAP_N, 3), np.nan)
        if self._gyro is not None:
            self._gyro[self._len : end] = np.nan if gyro is None else gyro
        self._mag[self._len : end] = np.sqrt(np.einsum("ij,ij->i", acc, acc))
        self._len = end

    def _reset(self) -> None:
        self._len = 0
        self._last_t = None
        self._cluster = None
        self._pending.clear()

    # -- candidates -------------------------------------------------------------------

    def _scan(self, k_first: int, new_mag: Array) -> None:
        hits = np.flatnonzero((new_mag >= TRIGGER_HIGH_G) | (new_mag <= TRIGGER_LOW_G)) + k_first
        k_end = k_first + len(new_mag)  # exclusive
        self.stats.triggers += len(hits)
        i = 0
        while True:
            if self._cluster is not None:
                stop = self._cluster + _CLUSTER_N
                if stop > k_end:
                    return  # the cluster is still open
                self._close_cluster(stop)
                i = int(np.searchsorted(hits, stop))
            if i >= len(hits):
                return
            self._cluster = int(hits[i])

    def _close_cluster(self, stop: int) -> None:
        assert self._cluster is not None  # noqa: S101 - called with a cluster open
        lo = max(self._cluster, self._k0) - self._k0
        hi = min(stop, self._k0 + self._len) - self._k0
        self._cluster = None
        if hi > lo:
            self._pending.append(self._k0 + lo + int(np.argmax(self._mag[lo:hi])))

    def _close(self, final: bool) -> list[Candidate]:
        newest = self._k0 + self._len - 1
        if final and self._cluster is not None:
            self._close_cluster(self._cluster + _CLUSTER_N)
        out: list[Candidate] = []
        while self._pending and (final or self._pending[0] + _POST_END_N <= newest):
            impact = self._pending.pop(0)
            cand = self._candidate(impact, newest)
            if cand is not None:
                out.append(cand)
        return out

    def _candidate(self, impact: int, newest: int) -> Candidate | None:
        i = impact - self._k0
        mag, acc = self._mag[: self._len], self._acc[: self._len]
        pre = slice(max(0, i + _n(PRE_WINDOW[0])), max(0, i + _n(PRE_WINDOW[1])))
        post = slice(i + _n(POST_WINDOW[0]), min(self._len, i + _n(POST_WINDOW[1])))
        if pre.stop - pre.start < _n(0.5) or (post.stop - post.start) < _n(MIN_POST_S - POST_WINDOW[0]):
            self.stats.undecidable += 1
            return None
        post_mag = mag[post]
        post_mean = float(post_mag.mean())
        near = mag[max(0, i - _n(0.5)) : i + _n(0.5)]
        peak = float(mag[i])
        long_impact = np.count_nonzero(near > max(2.0, 0.5 * peak)) * _DT > MAX_IMPACT_S
        if not PLAUSIBLE_POST_G[0] <= post_mean <= PLAUSIBLE_POST_G[1] or long_impact:
            self.stats.implausible += 1
            return None
        before = acc[pre].mean(axis=0)
        after = acc[post].mean(axis=0)
        posture = _angle_deg(before, after)
        post_motion = _motion(acc[post])
        if posture < SCREEN_POSTURE_DEG and post_motion > SCREEN_STILL_G:
            self.stats.screened_out += 1
            return None
        fall = mag[max(0, i + _n(FALL_WINDOW[0])) : i + 1]
        # speed gained while under 1 g: the largest sum of (1 - |a|) g dt over a stretch
        gained = np.concatenate(([0.0], np.cumsum(1.0 - fall))) * _DT * G_MS2
        velocity = float((gained - np.minimum.accumulate(gained)).max())
        around = mag[pre.start : post.stop]
        peaks = _count_peaks(around, 1.4) - _count_peaks(mag[max(0, i - _n(0.5)) : i + _n(0.5)], 1.4)
        values = [
            peak,
            float(fall.min()),
            float(np.count_nonzero(fall < LOW_G)) * _DT,
            velocity,
            float(np.clip(mag[max(0, i - _n(0.3)) : i + _n(0.7)] - 1.0, 0.0, None).sum() * _DT),
            posture,
            post_motion,
            float(post_mag.std()),
            post_mean,
            _motion(acc[pre]),
            float(max(0, peaks)),
            *self._onehot,
        ]
        self.stats.candidates += 1
        vector = np.array(values)
        newest_t = float(self._time(newest))
        return Candidate(
            t=float(self._time(impact)),
            decided_at=max(newest_t, self._last_t or newest_t),
            vector=vector,
            features=MappingProxyType(dict(zip(FEATURES, values, strict=True))),
        )


class FallDetector:
    """Falls of one wearer: candidates, the classifier, and one report per fall."""

    def __init__(self, model: FallModel, placement: str = "waist") -> None:
        self.model = model
        self.placement = placement
        self.finder = CandidateFinder(placement)
        self._last_hit: float | None = None

    def feed(
        self,
        t0: float,
        rate_hz: float,
        acc: npt.ArrayLike,
        gyro: npt.ArrayLike | None = None,
    ) -> list[FallHit]:
        """Take one block of samples starting at ``t0``; return the falls it completes."""
        return self._decide(self.finder.feed(t0, rate_hz, acc, gyro))

    def candidates(
        self,
        t0: float,
        rate_hz: float,
        acc: npt.ArrayLike,
        gyro: npt.ArrayLike | None = None,
    ) -> list[Candidate]:
        """Like ``feed``, but leave the classifier to the caller, who can batch it across
        wearables (``FallModel.probabilities``) and then call ``decide``."""
        return self.finder.feed(t0, rate_hz, acc, gyro)

    def flush(self) -> list[FallHit]:
        """End of input: decide pending candidates with the data there is."""
        return self._decide(self.finder.flush())

    def _decide(self, candidates: Sequence[Candidate]) -> list[FallHit]:
        if not candidates:
            return []
        return self.decide(candidates, self.model.probabilities(np.stack([c.vector for c in candidates])))

    def decide(
        self, candidates: Sequence[Candidate], probabilities: Sequence[float] | Array
    ) -> list[FallHit]:
        """Falls among ``candidates`` scored ``probabilities``; one report per fall."""
        hits: list[FallHit] = []
        for cand, prob in zip(candidates, probabilities, strict=True):
            if self._last_hit is not None and abs(cand.t - self._last_hit) < SUPPRESS_S:
                continue
            p = float(prob)
            if p < self.model.threshold:
                continue
            self._last_hit = cand.t
            hits.append(
                FallHit(
                    t=cand.t,
                    confidence=p,
                    decided_at=cand.decided_at,
                    window=(cand.t + PRE_WINDOW[0] - 0.5, cand.t + POST_WINDOW[1]),
                    features=cand.features,
                )
            )
        return hits


# -- model files ------------------------------------------------------------------------

# The model file is plain arrays (``numpy.savez``, loaded with ``allow_pickle=False``): the
# fitted trees of a gradient-boosted ensemble, exported by ``ankang train fall``. Loading it
# runs no code from the file, needs no network and no scikit-learn, and the hub keeps the
# ~170 MB that importing scikit-learn and SciPy would cost out of its memory.
_MODEL_ARRAYS: Final = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left")
MAX_TREES: Final = 10_000
MAX_NODES: Final = 4_096


class TreeEnsemble:
    """A binary gradient-boosted tree ensemble: the sum of one leaf value per tree plus a
    baseline, through the logistic function, as scikit-learn's HistGradientBoosting does.

    Trees are padded to one width so that all of them descend together: each step moves
    every (row, tree) pair one level down, and a leaf points to itself.
    """

    def __init__(self, arrays: Mapping[str, Any], baseline: float) -> None:
        self.feature = np.asarray(arrays["feature"], dtype=np.intp)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        self.leaf = np.asarray(arrays["leaf"], dtype=bool)
        self.value = np.asarray(arrays["value"], dtype=np.float64)
        self.missing_left = np.asarray(arrays["missing_left"], dtype=bool)
        left = np.asarray(arrays["left"], dtype=np.intp)
        right = np.asarray(arrays["right"], dtype=np.intp)
        self.depth = _depth(left, right, self.leaf)
        # a leaf's children are itself, so the rows that reach a leaf early stay there
        own = np.arange(self.feature.shape[1])[None, :]
        self.left = np.where(self.leaf, own, left)
        self.right = np.where(self.leaf, own, right)
        self.baseline = float(baseline)

    def predict_proba(self, x: Any) -> Array:
        rows = np.asarray(x, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError("expected a 2-D matrix of feature rows")
        trees = self.feature.shape[0]
        tree = np.arange(trees)[None, :]
        node = np.zeros((rows.shape[0], trees), dtype=np.intp)
        r = np.arange(rows.shape[0])[:, None]
        for _ in range(self.depth):
            value = rows[r, self.feature[tree, node]]
            go_left = np.where(
                np.isnan(value), self.missing_left[tree, node], value <= self.threshold[tree, node]
            )
            node = np.where(go_left, self.left[tree, node], self.right[tree, node])
        raw = self.baseline + self.value[tree, node].sum(axis=1)
        p = 1.0 / (1.0 + np.exp(-raw))
        out: Array = np.column_stack((1.0 - p, p))
        return out


def _depth(left: npt.NDArray[np.intp], right: npt.NDArray[np.intp], leaf: npt.NDArray[np.bool_]) -> int:
    """Levels from the root to the deepest leaf. Refuses nodes reached twice (cycles)."""
    trees, width = left.shape
    depth = np.full((trees, width), -1, dtype=np.intp)
    depth[:, 0] = 0
    for level in range(width):
        tree, node = np.nonzero((depth == level) & ~leaf)
        if len(tree) == 0:
            return level
        for child in (left[tree, node], right[tree, node]):
            if (depth[tree, child] >= 0).any():
                raise ValueError("a tree node is reached twice")
            depth[tree, child] = level + 1
    raise ValueError("a tree does not end in leaves")


def load_model(path: Path | None = None) -> FallModel:
    """The fall model at ``path`` (default: the one shipped with the hub). Cached per path."""
    return _load(Path(path or MODEL_PATH).resolve())


@lru_cache(maxsize=8)
def _load(path: Path) -> FallModel:
    meta_path = path.with_suffix(".json")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot load the fall model {path}: {exc}") from exc
    missing = [n for n in (*_MODEL_ARRAYS, "baseline", "decision_threshold", "features") if n not in arrays]
    if missing:
        raise ConfigError(f"{path} is not a fall model: it lacks {', '.join(missing)}")
    if tuple(str(f) for f in arrays["features"]) != FEATURES:
        raise ConfigError(f"{path} was trained on other features than this detector computes")
    shapes = {arrays[n].shape for n in _MODEL_ARRAYS}
    shape = arrays["feature"].shape
    if len(shapes) != 1 or len(shape) != 2 or not (0 < shape[0] <= MAX_TREES and 0 < shape[1] <= MAX_NODES):
        raise ConfigError(f"{path} holds trees of inconsistent or absurd shape {sorted(shapes)}")
    leaf = arrays["leaf"].astype(bool)
    inner = ~leaf
    if (
        (arrays["feature"][inner] < 0).any()
        or (arrays["feature"][inner] >= len(FEATURES)).any()
        or (arrays["left"][inner] < 0).any()
        or (arrays["left"][inner] >= shape[1]).any()
        or (arrays["right"][inner] < 0).any()
        or (arrays["right"][inner] >= shape[1]).any()
        or not np.isfinite(arrays["value"][leaf]).all()
    ):
        raise ConfigError(f"{path} holds trees that point outside themselves")
    try:
        ensemble = TreeEnsemble(arrays, float(arrays["baseline"]))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    threshold = float(arrays["decision_threshold"])
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{path} has a decision threshold outside (0, 1)")
    return FallModel(ensemble, threshold, MappingProxyType(metadata))


# -- helpers ----------------------------------------------------------------------------


def _as_block(raw: npt.ArrayLike | None) -> Array | None:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        return None
    return arr


def _interpolate(grid: Array, times: Array, acc: Array, gyro: Array | None) -> tuple[Array, Array | None]:
    """Linear interpolation of the samples at ``times`` onto ``grid`` (inside their span)."""
    if len(times) == 1:
        return np.repeat(acc, len(grid), axis=0), None if gyro is None else np.repeat(gyro, len(grid), axis=0)
    j = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 2)
    w = ((grid - times[j]) / (times[j + 1] - times[j]))[:, None]
    new_g = None if gyro is None else gyro[j] + (gyro[j + 1] - gyro[j]) * w
    return acc[j] + (acc[j + 1] - acc[j]) * w, new_g


def _angle_deg(a: Array, b: Array) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < 1e-6 or nb < 1e-6:
        return 0.0
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b) / (na * nb)))))


def _motion(acc: Array) -> float:
    """RMS distance of the vectors from their mean: the same in any sensor frame."""
    if len(acc) < 2:
        return 0.0
    return float(np.sqrt(((acc - acc.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _count_peaks(mag: Array, level: float) -> int:
    """Separate excursions above ``level``: the number of upward crossings."""
    above = mag >= level
    if not above.any():
        return 0
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))
