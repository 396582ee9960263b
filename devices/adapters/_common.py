"""What the adapters share: alias keys, bounded JSON parsing, timestamps, metrics, transitions.

Sequence numbers. A foreign message that carries a real counter (a LoRaWAN uplink's
``fCnt``) keeps it as ``seq``, and the hub applies its sequence rules to it. Every other
message an adapter makes (all of Zigbee2MQTT, a ChirpStack status or join, the events
derived from an uplink) has no counter: its ``seq`` is negative, ``-slot``, where the slot
says which kind of output it is. The hub reads a negative seq as "unsequenced": the message
is new unless that exact ``(device, ts, seq)`` is already stored, it never moves the
device's position, and it never counts as a gap. Because the slot is fixed per kind of
output and ``ts`` is taken from the foreign message, a broker redelivery maps to the same
key and is stored once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

import orjson

from devices.contract import MAX_AGE, MAX_FUTURE_SKEW, MAX_METRICS, METRIC_RANGES, Event, Rejected
from devices.registry import Device

Scheme = Literal["zigbee_name", "zigbee_ieee", "lorawan_dev_eui"]
AliasKey = tuple[Scheme, str]
# The hub's registry: the ankang device an alias belongs to, or None.
Lookup = Callable[[Scheme, str], Device | None]

# Slots: an unsequenced message's seq is -slot (see the module docstring).
SLOT_TELEMETRY: Final = 1
SLOT_STATUS: Final = 2
SLOT_SMOKE: Final = 3
SLOT_TEST: Final = 4
SLOT_TAMPER: Final = 5
SLOT_LEAK: Final = 6
SLOT_DOOR: Final = 7
SLOT_SOS: Final = 8
SLOT_GAS: Final = 9
SLOT_CODEC_EVENT: Final = 32  # + the event's index in devices.contract.EVENTS

_EPOCH_MS_MIN: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
_DEFAULT_RANGE: Final = (-1e9, 1e9)


class Invalid(Exception):
    """Internal to the adapters: a reason to quarantine a whole foreign message."""


def parse_json(payload: bytes, limit: int) -> Any:
    if len(payload) > limit:
        raise Invalid(f"payload of {len(payload)} bytes exceeds {limit}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON: {str(exc)[:120]}") from None


def parse_time(raw: object, now: datetime, what: str) -> datetime:
    """An RFC 3339 string or epoch milliseconds, within the contract's plausibility window."""
    if type(raw) is int:
        if raw < _EPOCH_MS_MIN:
            raise Invalid(f"{what} must be epoch milliseconds after 2000-01-01")
        try:
            ts = datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise Invalid(f"{what} out of range") from None
    elif isinstance(raw, str):
        if len(raw) > 40:
            raise Invalid(f"{what} string too long")
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise Invalid(f"{what} is not an RFC 3339 timestamp") from None
        if ts.tzinfo is None:
            raise Invalid(f"{what} must carry a UTC offset")
        ts = ts.astimezone(UTC)
    else:
        raise Invalid(f"{what} must be an RFC 3339 string or epoch milliseconds")
    if ts > now + MAX_FUTURE_SKEW:
        raise Invalid(f"{what} {ts.isoformat()} is more than 24 h ahead of the hub clock")
    if ts < now - MAX_AGE:
        raise Invalid(f"{what} {ts.isoformat()} is more than a year old")
    return ts


def number(raw: object) -> float | None:
    """A JSON number as a finite float, or None (booleans are not numbers here)."""
    if type(raw) in (int, float):
        value = float(raw)  # type: ignore[arg-type]
        return value if math.isfinite(value) else None
    return None


@dataclass(slots=True)
class Metrics:
    """Collects metrics for one telemetry message, noting values it had to drop."""

    values: dict[str, float]
    problems: list[str]

    def add(self, name: str, raw: object, scale: float = 1.0) -> None:
        if raw is None:  # a foreign system's "unknown": nothing to say, nothing wrong
            return
        value = 1.0 if raw is True else 0.0 if raw is False else number(raw)
        if value is None:
            self.problems.append(f"{name} must be a finite number")
            return
        value *= scale
        low, high = METRIC_RANGES.get(name, _DEFAULT_RANGE)
        if not low <= value <= high:
            self.problems.append(f"{name}={value:g} outside plausible range {low:g}..{high:g}")
            return
        if len(self.values) >= MAX_METRICS and name not in self.values:
            self.problems.append(f"more than {MAX_METRICS} metrics")
            return
        self.values[name] = value

    def frozen(self) -> Mapping[str, float]:
        return MappingProxyType(dict(self.values))


class Transitions:
    """The last value of each two-state input per device, so that a foreign system's
    repeated state snapshots become events on change only.

    The first value seen for a device (after a hub start) counts as a change when it is
    the active state: a smoke alarm that is on when the hub starts must not be missed.
    Memory is bounded by the registry: only registered devices get here.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], bool] = {}

    def change(self, device_id: str, name: str, value: bool, *, first: bool | None = True) -> bool | None:
        """The new value if it differs from the last one seen; on first sight, the value
        if it equals ``first`` (None: a first value is never a change)."""
        key = (device_id, name)
        last = self._last.get(key)
        self._last[key] = value
        if last is None:
            return value if value is first else None
        return value if value != last else None


# Two-state inputs that become events on change: name -> (slot, event when it turns on,
# event when it turns off, detail when on, detail when off).
_Detail = dict[str, Any] | None
_STATE_EVENTS: Final[Mapping[str, tuple[int, str, str | None, _Detail, _Detail]]] = {
    # order matters: a test first, so that a smoke alarm in the same report is taken as the test
    "test": (SLOT_TEST, "test", None, None, None),
    "smoke": (SLOT_SMOKE, "smoke_alarm", "smoke_alarm_cleared", None, None),
    "gas": (SLOT_GAS, "gas_alarm", None, None, None),
    "water_leak": (SLOT_LEAK, "water_leak", "water_leak", None, {"active": False}),
    "tamper": (SLOT_TAMPER, "tamper", "tamper", None, {"active": False}),
}


def state_events(
    transitions: Transitions, device: Device, ts: datetime, flags: Mapping[str, bool]
) -> list[Event]:
    """Events for the two-state inputs of one report that changed (docs/integrations.md)."""
    out: list[Event] = []
    for name, (slot, on, off, detail_on, detail_off) in _STATE_EVENTS.items():
        value = flags.get(name)
        if value is None:
            continue
        changed = transitions.change(device.id, name, value)
        if changed is True:
            out.append(event(device, ts, slot, on, detail_on))
        elif changed is False and off is not None:
            out.append(event(device, ts, slot, off, detail_off))
    contact = flags.get("contact")
    if contact is not None:
        # contact true is a closed door (magnet present); a first value is not a movement
        changed = transitions.change(device.id, "contact", contact, first=None)
        if changed is not None:
            out.append(event(device, ts, SLOT_DOOR, "door_closed" if changed else "door_open"))
    return out


def event(device: Device, ts: datetime, slot: int, name: str, detail: dict[str, Any] | None = None) -> Event:
    return Event(device.id, ts, -slot, name, None if detail is None else MappingProxyType(detail))


def reject(topic: str, payload: bytes, reason: str, device_id: str | None = None) -> Rejected:
    return Rejected(topic, payload, reason[:500], device_id)
