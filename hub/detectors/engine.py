"""The detection engine: routes each accepted message to its detectors.

Detectors are keyed by what they watch:

- per device: the fall detector of a wearable, the bed detector of a mat, device health;
- per room (``facility/room``): fire and gas, so that two detectors in one room agree;
- per resident: inactivity, fed by every device linked to the resident or their room (a
  device with no room counts for the residents of a family care bed's home only).

``feed`` takes a batch of messages with the hub time each arrived, and returns what was
detected plus the bookkeeping to persist (health rows, quiet spells). ``tick`` runs the
rules that fire on the passing of time:

- heartbeat deadlines on the hub's clock, never ahead of what the hub has processed (the
  caller passes ``health_now``: while intake lags behind, silence is the hub's, not the
  device's);
- inactivity on the hub's clock too, because it combines several devices whose clocks
  need not agree;
- "not back in bed" and "absent all night" in the mat's own time, estimated as the hub time
  minus the offset seen on its last message (so a simulation running faster than real time
  stays coherent), and fire clears in the room's time likewise.

The engine is driven from one thread at a time (the hub holds ``lock``): feeding runs in
a worker thread so that numpy and scikit-learn stay off the event loop.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from devices import Device, Event, Message, Status, Telemetry
from hub.detectors.base import Detection, Found, Level
from hub.detectors.bed import BedDetector
from hub.detectors.fall import Candidate, FallDetector, FallHit, FallModel
from hub.detectors.fire import RoomFireDetector, RoomGasDetector
from hub.detectors.health import DeviceHealth, HealthRow
from hub.detectors.inactivity import Gap, InactivityDetector

log = logging.getLogger(__name__)

# How fast a device clock's offset estimate may rise, in seconds per second: far above a
# quartz clock's drift (tens of ppm), far below a backlog's growth (a large part of a second
# per second). A device first heard from a backlog is taken to be at most CLOCK_FIRST_GUESS
# behind the hub: a clock further behind is found out at CLOCK_CREEP.
CLOCK_CREEP = 1e-2
CLOCK_FIRST_GUESS = 5.0

# A wearable block whose |a| varies more than this is someone moving (at rest the noise of
# a MEMS part is ~0.01 g).
ACTIVE_STD_G = 0.05
SEEN_REFRESH_S = 60.0  # how often device_health.last_seen is brought up to date
FIRE_EVENTS = frozenset({"smoke_alarm", "smoke_alarm_cleared", "test"})


@dataclass(slots=True)
class Output:
    found: list[Found] = field(default_factory=list)
    health: list[HealthRow] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.found or self.health or self.gaps)


class DetectionEngine:
    def __init__(self, lookup: Callable[[str], Device | None], fall_model: FallModel | None) -> None:
        self._lookup = lookup
        self._fall_model = fall_model
        self.lock = threading.Lock()
        self.health = DeviceHealth()
        self._falls: dict[str, FallDetector] = {}
        self._beds: dict[str, BedDetector] = {}
        self._fires: dict[str, RoomFireDetector] = {}
        self._gases: dict[str, RoomGasDetector] = {}
        self._inactivity: dict[str, InactivityDetector] = {}
        self._room_residents: dict[tuple[str, str], set[str]] = {}
        self._facility_residents: dict[str, set[str]] = {}
        self._resident_facility: dict[str, str] = {}
        self._offsets: dict[str, float] = {}  # source -> hub time minus device time
        # device -> (its clock's offset from the hub's, as best known; when that was judged)
        self._clocks: dict[str, tuple[float, float]] = {}
        self._leaks: dict[str, bool] = {}
        self._baselines: dict[str, dict[int, float]] = {}
        self._pending: list[tuple[Device, FallDetector, Candidate]] = []  # fall candidates of a batch
        self._received = 0.0  # hub time of the message being handled
        self._announced: dict[str, float] = {}  # heartbeat_s a device announced in its status
        self.watermark = 0.0  # the newest hub time of any message fed
        self._seen_refreshed = 0.0

    # -- set-up ---------------------------------------------------------------------

    def restore(
        self,
        devices: Iterable[Device],
        health: Iterable[HealthRow],
        baselines: Mapping[str, Mapping[int, float]],
        now: float,
    ) -> None:
        """Start from the registry and the persisted health of the devices this worker owns."""
        devices = list(devices)
        self._baselines = {r: dict(b) for r, b in baselines.items()}
        self.health.restore(health, {d.id: float(d.heartbeat_s) for d in devices}, now)
        for device in devices:
            self._link(device)
            self.health.expect(device.id, float(device.heartbeat_s), now)
        # A resident who was already still before the restart must still be found: their
        # quiet spell is counted from the restart, since nothing earlier is known.
        for device in devices:
            if device.resident_id is not None and device.resident_id not in self._inactivity:
                self._received = now
                self._resident(device.resident_id, device).activity(now, "restart")

    def expect(self, devices: Iterable[Device], now: float) -> None:
        """Follow the registry: watch devices registered while the hub runs (known ones are
        left as they are), and relink residents to rooms as they are now."""
        devices = list(devices)
        with self.lock:
            self._room_residents.clear()
            self._facility_residents.clear()
            self._resident_facility.clear()
            for device in devices:
                self._link(device)
                if self.health.online(device.id) is None:
                    self.health.expect(device.id, float(device.heartbeat_s), now)

    def set_baselines(self, baselines: Mapping[str, Mapping[int, float]]) -> None:
        with self.lock:
            self._baselines = {r: dict(b) for r, b in baselines.items()}
            for resident, detector in self._inactivity.items():
                detector.set_baseline(self._baselines.get(resident, {}))

    def _link(self, device: Device) -> None:
        if device.resident_id is None:
            return
        self._facility_residents.setdefault(device.facility_id, set()).add(device.resident_id)
        self._resident_facility[device.resident_id] = device.facility_id
        if device.room_id is not None:
            self._room_residents.setdefault((device.facility_id, device.room_id), set()).add(
                device.resident_id
            )

    # -- messages ---------------------------------------------------------------------

    def feed(self, items: Sequence[tuple[Message, float]]) -> Output:
        """Messages in arrival order, each with the hub time (epoch seconds) it arrived."""
        out = Output()
        with self.lock:
            self._pending = []
            for msg, received in items:
                device = self._lookup(msg.device_id)
                if device is None:
                    continue
                try:
                    self._message(device, msg, received, out)
                except Exception:  # one detector's bug must not stop the stream
                    log.exception("detector failed on a message from %s", msg.device_id)
            self._classify(out)
            out.health = self.health.take_changed()
        return out

    def _classify(self, out: Output) -> None:
        """Score every fall candidate of the batch in one classifier call."""
        pending, self._pending = self._pending, []
        if not pending or self._fall_model is None:
            return
        try:
            probabilities = self._fall_model.probabilities(np.stack([c.vector for _, _, c in pending]))
        except Exception:
            log.exception("fall classifier failed on %d candidates", len(pending))
            return
        for (device, detector, cand), p in zip(pending, probabilities, strict=True):
            for hit in detector.decide([cand], [p]):
                self._emit(out.found, device, [_fall_detection(device, hit, detector.placement)])

    def _message(self, device: Device, msg: Message, received: float, out: Output) -> None:
        t = msg.ts.timestamp()
        found = out.found
        origin = f"{msg.channel}:{msg.seq}:{round(t * 1000)}"  # the message, as redelivery repeats it
        self.watermark = max(self.watermark, received)
        self._received = received
        if isinstance(msg, Status) and msg.state == "offline":
            # a will's ts is when the connection was made, possibly long ago: not the clock
            self._emit(found, device, self.health.last_will(device.id, received, origin))
            return
        self._offsets[device.id] = received - t
        sent = t + self._clock(device.id, received - t, received)
        self._link(device)
        if isinstance(msg, Status) and msg.heartbeat_s is not None:
            self._announced[device.id] = float(msg.heartbeat_s)
        # What the device says of itself wins over the registry's default: it is what it does.
        heartbeat = self._announced.get(device.id, float(device.heartbeat_s))
        self._emit(found, device, self.health.heard(device.id, heartbeat, received, origin, sent=sent))
        if isinstance(msg, Telemetry):
            self._telemetry(device, msg, t, out)
        elif isinstance(msg, Event):
            self._event(device, msg, t, received, out)

    def _clock(self, device_id: str, offset: float, received: float) -> float:
        """The device clock's offset from the hub's: the smallest ``received - ts`` seen,
        since a message is never received before it is sent, allowed to creep up by
        ``CLOCK_CREEP`` for drift. Messages that waited in a lane's backlog show larger
        offsets and do not count; the quickest ones (events, statuses) set it."""
        known = self._clocks.get(device_id)
        if known is not None:
            offset = min(offset, known[0] + CLOCK_CREEP * max(0.0, received - known[1]))
        else:  # first heard perhaps from a backlog: take the clock as near the hub's
            offset = min(offset, CLOCK_FIRST_GUESS)
        self._clocks[device_id] = (offset, received)
        return offset

    def _telemetry(self, device: Device, msg: Telemetry, t: float, out: Output) -> None:
        found = out.found
        metrics = msg.metrics
        if metrics:
            self._emit(found, device, self.health.metrics(device.id, t, metrics))
        kind = device.kind
        if kind == "wearable" and msg.acc_g is not None and msg.rate_hz is not None:
            self._wearable(device, msg, t, out)
        elif kind == "bed_sensor" and metrics:
            bed = self._bed(device)
            self._emit(found, device, bed.reading(t, metrics))
            occupied = metrics.get("occupied")
            if occupied is not None and math.isfinite(occupied) and device.resident_id is not None:
                # only the mat's own resident is in (or out of) this bed
                inactivity = self._resident(device.resident_id, device)
                self._emit(found, device, inactivity.bed(self._received, occupied >= 0.5))
                out.gaps.extend(inactivity.take_gaps())
            if metrics.get("movement", 0.0) >= 3.0 and not (metrics.get("occupied", 0.0) >= 0.5):
                self._activity(device, t, "bed", out)
        elif kind == "smoke_detector" and metrics:
            self._emit(found, device, self._fire(device).reading(device.id, t, metrics))
        elif kind == "gas_detector" and metrics:
            self._emit(found, device, self._gas(device).reading(device.id, t, metrics))
        elif kind == "motion_sensor" and metrics.get("motion", 0.0) >= 0.5:
            self._activity(device, t, "motion", out)
        if "water_leak" in metrics:
            self._leak(device, t, metrics["water_leak"] >= 0.5, found)

    def _wearable(self, device: Device, msg: Telemetry, t: float, out: Output) -> None:
        acc = msg.acc_g
        if acc is None or msg.rate_hz is None:
            return
        if self._fall_model is not None:
            detector = self._falls.get(device.id)
            placement = device.placement or "waist"
            if detector is None or detector.placement != placement:
                detector = self._falls[device.id] = FallDetector(self._fall_model, placement)
            cands = detector.candidates(t, msg.rate_hz, acc, msg.gyro_dps)
            self._pending.extend((device, detector, c) for c in cands)
            magnitude = detector.finder.newest  # |a| the finder has just computed
        else:
            magnitude = np.sqrt(np.einsum("ij,ij->i", acc, acc, dtype=np.float64))
        n = magnitude.shape[0]
        if n == 0:
            return
        # variance of |a| as E[|a|²] - E[|a|]², a few µs where np.std takes twenty
        mean = float(magnitude.sum()) / n
        variance = float(magnitude @ magnitude) / n - mean * mean
        # a live MEMS part always shows some noise; none at all is a frozen sensor
        flat = n > 1 and variance <= 1e-12
        self._emit(out.found, device, self.health.acceleration(device.id, t, flat))
        if variance > ACTIVE_STD_G**2:
            self._activity(device, t, "wearable", out)

    def _event(self, device: Device, msg: Event, t: float, received: float, out: Output) -> None:
        found = out.found
        event, detail = msg.event, msg.detail
        if event == "sos_pressed":
            self._emit(
                found,
                device,
                [Detection("sos", "alarm", t, device.id, device_id=device.id, detail=dict(detail or {}))],
            )
            self._activity(device, t, "sos", out)
        elif event in FIRE_EVENTS:
            self._emit(found, device, self._fire(device).event(device.id, t, event, detail))
        elif event == "gas_alarm":
            self._emit(found, device, self._gas(device).event(device.id, t, event, detail))
        elif event in ("tamper", "fault"):
            self._emit(found, device, self.health.event(device.id, t, event, detail))
        elif event in ("door_open", "door_closed"):
            self._activity(device, t, "door", out)
        elif event == "water_leak":
            self._leak(device, t, not (detail is not None and detail.get("active") is False), found)
        elif event == "fall":
            self._emit(found, device, [_reported_fall(device, t, detail)])

    def _leak(self, device: Device, t: float, wet: bool, found: list[Found]) -> None:
        if self._leaks.get(device.id, False) == wet:
            return
        self._leaks[device.id] = wet
        level: Level = "alarm" if wet else "clear"
        self._emit(found, device, [Detection("water_leak", level, t, device.id, device_id=device.id)])

    # -- detectors by subject -----------------------------------------------------------

    def _bed(self, device: Device) -> BedDetector:
        bed = self._beds.get(device.id)
        if bed is None:
            bed = self._beds[device.id] = BedDetector(device.id, device.care)
        else:
            bed.update_care(device.care)
        return bed

    @staticmethod
    def room_of(device: Device) -> str:
        return f"{device.facility_id}/{device.room_id or '-' + device.id}"

    def _fire(self, device: Device) -> RoomFireDetector:
        room = self.room_of(device)
        self._offsets[room] = self._offsets[device.id]
        detector = self._fires.get(room)
        if detector is None:
            detector = self._fires[room] = RoomFireDetector(room)
        return detector

    def _gas(self, device: Device) -> RoomGasDetector:
        room = self.room_of(device)
        self._offsets[room] = self._offsets[device.id]
        detector = self._gases.get(room)
        if detector is None:
            detector = self._gases[room] = RoomGasDetector(room)
        return detector

    def _residents(self, device: Device) -> set[str]:
        if device.resident_id is not None:
            return {device.resident_id}
        if device.room_id is not None:
            return self._room_residents.get((device.facility_id, device.room_id), set())
        if device.care.facility_kind == "home":  # a household's front door is its resident's
            return self._facility_residents.get(device.facility_id, set())
        return set()

    def _resident(self, resident: str, device: Device) -> InactivityDetector:
        detector = self._inactivity.get(resident)
        if detector is None:
            detector = InactivityDetector(resident, device.care, self._baselines.get(resident))
            self._inactivity[resident] = detector
        return detector

    def _activity(self, device: Device, t: float, source: str, out: Output) -> None:
        for resident in self._residents(device):
            detector = self._resident(resident, device)
            self._emit(out.found, device, detector.activity(self._received, source), resident=resident)
            out.gaps.extend(detector.take_gaps())

    def _emit(
        self, found: list[Found], device: Device, detections: Iterable[Detection], resident: str | None = None
    ) -> None:
        for d in detections:
            found.append(Found(d, device.facility_id, device.room_id, resident or device.resident_id))

    # -- time ---------------------------------------------------------------------------

    def tick(self, now: float, *, health_now: float | None = None, everything: bool = True) -> Output:
        """Rules that fire on time passing; ``now`` is the hub's clock (epoch seconds).

        ``health_now`` is how far heartbeat deadlines may run: the hub passes its clock when
        intake is caught up, and the newest time it has processed while it lags behind (a
        database outage, a backlog), so that its own stall never reads as every device
        falling silent. Deadlines are checked on every tick; with ``everything`` false the
        slower rules (minutes to hours) are skipped, so that frequent ticks stay cheap.
        """
        out = Output()
        with self.lock:
            for d in self._guarded(
                "health", lambda: self.health.tick(now if health_now is None else health_now)
            ):
                device = self._lookup(d.subject)
                if device is not None:
                    self._emit(out.found, device, [d])
            if not everything:
                out.health = self.health.take_changed()
                return out
            for device_id, bed in self._beds.items():
                device = self._lookup(device_id)
                if device is not None:
                    mat_now = now - self._offsets.get(device_id, 0.0)
                    self._emit(out.found, device, self._guarded(device_id, partial(bed.tick, mat_now)))
            for rooms in (self._fires, self._gases):
                for room, detector in rooms.items():
                    facility, _, room_id = room.partition("/")
                    room_now = now - self._offsets.get(room, 0.0)
                    for d in self._guarded(room, partial(detector.tick, room_now)):
                        out.found.append(
                            Found(d, facility, None if room_id.startswith("-") else room_id, None)
                        )
            for resident, inactivity in self._inactivity.items():
                for d in self._guarded(resident, partial(inactivity.tick, now)):
                    out.found.append(Found(d, self._resident_facility.get(resident), None, resident))
            # last_seen of every device heard is refreshed once a minute, not on every tick:
            # with thousands of devices that is thousands of upserts
            refresh = now - self._seen_refreshed >= SEEN_REFRESH_S
            if refresh:
                self._seen_refreshed = now
            out.health = self.health.take_changed(with_seen=refresh)
        return out

    @staticmethod
    def _guarded(what: str, rule: Callable[[], list[Detection]]) -> list[Detection]:
        """One detector's bug must not stop the others, nor the hub."""
        try:
            return rule()
        except Exception:
            log.exception("detector for %s failed on a tick", what)
            return []


def _reported_fall(device: Device, t: float, detail: Mapping[str, Any] | None) -> Detection:
    """A fall the wearable detected itself: an alarm at once, on the urgent lane. Its own
    confidence (0 … 1) is kept when it gives one; the detail is kept for the evidence."""
    given = (detail or {}).get("confidence")
    confidence = 1.0
    if isinstance(given, int | float) and not isinstance(given, bool) and 0.0 <= given <= 1.0:
        confidence = float(given)
    return Detection(
        "fall",
        "alarm",
        t,
        device.id,
        confidence=confidence,
        device_id=device.id,
        detail={"source": "device", **dict(detail or {})},
    )


def _fall_detection(device: Device, hit: FallHit, placement: str) -> Detection:
    detail: dict[str, Any] = {
        "placement": placement,
        "delay_s": round(hit.decided_at - hit.t, 2),
        "features": {k: round(float(v), 4) for k, v in hit.features.items()},
    }
    return Detection(
        "fall",
        "alarm",
        hit.t,
        device.id,
        confidence=round(float(hit.confidence), 4),
        device_id=device.id,
        window=hit.window,
        detail=detail,
    )
