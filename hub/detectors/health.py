"""Device health: offline and back online, low battery, tamper, fault, stuck sensors.

Offline is decided on the hub's clock, because it is about when the hub last *heard* from a
device, whatever the device's own clock says. A device is offline when nothing arrives
within ``heartbeat_s × 1.5`` (the grace covers one late heartbeat), or at once when its last
will arrives. Deadlines sit in a heap with one entry per device, so a tick costs
O(log n) per due device and a message costs O(1): the hub ticks twice a second, and an
offline detection lands within a second of the deadline rather than on a slow sweep (one
established platform checks a 600 s timeout every 60 s, see docs/standards.md).

Stuck sensors: a live sensor shows noise. The same value of a continuously varying metric
for far longer than its noise allows is a frozen sensor that keeps reporting its last
value, which docs/standards.md lists among users' complaints ("dead-battery sensors keep showing
their last value").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hub.detectors.base import Detection, Kind, Level

GRACE: Final = 1.5
BATTERY_LOW_PCT: Final = 20.0
BATTERY_OK_PCT: Final = 30.0  # hysteresis: only a fresh battery clears the warning

# Metric -> (seconds unchanged, minimum readings) before a sensor counts as stuck. Only
# metrics that always move a little in a live sensor; smoke, CO and LEL sit at 0 for months.
STUCK_RULES: Final[Mapping[str, tuple[float, int]]] = {
    "temp_c": (24 * 3600.0, 20),
    "humidity_pct": (24 * 3600.0, 20),
    "hr_bpm": (30 * 60.0, 10),
    "rr_rpm": (30 * 60.0, 10),
}
# A MEMS accelerometer at rest still shows ~0.01 g of noise; a block with none is frozen.
FLAT_ACC_STUCK_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class HealthRow:
    """One device's persisted health (table ``device_health``); times are epoch seconds."""

    device_id: str
    online: bool
    since: float
    last_seen: float | None
    battery_low: bool = False
    tamper: bool = False
    fault: bool = False
    fault_since: float | None = None
    stuck: bool = False


@dataclass(slots=True)
class _State:
    heartbeat_s: float
    last_seen: float
    online: bool = True
    since: float = 0.0
    by_will: bool = False  # offline because of a last will, received at ``since``
    deadline: float = 0.0
    battery_low: bool = False
    tamper: bool = False
    fault: bool = False
    fault_since: float | None = None
    stuck: set[str] = field(default_factory=set)
    # metric -> (value, first seen, readings)
    same: dict[str, tuple[float, float, int]] = field(default_factory=dict)

    def row(self, device_id: str) -> HealthRow:
        return HealthRow(
            device_id,
            self.online,
            self.since,
            self.last_seen,
            self.battery_low,
            self.tamper,
            self.fault,
            self.fault_since,
            bool(self.stuck),
        )


