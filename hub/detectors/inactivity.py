"""Inactivity: no motion, door, wearable or bed activity for longer than is usual.

One ``InactivityDetector`` per resident. Activity is anything that shows the person is
up and about: a motion sensor, a door, a wearable that moves, a bed mat that sees movement
or an exit. Time in bed does not count as inactivity (sleep is not an emergency); the
quiet spell starts again when the person gets up.

What is "usual" is learned from the resident's own history. Every quiet spell of ten
minutes or more is recorded when it ends (table ``inactivity_gaps``), and a daily job
sets a threshold per local hour of day: 1.5 × the 95th percentile of that hour's spells
over 28 days, between 1 and 12 hours, once there are enough of them
(``hub.jobs.inactivity_baselines``). Until then a default applies: 3 hours by day, and
10 hours at night for a resident who is not in a bed with a mat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from devices import CareProfile
from hub.detectors.base import Detection

DAY_DEFAULT_S: Final = 3 * 3600.0
NIGHT_DEFAULT_S: Final = 10 * 3600.0
MIN_GAP_S: Final = 600.0  # shorter lulls are ordinary and not worth learning from
# Baseline learning (run by hub.jobs): per local hour, enough spells over 28 days.
BASELINE_DAYS: Final = 28
BASELINE_MIN_SAMPLES: Final = 7
BASELINE_FACTOR: Final = 1.5
BASELINE_QUANTILE: Final = 0.95
BASELINE_MIN_S: Final = 3600.0
BASELINE_MAX_S: Final = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class Gap:
    """A quiet spell that ended: for learning the resident's baseline."""

    resident_id: str
    started: float
    seconds: float
    local_hour: int


class InactivityDetector:
    def __init__(
        self, resident_id: str, care: CareProfile, baseline: Mapping[int, float] | None = None
    ) -> None:
        self.resident_id = resident_id
        self._care = care
        self._tz = ZoneInfo(care.tz)
        self._baseline = dict(baseline or {})
        self._last_activity: float | None = None
        self._in_bed = False
        self._alarmed = False
        self.gaps: list[Gap] = []

    def set_baseline(self, baseline: Mapping[int, float]) -> None:
        self._baseline = dict(baseline)

    def _hour(self, t: float) -> int:
        return datetime.fromtimestamp(t, self._tz).hour

    def threshold(self, started: float) -> float:
        hour = self._hour(started)
        learned = self._baseline.get(hour)
        if learned is not None:
            return learned
        minute = hour * 60
        start, end = self._care.night_start_min, self._care.night_end_min
        night = (minute >= start or minute < end) if start > end else start <= minute < end
        return NIGHT_DEFAULT_S if night else DAY_DEFAULT_S

    def activity(self, t: float, source: str) -> list[Detection]:
        """Something showed the resident active at device time ``t``."""
        if not math.isfinite(t):
            return []
        out: list[Detection] = []
        last = self._last_activity
        if last is not None and t <= last:
            return out
        if last is not None and not self._in_bed:
            quiet = t - last
            if quiet >= MIN_GAP_S:
                self.gaps.append(Gap(self.resident_id, last, quiet, self._hour(last)))
            if self._alarmed:
                out.append(
                    Detection(
                        "inactivity",
                        "clear",
                        t,
                        self.resident_id,
                        detail={"quiet_s": round(quiet), "source": source},
                    )
                )
        self._alarmed = False
        self._last_activity = t
        return out

    def bed(self, t: float, occupied: bool) -> list[Detection]:
        """The resident's bed mat changed state: getting up is activity; lying down pauses."""
        if occupied == self._in_bed:
            return []
        out = self.activity(t, "bed")
        self._in_bed = occupied
        return out

    def tick(self, now: float) -> list[Detection]:
        last = self._last_activity
        if last is None or self._in_bed or self._alarmed or not math.isfinite(now):
            return []
        limit = self.threshold(last)
        if now - last < limit:
            return []
        self._alarmed = True
        due = last + limit
        return [
            Detection(
                "inactivity",
                "alarm",
                due,
                self.resident_id,
                window=(last, due),
                detail={
                    "quiet_s": round(due - last),
                    "threshold_s": round(limit),
                    "learned": self._hour(last) in self._baseline,
                },
            )
        ]

    def take_gaps(self) -> list[Gap]:
        gaps, self.gaps = self.gaps, []
        return gaps
