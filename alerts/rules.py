"""What each detection means for alarms: the type it raises, its priority, its episode.

The table is frozen data; ``route`` is the only logic. Priorities follow IEC 60601-1-8
(docs/standards.md): *high* means act at once, *medium* act promptly, *low* be aware.

An **episode** is the stretch of time during which repeats of a condition belong to one
alarm:

- ``until_ack``: the episode ends when a person acknowledges. A second fall after the
  first was acknowledged is a new fall and opens a new alarm, instead of vanishing into
  the acknowledged one.
- ``until_resolved``: the episode lasts until someone resolves the alarm. A fire that
  keeps alarming after acknowledgement is still the same fire: repeats count on it.

Types with ``auto_resolve_after_s`` damp flapping: the condition must stay cleared that
long, with no repeat, before the sweep resolves the alarm as ``cleared``. Fire, gas, SOS
and falls never auto-resolve and are never suppressed: a person resolves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Priority = Literal["high", "medium", "low"]
Episode = Literal["until_ack", "until_resolved"]


@dataclass(frozen=True, slots=True)
class AlarmRule:
    priority: Priority
    episode: Episode
    # Seconds the condition must stay cleared before the sweep resolves the alarm;
    # None: only a person resolves it.
    auto_resolve_after_s: float | None = None
    # Whether a repeat brings the detection's evidence: a technical alarm shows its latest
    # figures, while a fall keeps the evidence of the fall that opened it.
    latest_evidence: bool = False


RULES: Final[Mapping[str, AlarmRule]] = MappingProxyType(
    {
        # high: act at once (IEC 60601-1-8; docs/standards.md lists fall, fire, SOS, gas)
        "fall": AlarmRule("high", "until_ack"),
        "fire": AlarmRule("high", "until_resolved"),
        "sos": AlarmRule("high", "until_ack"),
        "gas": AlarmRule("high", "until_resolved"),
        # medium: act promptly
        "bed_exit": AlarmRule("medium", "until_ack"),
        "vitals": AlarmRule("medium", "until_ack"),
        "inactivity": AlarmRule("medium", "until_ack"),
        "fire_prealarm": AlarmRule("medium", "until_ack"),
        # Ten minutes of hold-down: a device that drops off and back within that time keeps
        # one alarm with a count, rather than one alarm per toggle.
        "device_offline": AlarmRule("medium", "until_resolved", 600.0),
        "water_leak": AlarmRule("medium", "until_resolved", 600.0),
        "fault": AlarmRule("medium", "until_resolved", 600.0),
        # low: be aware
        "low_battery": AlarmRule("low", "until_resolved", 3600.0),
        "tamper": AlarmRule("low", "until_resolved", 600.0),
        # technical (IEC 60601-1-8): the hub is behind. High while fire, gas and SOS are late
        # too, medium while only bulk telemetry is; ends two minutes after the hub caught up.
        "ingest_delayed": AlarmRule("high", "until_resolved", 120.0, latest_evidence=True),
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    """A detection's effect: ``raise_`` opens or repeats ``type``; otherwise it clears
    the condition of every type in ``clears``."""

    raise_: bool
    type: str = ""
    priority: Priority = "low"
    clears: tuple[str, ...] = ()


# (kind, level) -> type for detections that raise alarms. A level not listed does not raise.
_RAISES: Final[Mapping[tuple[str, str], str]] = MappingProxyType(
    {
        ("fall", "alarm"): "fall",
        ("fire", "alarm"): "fire",
        ("fire", "prealarm"): "fire_prealarm",
        ("gas", "alarm"): "gas",
        ("gas", "warning"): "gas",
        ("sos", "alarm"): "sos",
        ("bed_exit", "alarm"): "bed_exit",
        ("bed_not_returned", "alarm"): "bed_exit",
        ("bed_absent", "alarm"): "bed_exit",
        ("vitals", "alarm"): "vitals",
        ("apnea", "alarm"): "vitals",
        ("apnea", "warning"): "vitals",
        ("inactivity", "alarm"): "inactivity",
        ("device_offline", "alarm"): "device_offline",
        ("low_battery", "warning"): "low_battery",
        ("tamper", "warning"): "tamper",
        ("fault", "warning"): "fault",
        ("stuck_sensor", "warning"): "fault",
        ("water_leak", "alarm"): "water_leak",
        ("ingest_delayed", "alarm"): "ingest_delayed",
        ("ingest_delayed", "warning"): "ingest_delayed",
    }
)

# A gas *warning* (LEL rising) is prompt, not immediate; the alarm that may follow raises
# the same alarm to high. Priorities only ever go up within an alarm.
_PRIORITY_OVERRIDE: Final[Mapping[tuple[str, str], Priority]] = MappingProxyType(
    {("gas", "warning"): "medium", ("ingest_delayed", "warning"): "medium"}
)

# kind -> the types a ``clear`` of that kind ends.
_CLEARS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "fire": ("fire", "fire_prealarm"),
        "gas": ("gas",),
        "water_leak": ("water_leak",),
        "bed_exit": ("bed_exit",),
        "bed_not_returned": ("bed_exit",),
        "bed_absent": ("bed_exit",),
        "vitals": ("vitals",),
        "apnea": ("vitals",),
        "inactivity": ("inactivity",),
        "device_offline": ("device_offline",),
        "device_online": ("device_offline",),
        "low_battery": ("low_battery",),
        "tamper": ("tamper",),
        "fault": ("fault",),
        "stuck_sensor": ("fault",),
        "ingest_delayed": ("ingest_delayed",),
    }
)


def clearing_kinds(alarm_type: str) -> tuple[str, ...]:
    """The detection kinds whose ``clear`` ends a condition of ``alarm_type``."""
    return tuple(kind for kind, types in _CLEARS.items() if alarm_type in types)


def route(kind: str, level: str) -> Route | None:
    """What a detection of ``kind`` at ``level`` does to alarms; None: nothing (``fire_test``
    is an info counted for GB 50440's monthly tests, not an alarm)."""
    if level == "clear" or kind == "device_online":
        clears = _CLEARS.get(kind)
        return Route(False, clears=clears) if clears else None
    alarm_type = _RAISES.get((kind, level))
    if alarm_type is None:
        return None
    priority = _PRIORITY_OVERRIDE.get((kind, level), RULES[alarm_type].priority)
    return Route(True, alarm_type, priority)
