"""Bed sensors: exits at night, not back in time, absent all night, vitals, apnea-like gaps.

One ``BedDetector`` per bed sensor. Input is the mat's telemetry (``occupied``, ``hr_bpm``,
``rr_rpm``, ``movement``) in device time; ``tick`` is called with the device's estimated
current time so that "not back within N minutes" fires even when the mat has nothing new
to say. Night hours, the return time and vital ranges come from the resident's care
profile (``devices.CareProfile``), in the facility's time zone.

Vitals are judged on a sustained window, not on one sample: ballistocardiographic heart
rate is within about 2 bpm RMSE of ECG on average (docs/standards.md) but single readings jump when
the sleeper moves. A vital sign alarms when at least 80 % of the readings over the last
two minutes are out of range.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from devices import CareProfile
from hub.detectors.base import Detection, Kind, Level

SUSTAIN_S: Final = 120.0
OUT_FRACTION: Final = 0.8
MIN_SAMPLES: Final = 3
# Apnea: a cessation of breathing of 10 s or more is the clinical definition; a mat that
# reports every few seconds can only resolve longer gaps, so 20 s is the floor here and a
# gap of 60 s raises the detection to an alarm.
APNEA_RR: Final = 2.0
APNEA_MIN_S: Final = 20.0
APNEA_ALARM_S: Final = 60.0
STALE_S: Final = 600.0  # "absent all night" needs a mat that is still reporting


@dataclass(slots=True)
class _Vital:
    low: float
    high: float
    samples: deque[tuple[float, float]]
    alarmed: bool = False


class BedDetector:
    def __init__(self, device_id: str, care: CareProfile) -> None:
        self.device_id = device_id
        self._care = care
        self._tz = ZoneInfo(care.tz)
        self._last_t = -math.inf
        self._occupied: bool | None = None
        self._exit_t: float | None = None
        self._exit_reported = False
        self._not_returned = False
        self._night_start: float | None = None  # epoch of the current night's start
        self._in_bed_tonight = False
        self._absent_reported = False
        self._vitals = {
            "hr_bpm": _Vital(*care.hr_range, deque()),
            "rr_rpm": _Vital(*care.rr_range, deque()),
        }
        self._apnea_since: float | None = None
        self._apnea_level: Level | None = None

    def update_care(self, care: CareProfile) -> None:
        if care != self._care:
            self._care = care
            self._tz = ZoneInfo(care.tz)
            self._vitals["hr_bpm"].low, self._vitals["hr_bpm"].high = care.hr_range
            self._vitals["rr_rpm"].low, self._vitals["rr_rpm"].high = care.rr_range

    # -- time of day ----------------------------------------------------------------

    def _night_of(self, t: float) -> float | None:
        """The epoch at which the night containing ``t`` started, or None by day."""
        local = datetime.fromtimestamp(t, self._tz)
        minute = local.hour * 60 + local.minute
        start, end = self._care.night_start_min, self._care.night_end_min
        if start > end:  # the usual case: the night spans midnight
            if minute >= start:
                day = local.date()
            elif minute < end:
                day = local.date() - timedelta(days=1)
            else:
                return None
        elif start <= minute < end:
            day = local.date()
        else:
            return None
        begin = datetime.combine(day, time(start // 60, start % 60), self._tz)
        return begin.timestamp()

    # -- input ------------------------------------------------------------------------

    def reading(self, t: float, metrics: Mapping[str, float]) -> list[Detection]:
        if not math.isfinite(t) or t <= self._last_t:
            return []  # duplicated or out of order: the newest state already counts
        self._last_t = t
        out: list[Detection] = []
        occupied_value = metrics.get("occupied")
        if occupied_value is not None and math.isfinite(occupied_value):
            out.extend(self._occupancy(t, occupied_value >= 0.5))
        if self._occupied:
            for metric, vital in self._vitals.items():
                value = metrics.get(metric)
                if value is not None and math.isfinite(value) and value > 0:
                    out.extend(self._vital(t, metric, vital, value))
            rr = metrics.get("rr_rpm")
            if rr is not None and math.isfinite(rr):
                out.extend(self._apnea(t, rr))
        out.extend(self.tick(t))
        return out

    def _occupancy(self, t: float, occupied: bool) -> list[Detection]:
        out: list[Detection] = []
        night = self._night_of(t)
        if night is not None and night != self._night_start:
            self._night_start, self._in_bed_tonight, self._absent_reported = night, False, False
        if occupied:
            if night is not None:
                self._in_bed_tonight = True
            if self._exit_t is not None:
                away = round(t - self._exit_t, 1)
                if self._exit_reported:
                    out.append(self._det("bed_exit", "clear", t, {"away_s": away}))
                if self._not_returned:
                    out.append(self._det("bed_not_returned", "clear", t, {"away_s": away}))
            if self._absent_reported:
                out.append(self._det("bed_absent", "clear", t, {}))
                self._absent_reported = False
            self._exit_t, self._exit_reported, self._not_returned = None, False, False
        else:
            if self._occupied and self._exit_t is None:
                self._exit_t = t
                if night is not None:
                    self._exit_reported = True
                    out.append(self._det("bed_exit", "alarm", t, {"night": True}, window=(t - 60, t + 10)))
            out.extend(self._reset_vitals(t))
        self._occupied = occupied
        return out

    def tick(self, now: float) -> list[Detection]:
        """Rules that fire on the passing of time; ``now`` is in device time."""
        out: list[Detection] = []
        care = self._care
        if self._exit_reported and not self._not_returned and self._exit_t is not None:
            due = self._exit_t + care.bed_return_min * 60
            if now >= due:
                self._not_returned = True
                out.append(
                    self._det(
                        "bed_not_returned",
                        "alarm",
                        due,
                        {"minutes": care.bed_return_min},
                        window=(self._exit_t, due),
                    )
                )
        night = self._night_of(now)
        if night is not None and night != self._night_start and now - self._last_t < STALE_S:
            self._night_start, self._in_bed_tonight, self._absent_reported = (
                night,
                bool(self._occupied),
                False,
            )
        if (
            night is not None
            and night == self._night_start
            and not self._in_bed_tonight
            and not self._absent_reported
            and now - self._last_t < STALE_S
        ):
            due = night + care.bed_absent_min * 60
            if now >= due:
                self._absent_reported = True
                out.append(
                    self._det(
                        "bed_absent", "alarm", due, {"minutes": care.bed_absent_min}, window=(night, due)
                    )
                )
        return out

    # -- vitals -------------------------------------------------------------------------

    def _reset_vitals(self, t: float) -> list[Detection]:
        """The bed emptied: nothing is being measured, so open vital alarms end here."""
        out = []
        for metric, vital in self._vitals.items():
            vital.samples.clear()
            if vital.alarmed:
                vital.alarmed = False
                out.append(self._det("vitals", "clear", t, {"metric": metric, "reason": "bed empty"}))
        if self._apnea_level is not None:
            out.append(self._det("apnea", "clear", t, {"reason": "bed empty"}))
        self._apnea_since, self._apnea_level = None, None
        return out

    def _vital(self, t: float, metric: str, vital: _Vital, value: float) -> list[Detection]:
        samples = vital.samples
        samples.append((t, value))
        while samples and samples[0][0] < t - SUSTAIN_S:
            samples.popleft()
        if len(samples) < MIN_SAMPLES or t - samples[0][0] < SUSTAIN_S * 0.75:
            return []
        values = np.fromiter((v for _, v in samples), float, len(samples))
        outside = float(np.mean((values < vital.low) | (values > vital.high)))
        median = round(float(np.median(values)), 1)
        detail = {"metric": metric, "median": median, "low": vital.low, "high": vital.high}
        if not vital.alarmed and outside >= OUT_FRACTION:
            vital.alarmed = True
            return [self._det("vitals", "alarm", samples[0][0], detail, window=(samples[0][0], t))]
        if vital.alarmed and outside <= 1 - OUT_FRACTION:
            vital.alarmed = False
            return [self._det("vitals", "clear", t, detail)]
        return []

    def _apnea(self, t: float, rr: float) -> list[Detection]:
        if rr > APNEA_RR:
            out = []
            if self._apnea_level is not None and self._apnea_since is not None:
                out.append(self._det("apnea", "clear", t, {"seconds": round(t - self._apnea_since, 1)}))
            self._apnea_since, self._apnea_level = None, None
            return out
        if self._apnea_since is None:
            self._apnea_since = t
            return []
        gap = t - self._apnea_since
        level: Level | None = "alarm" if gap >= APNEA_ALARM_S else "warning" if gap >= APNEA_MIN_S else None
        if level is None or level == self._apnea_level:
            return []
        self._apnea_level = level
        return [
            self._det(
                "apnea",
                level,
                self._apnea_since,
                {"seconds": round(gap, 1)},
                window=(self._apnea_since, t),
            )
        ]

    def _det(
        self,
        kind: Kind,
        level: Level,
        t: float,
        detail: Mapping[str, object],
        window: tuple[float, float] | None = None,
    ) -> Detection:
        return Detection(
            kind,
            level,
            t,
            self.device_id,
            device_id=self.device_id,
            window=window,
            detail=dict(detail),
        )