class DeviceHealth:
    """Health of every device a hub worker owns. Not thread-safe: one owner calls it."""

    def __init__(self) -> None:
        self._devices: dict[str, _State] = {}
        self._heap: list[tuple[float, str]] = []
        self._dirty: set[str] = set()
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._devices)

    def online(self, device_id: str) -> bool | None:
        state = self._devices.get(device_id)
        return None if state is None else state.online

    def restore(self, rows: Iterable[HealthRow], heartbeats: Mapping[str, float], now: float) -> None:
        """Resume from persisted health after a restart.

        Devices known to be offline stay offline without a second detection. Every other
        device gets a full deadline from ``now``: while the hub was down nobody could hear
        it, and the broker redelivers what it queued meanwhile.
        """
        for row in rows:
            heartbeat = heartbeats.get(row.device_id)
            if heartbeat is None:
                continue
            state = _State(
                heartbeat_s=heartbeat,
                last_seen=row.last_seen or row.since,
                online=row.online,
                since=row.since,
                battery_low=row.battery_low,
                tamper=row.tamper,
                fault=row.fault,
                fault_since=row.fault_since,
            )
            self._devices[row.device_id] = state
            if state.online:
                self._arm(row.device_id, state, max(state.last_seen, now))

    def expect(self, device_id: str, heartbeat_s: float, now: float) -> None:
        """A registered device that has not been heard from yet: it owes a first message."""
        if device_id in self._devices:
            self._devices[device_id].heartbeat_s = heartbeat_s
            return
        state = _State(heartbeat_s=heartbeat_s, last_seen=now, since=now)
        self._devices[device_id] = state
        self._dirty.add(device_id)  # persist when this online period began: wills are keyed by it
        self._arm(device_id, state, now)

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)  # its heap entry is dropped when it comes due

    def _arm(self, device_id: str, state: _State, seen: float) -> None:
        due = state.deadline
        state.deadline = seen + state.heartbeat_s * GRACE
        if due == 0.0 or state.deadline < due:
            heapq.heappush(self._heap, (state.deadline, device_id))

    def heard(
        self,
        device_id: str,
        heartbeat_s: float,
        received: float,
        origin: str | None = None,
        *,
        sent: float | None = None,
    ) -> list[Detection]:
        """Any message from the device arrived at hub time ``received``; ``origin`` names
        the message, so that a redelivered one yields the same detection key. ``sent`` is
        when the device sent it, in hub time, as far as the hub can tell.

        A message sent before the last will that took the device offline does not bring it
        back: it is older telemetry that waited in the bulk lane while the will came through
        the urgent one (docs/devices.md, "Lanes")."""
        state = self._devices.get(device_id)
        out: list[Detection] = []
        before_will = state is not None and not state.online and state.by_will
        if before_will and sent is not None and state is not None and sent < state.since:
            return out
        if state is None:
            state = _State(heartbeat_s=heartbeat_s, last_seen=received, since=received)
            self._devices[device_id] = state
            self._dirty.add(device_id)
        state.heartbeat_s = heartbeat_s
        if not state.online:
            state.online = True
            state.by_will = False
            offline_for = received - state.since
            state.since = received
            self._dirty.add(device_id)
            out.append(
                Detection(
                    "device_online",
                    "clear",
                    received,
                    device_id,
                    device_id=device_id,
                    detail={"offline_s": round(offline_for, 1)},
                    origin=origin,
                )
            )
        state.last_seen = max(state.last_seen, received)
        self._seen.add(device_id)
        self._arm(device_id, state, state.last_seen)
        return out

    def last_will(self, device_id: str, received: float, origin: str | None = None) -> list[Detection]:
        """The broker published the device's will: its connection dropped uncleanly."""
        state = self._devices.get(device_id)
        if state is None or not state.online:
            return []
        # A device composes its will once per connection, and some reuse the same will for
        # every connection: the online period it ends makes each outage's key its own.
        period = f"{origin}@{round(state.since * 1000)}" if origin is not None else None
        offline = self._offline(device_id, state, received, "last_will", period)
        state.by_will = True
        return [offline]

    def _offline(
        self, device_id: str, state: _State, t: float, reason: str, origin: str | None = None
    ) -> Detection:
        state.online = False
        state.by_will = False
        state.since = t
        state.deadline = 0.0  # re-armed by the next message
        self._dirty.add(device_id)
        return Detection(
            "device_offline",
            "alarm",
            t,
            device_id,
            device_id=device_id,
            detail={
                "reason": reason,
                "last_seen": round(state.last_seen, 3),
                "heartbeat_s": state.heartbeat_s,
            },
            origin=origin,
        )

    def tick(self, now: float) -> list[Detection]:
        """Devices whose deadline has passed by ``now`` go offline (t is the deadline)."""
        out: list[Detection] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, device_id = heapq.heappop(heap)
            state = self._devices.get(device_id)
            if state is None or not state.online:
                continue
            if state.deadline > due:  # heard from since: wait for the new deadline
                heapq.heappush(heap, (state.deadline, device_id))
                continue
            out.append(self._offline(device_id, state, due, "silent"))
        return out

    # -- what the messages say ---------------------------------------------------------

    def metrics(self, device_id: str, t: float, metrics: Mapping[str, float]) -> list[Detection]:
        state = self._devices.get(device_id)
        if state is None:
            return []
        out: list[Detection] = []
        low, fresh, detail = _battery(metrics)
        if not state.battery_low and low:
            state.battery_low = True
            self._dirty.add(device_id)
            out.append(Detection("low_battery", "warning", t, device_id, device_id=device_id, detail=detail))
        elif state.battery_low and fresh:
            state.battery_low = False
            self._dirty.add(device_id)
            out.append(Detection("low_battery", "clear", t, device_id, device_id=device_id, detail=detail))
        for metric, (seconds, readings) in STUCK_RULES.items():
            value = metrics.get(metric)
            # 0 bpm from an empty bed is "no reading", not a frozen one
            if value is not None and (value > 0 or metric in ("temp_c", "humidity_pct")):
                out.extend(self._same(device_id, state, metric, value, t, seconds, readings))
        return out

    def acceleration(self, device_id: str, t: float, flat: bool) -> list[Detection]:
        """One block of acceleration; ``flat`` when every sample in it was identical."""
        state = self._devices.get(device_id)
        if state is None:
            return []
        return self._same(device_id, state, "acc_g", 1.0 if flat else math.nan, t, FLAT_ACC_STUCK_S, 10)

    def _same(
        self,
        device_id: str,
        state: _State,
        metric: str,
        value: float,
        t: float,
        seconds: float,
        readings: int,
    ) -> list[Detection]:
        prev = state.same.get(metric)
        if prev is not None and prev[0] == value and t >= prev[1]:
            first, count = prev[1], prev[2] + 1
        else:
            first, count = t, 1
            if metric in state.stuck:
                state.stuck.discard(metric)
                self._dirty.add(device_id)
                state.same[metric] = (value, first, count)
                return [
                    Detection(
                        "stuck_sensor", "clear", t, device_id, device_id=device_id, detail={"metric": metric}
                    )
                ]
        state.same[metric] = (value, first, count)
        if metric not in state.stuck and count >= readings and t - first >= seconds:
            state.stuck.add(metric)
            self._dirty.add(device_id)
            return [
                Detection(
                    "stuck_sensor",
                    "warning",
                    t,
                    device_id,
                    device_id=device_id,
                    window=(first, t),
                    detail={
                        "metric": metric,
                        "value": value,
                        "unchanged_s": round(t - first),
                        "readings": count,
                    },
                )
            ]
        return []

    def event(
        self, device_id: str, t: float, event: str, detail: Mapping[str, Any] | None
    ) -> list[Detection]:
        state = self._devices.get(device_id)
        if state is None or event not in ("tamper", "fault"):
            return []
        # A device reports the end of a tamper or fault with {"active": false}.
        active = not (detail is not None and detail.get("active") is False)
        info = {k: v for k, v in (detail or {}).items() if isinstance(v, str | int | float | bool)}
        if event == "tamper":
            if state.tamper == active:
                return []
            state.tamper = active
        else:
            if state.fault == active:
                return []
            state.fault = active
            state.fault_since = t if active else None
        self._dirty.add(device_id)
        kind: Kind = "tamper" if event == "tamper" else "fault"
        level: Level = "warning" if active else "clear"
        return [Detection(kind, level, t, device_id, device_id=device_id, detail=info)]

    def take_changed(self, *, with_seen: bool = False) -> list[HealthRow]:
        """Rows changed since the last call, to be persisted; ``with_seen`` adds every
        device heard from since the last such call (to refresh ``last_seen``)."""
        ids = self._dirty | self._seen if with_seen else self._dirty
        rows = [self._devices[d].row(d) for d in ids if d in self._devices]
        self._dirty.clear()
        if with_seen:
            self._seen.clear()
        return rows


def _battery(metrics: Mapping[str, float]) -> tuple[bool, bool, dict[str, float]]:
    """(low, fresh, detail) from ``battery_pct`` with its 20/30 % hysteresis, and from a
    device's own low-battery flag ``battery_low`` (0/1; Zigbee devices, for one, send only
    that). The flag raises the warning; it clears it only when no percentage came with it,
    so that the percentage's hysteresis is not cut short."""
    detail: dict[str, float] = {}
    low = fresh = False
    battery = metrics.get("battery_pct")
    if battery is not None and math.isfinite(battery):
        detail["battery_pct"] = battery
        low, fresh = battery < BATTERY_LOW_PCT, battery >= BATTERY_OK_PCT
    flag = metrics.get("battery_low")
    if flag is not None and math.isfinite(flag):
        detail["battery_low"] = flag
        if flag >= 0.5:
            low, fresh = True, False
        elif "battery_pct" not in detail:
            fresh = True
    return low, fresh, detail
