"""How far behind each ingest lane is, and the technical alarm that says so.

A lane's lag is how old, by the devices' own clocks, the messages it is committing now
are: the median device time of its last committed batch, taken against the hub's clock
while the lane still has messages waiting (in the broker, in the hub, or behind a database
outage). A backlog that waits in the broker shows, unlike a lag counted from the hub's
receipt. The median keeps one device with a wrong clock from moving it. A lane with
nothing waiting has no lag, however old its last message.

``LagWatch`` turns the lags into a technical alarm (IEC 60601-1-8) on each facility the hub
worker serves, so that the console says "wearable data delayed by 42 s; fire, gas and SOS
unaffected" instead of staying quietly behind (docs/devices.md, "Lanes"):

- it opens when a lane's lag reaches ``threshold_s``: ``warning`` (medium priority) when only
  the bulk lane is behind, ``alarm`` (high) when the urgent lane is, or the only lane;
- it is raised again, with the new figures, each time the lag doubles or the urgent lane
  falls behind too;
- it clears once every lane is back under ``clear_s``.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from hub.detectors.base import Detection, Found, Level

# The lag at which the technical alarm opens, and the one it clears below (hysteresis).
LAG_ALARM_S: Final = 10.0
LAG_CLEAR_S: Final = 2.0
# Lanes that carry fire, gas, SOS, falls a device reports, statuses and wills.
URGENT_LANES: Final = frozenset({"urgent", "all"})


def median_time(times: Sequence[float]) -> float:
    """The median of device times, in epoch seconds."""
    return float(statistics.median(times))


@dataclass(slots=True)
class LaneClock:
    """What one lane has committed, by device time, for its lag."""

    started: float  # hub time the lane started: the lag's floor before its first commit
    committed: float | None = None  # median device time of the last committed batch

    def lag(self, now: float, *, waiting: bool) -> float:
        if not waiting:
            return 0.0
        return max(0.0, now - (self.committed if self.committed is not None else self.started))


@dataclass(slots=True)
class LagWatch:
    """The technical alarm of one hub worker, per facility it serves."""

    worker: str
    threshold_s: float = LAG_ALARM_S
    clear_s: float = LAG_CLEAR_S
    level: Level | None = None  # the open alarm's level, None when none is open
    reported_s: float = 0.0  # the worst lag the open alarm last reported
    facilities: set[str] = field(default_factory=set)  # those it is open on

    def subject(self, facility: str) -> str:
        return f"{facility}/ingest/{self.worker}"

    def update(self, now: float, lags: Mapping[str, float], facilities: Collection[str]) -> list[Found]:
        """The detections for these lags at hub time ``now``; empty while nothing changes."""
        worst = max(lags.values(), default=0.0)
        urgent_late = any(lag >= self.threshold_s for lane, lag in lags.items() if lane in URGENT_LANES)
        late = worst >= self.threshold_s
        if late:
            level: Level = "alarm" if urgent_late else "warning"
            escalated = level == "alarm" and self.level != "alarm"
            newcomers = set(facilities) - self.facilities
            if self.level is None or escalated or worst >= 2 * self.reported_s:
                self.level = "alarm" if escalated or self.level == "alarm" else level
                self.reported_s = worst
                self.facilities |= set(facilities)
                return self._detections(self.level, now, lags, self.facilities)
            if newcomers:  # a facility registered meanwhile is behind too
                self.facilities |= newcomers
                return self._detections(self.level, now, lags, newcomers)
            return []
        if self.level is not None and worst < self.clear_s:
            ended, self.facilities = self.facilities, set()
            self.level, self.reported_s = None, 0.0
            return self._detections("clear", now, lags, ended)
        return []

    def _detections(
        self, level: Level, now: float, lags: Mapping[str, float], facilities: Collection[str]
    ) -> list[Found]:
        detail = {
            "worker": self.worker,
            "lanes": {lane: round(lag, 1) for lane, lag in sorted(lags.items())},
            "delay_s": round(max(lags.values(), default=0.0), 1),
            # what the console needs to say "fire, gas and SOS unaffected"
            "urgent_delayed": any(
                lag >= self.threshold_s for lane, lag in lags.items() if lane in URGENT_LANES
            ),
        }
        return [
            Found(
                Detection("ingest_delayed", level, now, self.subject(f), detail=detail),
                facility_id=f,
                room_id=None,
                resident_id=None,
            )
            for f in sorted(facilities)
        ]
