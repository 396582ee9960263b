"""What every detector produces, and the vocabulary they share.

A detector is a small, pure state machine. It is fed timestamped input (seconds since the
epoch as floats, device time) and, for rules that fire on the absence of input, ticked
with an injected clock. It never touches MQTT or the database and never raises on odd
input: gaps, duplicates, out-of-order samples and NaN are absorbed.

A ``Detection`` is a fact about the world ("a fall at 02:13:05 with confidence 0.93"),
not an alarm. The alert service decides what people are told; the hub only records
detections, each once (see ``Detection.key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

Level = Literal["alarm", "prealarm", "warning", "info", "clear"]

# What a detection is about. Each kind has one subject type (see docs/detection.md).
Kind = Literal[
    "fall",
    "fire",
    "gas",
    "sos",
    "water_leak",
    "bed_exit",
    "bed_not_returned",
    "bed_absent",
    "vitals",
    "apnea",
    "inactivity",
    "device_offline",
    "device_online",
    "low_battery",
    "tamper",
    "fault",
    "stuck_sensor",
    "fire_test",
    # the hub's own: a lane too far behind (hub.lag), a technical alarm in IEC 60601-1-8 terms
    "ingest_delayed",
]
LEVELS: Final[tuple[str, ...]] = get_args(Level)
KINDS: Final[tuple[str, ...]] = get_args(Kind)

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection.

    ``t`` is when it happened in device time (the impact of a fall, the first reading over a
    fire threshold, the heartbeat deadline of a silent device), in epoch seconds.
    ``subject`` is what it is about: a device id for device and wearer detections, or
    ``facility/room`` for room detections (fire, gas). ``window`` is the span of raw data that
    explains it, for evidence and replay. ``detail`` is small and JSON-serialisable.
    """

    kind: Kind
    level: Level
    t: float
    subject: str
    confidence: float = 1.0
    device_id: str | None = None
    window: tuple[float, float] | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    # What made it, when ``t`` is not stable across redelivery: a detection stamped with
    # the hub's clock (a last will, a device back online) names the message instead.
    origin: str | None = None

    @property
    def key(self) -> str:
        """Identifies the detection across redelivery and restarts: same input, same key."""
        when = self.origin if self.origin is not None else str(round(self.t * 1000))
        metric = self.detail.get("metric", "")  # HR and RR of one mat can alarm together
        return f"{self.kind}:{self.level}:{self.subject}:{self.device_id or ''}:{metric}:{when}"


@dataclass(frozen=True, slots=True)
class Found:
    """A detection with the registry context it concerns."""

    detection: Detection
    facility_id: str | None
    room_id: str | None
    resident_id: str | None
