"""Zigbee2MQTT: Zigbee smoke detectors, SOS buttons, contacts and leak sensors, as v1 messages.

Topics under the base topic (``zigbee2mqtt`` by default):

- ``{base}/{friendly_name}``: the device's state as a JSON object, a full snapshot that is
  published again on every report;
- ``{base}/{friendly_name}/availability``: ``{"state": "online"}`` (or the legacy plain
  ``online`` / ``offline``);
- ``{base}/bridge/devices``: the retained inventory, with each device's IEEE address,
  friendly name and ``definition.exposes``; ``{base}/bridge/groups``: the groups.

What a device *is* comes from its exposes, not from a list of models: a device exposing
``smoke`` is a smoke detector, ``action`` a button, and so on (``kind_from_exposes``). The
kind decides how ambiguous keys are read: an ``action`` is an SOS press only from a button.
Until the inventory has arrived, the kind it was registered with stands in.

A state snapshot becomes one telemetry message (the values as metrics) and events for the
two-state inputs that changed since the previous snapshot (``smoke`` false to true is a
``smoke_alarm``, true to false a ``smoke_alarm_cleared``). The timestamp is the device's
``last_seen`` when Zigbee2MQTT is set to publish it (``advanced.last_seen``), else the time
the hub received the message. Nothing here carries a counter: every message is unsequenced
(see ``devices.adapters._common``).

A value of the wrong type is dropped and reported (the raw message is quarantined with the
reason) while the rest of the snapshot is still taken in: a bad battery reading must not
hide a smoke alarm reported beside it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from devices.contract import MAX_PAYLOAD_BYTES, Message, Rejected, Status, Telemetry
from devices.registry import Device

from ._common import (
    SLOT_SOS,
    SLOT_STATUS,
    SLOT_TELEMETRY,
    AliasKey,
    Invalid,
    Lookup,
    Metrics,
    Transitions,
    event,
    parse_json,
    parse_time,
    reject,
    state_events,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_TOPIC: Final = "zigbee2mqtt"
# The inventory describes every device with its exposes: a large network's is megabytes.
MAX_INVENTORY_BYTES: Final = 16 * 1024 * 1024
MAX_INVENTORY_DEVICES: Final = 10_000

IEEE_RE: Final = re.compile(r"0x[0-9a-fA-F]{16}")

# State key -> (metric, scale). Two-state keys are stored as 0/1.
_METRICS: Final[Mapping[str, tuple[str, float]]] = MappingProxyType(
    {
        "battery": ("battery_pct", 1.0),
        "temperature": ("temp_c", 1.0),
        "humidity": ("humidity_pct", 1.0),
        "co": ("co_ppm", 1.0),
        "smoke_density": ("smoke_density", 1.0),  # unit differs by vendor: kept under its own name
        "linkquality": ("linkquality", 1.0),  # Zigbee LQI, 0..255
    }
)
_BINARY_METRICS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "smoke": "smoke",
        "water_leak": "water_leak",
        "contact": "contact",
        "gas": "gas",
        "battery_low": "battery_low",
        "occupancy": "motion",
        "presence": "motion",
        "vibration": "motion",
    }
)
_BINARIES: Final = frozenset({*_BINARY_METRICS, "tamper", "test"})
# A button's actions that are not a press of their own.
_NOT_A_PRESS: Final = frozenset({"", "release", "hold_release", "long_release"})

# Exposed property -> ankang kind, in order of precedence: a smoke detector that also
# reports temperature is a smoke detector.
_KIND_BY_EXPOSE: Final = (
    ("smoke", "smoke_detector"),
    ("gas", "gas_detector"),
    ("water_leak", "water_leak"),
    ("contact", "door_contact"),
    ("action", "sos_button"),
    ("occupancy", "motion_sensor"),
    ("presence", "motion_sensor"),
    ("vibration", "motion_sensor"),
)


@dataclass(frozen=True, slots=True)
class ZigbeeDevice:
    """One entry of the Zigbee2MQTT inventory, as far as ankang needs it."""

    ieee: str
    friendly_name: str
    kind: str | None
    # binary property -> (value_on, value_off) as the definition declares them
    binaries: Mapping[str, tuple[object, object]]


def _features(exposes: object, depth: int = 0) -> list[dict[str, Any]]:
    """Every feature of an exposes list, composite ones (a switch, a lock) flattened."""
    out: list[dict[str, Any]] = []
    if not isinstance(exposes, list) or depth > 4:
        return out
    for item in exposes:
        if not isinstance(item, dict):
            continue
        out.append(item)
        if "features" in item:
            out.extend(_features(item["features"], depth + 1))
    return out


def kind_from_exposes(exposes: object) -> str | None:
    """The ankang device kind a Zigbee2MQTT definition's exposes describe, or None."""
    props = {str(f.get("property") or f.get("name")) for f in _features(exposes)}
    for prop, kind in _KIND_BY_EXPOSE:
        if prop in props:
            return kind
    return None


def _inventory_entry(raw: object) -> ZigbeeDevice | None:
    if not isinstance(raw, dict):
        return None
    ieee, name = raw.get("ieee_address"), raw.get("friendly_name")
    if not isinstance(ieee, str) or not IEEE_RE.fullmatch(ieee) or not isinstance(name, str) or not name:
        return None
    definition = raw.get("definition")
    exposes = definition.get("exposes") if isinstance(definition, dict) else None
    binaries: dict[str, tuple[object, object]] = {}
    for feature in _features(exposes):
        prop = feature.get("property")
        if feature.get("type") == "binary" and prop in _BINARIES and "value_on" in feature:
            binaries[prop] = (feature.get("value_on"), feature.get("value_off"))
    return ZigbeeDevice(ieee.lower(), name, kind_from_exposes(exposes), MappingProxyType(binaries))


class Zigbee2Mqtt:
    """Maps Zigbee2MQTT topics to v1 messages. ``lookup`` is the registry's alias map.

    Not thread-safe: the hub runs one batch at a time through it.
    """

    name: Final = "zigbee2mqtt"

    def __init__(self, lookup: Lookup, *, base_topic: str = DEFAULT_BASE_TOPIC) -> None:
        base_topic = base_topic.strip("/")
        if not base_topic or "+" in base_topic or "#" in base_topic:
            raise ValueError("the Zigbee2MQTT base topic must be a plain topic such as 'zigbee2mqtt'")
        self._lookup = lookup
        self._prefix = base_topic + "/"
        self.subscriptions: tuple[str, ...] = (base_topic + "/#",)
        self._by_name: dict[str, ZigbeeDevice] = {}
        self._by_ieee: dict[str, ZigbeeDevice] = {}
        self._groups: frozenset[str] = frozenset()
        self._transitions = Transitions()
        self._mismatch_logged: set[str] = set()

    # -- routing ----------------------------------------------------------------------

    def handles(self, topic: str) -> bool:
        return topic.startswith(self._prefix)

    def inventory(self, name: str) -> ZigbeeDevice | None:
        return self._by_name.get(name)

    def keys(self, topic: str) -> tuple[AliasKey, ...]:
        """The registry aliases this topic may resolve through (for a look-up ahead)."""
        rest = topic[len(self._prefix) :]
        if rest.startswith("bridge/") or _is_command(rest):
            return ()
        name = rest.removesuffix("/availability")
        keys: list[AliasKey] = [("zigbee_name", name)]
        known = self._by_name.get(name)
        if known is not None:
            keys.append(("zigbee_ieee", known.ieee))
        elif IEEE_RE.fullmatch(name):
            keys.append(("zigbee_ieee", name.lower()))
        return tuple(keys)

    # -- mapping ----------------------------------------------------------------------

    def adapt(self, topic: str, payload: bytes, received: datetime) -> list[Message | Rejected]:
        """Never raises: anything unexpected becomes a ``Rejected`` with a reason."""
        try:
            return self._adapt(topic, payload, received)
        except Invalid as exc:
            return [reject(topic, payload, str(exc))]
        except Exception as exc:  # noqa: BLE001 - the adapter's promise, as the decoder's
            return [reject(topic, payload, f"undecodable: {type(exc).__name__}")]

    def _adapt(self, topic: str, payload: bytes, received: datetime) -> list[Message | Rejected]:
        if not topic.startswith(self._prefix):
            raise Invalid(f"topic outside Zigbee2MQTT's base topic: {topic[:200]!r}")
        rest = topic[len(self._prefix) :]
        if rest.startswith("bridge/"):
            if rest == "bridge/devices":
                self._take_inventory(payload)
            elif rest == "bridge/groups":
                self._take_groups(payload)
            return []  # the bridge's own state, logs, responses: not device data
        if _is_command(rest):
            return []  # commands to devices, published by others
        if not rest:
            raise Invalid("topic names no Zigbee2MQTT device")
        if rest.endswith("/availability"):
            name = rest.removesuffix("/availability")
            device, _ = self._resolve(name)
            if device is None:
                return [] if name in self._groups else [self._unknown(topic, payload, name)]
            return [self._availability(device, payload, received)]
        device, known = self._resolve(rest)
        if device is None:
            if rest in self._groups or self._is_attribute_topic(rest):
                return []
            return [self._unknown(topic, payload, rest)]
        return self._state(topic, payload, received, device, known)

    def _resolve(self, name: str) -> tuple[Device | None, ZigbeeDevice | None]:
        known = self._by_name.get(name)
        device = self._lookup("zigbee_name", name)
        if device is None and known is not None:
            device = self._lookup("zigbee_ieee", known.ieee)
        if device is None and known is None and IEEE_RE.fullmatch(name):
            # a device never renamed is published under its IEEE address
            device = self._lookup("zigbee_ieee", name.lower())
            known = self._by_ieee.get(name.lower())
        return device, known

    def _is_attribute_topic(self, rest: str) -> bool:
        # With ``output: attribute_and_json`` each value is also published on its own
        # topic, {base}/{name}/{attribute}; the JSON state already carries it.
        parent, slash, _ = rest.rpartition("/")
        return bool(slash) and self._resolve(parent)[0] is not None

    @staticmethod
    def _unknown(topic: str, payload: bytes, name: str) -> Rejected:
        return reject(
            topic,
            payload,
            f"unknown device: no ankang device has Zigbee friendly name {name[:100]!r}"
            " (register its friendly name or IEEE address)",
        )

    def _availability(self, device: Device, payload: bytes, received: datetime) -> Status:
        text = payload.strip()
        state: object
        if text in (b"online", b"offline"):
            state = text.decode()
        else:
            obj = parse_json(payload, 4096)
            state = obj.get("state") if isinstance(obj, dict) else None
        if state not in ("online", "offline"):
            raise Invalid('availability must be online or offline, or {"state": ...} with one of them')
        return Status(device.id, received, -SLOT_STATUS, str(state))

    def _state(
        self, topic: str, payload: bytes, received: datetime, device: Device, known: ZigbeeDevice | None
    ) -> list[Message | Rejected]:
        obj = parse_json(payload, MAX_PAYLOAD_BYTES)
        if not isinstance(obj, dict):
            raise Invalid(f"a Zigbee2MQTT state must be a JSON object, not {type(obj).__name__}")
        problems: list[str] = []
        ts = received
        seen = obj.get("last_seen")
        if seen is not None:
            try:
                ts = parse_time(seen, received, "last_seen")
            except Invalid as exc:
                problems.append(f"{exc}; the hub's receive time is used")
        kind = self._kind(device, known)
        binaries = known.binaries if known is not None else {}
        flags: dict[str, bool] = {}
        for key in _BINARIES:
            raw = obj.get(key)
            if raw is None:
                continue
            value = _binary(key, raw, binaries.get(key))
            if value is None:
                problems.append(f"{key} must be true or false, not {str(raw)[:40]!r}")
            else:
                flags[key] = value
        metrics = Metrics({}, problems)
        for key, (metric, scale) in _METRICS.items():
            if key in obj:
                metrics.add(metric, obj[key], scale)
        for key, metric in _BINARY_METRICS.items():
            if key in flags and not (metric == "motion" and metrics.values.get("motion") == 1.0):
                metrics.add(metric, flags[key])
        out: list[Message | Rejected] = []
        out.extend(state_events(self._transitions, device, ts, flags))
        action = obj.get("action")
        if action is not None:
            if not isinstance(action, str):
                problems.append("action must be a string")
            elif kind == "sos_button" and action not in _NOT_A_PRESS and not action.endswith("_release"):
                # a button registered for help: every press is a call (docs/integrations.md)
                out.append(event(device, ts, SLOT_SOS, "sos_pressed", {"action": action[:64]}))
        if metrics.values:
            out.append(Telemetry(device.id, ts, -SLOT_TELEMETRY, metrics.frozen()))
        if problems:
            reason = f"zigbee2mqtt {device.id}: " + "; ".join(problems[:5])
            if out:
                reason += " (dropped; the rest of the state was taken in)"
            out.append(reject(topic, payload, reason, device.id))
        return out

    def _kind(self, device: Device, known: ZigbeeDevice | None) -> str:
        if known is None or known.kind is None:
            return device.kind
        if known.kind != device.kind and device.id not in self._mismatch_logged:
            self._mismatch_logged.add(device.id)
            log.warning(
                "zigbee device %s exposes a %s but is registered as %s; its state is read as a %s",
                known.friendly_name,
                known.kind,
                device.kind,
                known.kind,
            )
        return known.kind

    def _take_inventory(self, payload: bytes) -> None:
        obj = parse_json(payload, MAX_INVENTORY_BYTES)
        if not isinstance(obj, list):
            raise Invalid("bridge/devices must be a JSON list of devices")
        if len(obj) > MAX_INVENTORY_DEVICES:
            raise Invalid(f"bridge/devices lists more than {MAX_INVENTORY_DEVICES} devices")
        entries = [e for e in map(_inventory_entry, obj) if e is not None]
        self._by_name = {e.friendly_name: e for e in entries}
        self._by_ieee = {e.ieee: e for e in entries}
        self._mismatch_logged.clear()
        log.info("zigbee2mqtt inventory: %d devices", len(entries))

    def _take_groups(self, payload: bytes) -> None:
        obj = parse_json(payload, MAX_INVENTORY_BYTES)
        if not isinstance(obj, list):
            raise Invalid("bridge/groups must be a JSON list of groups")
        self._groups = frozenset(
            g["friendly_name"] for g in obj if isinstance(g, dict) and isinstance(g.get("friendly_name"), str)
        )


def _is_command(rest: str) -> bool:
    return rest.endswith(("/set", "/get")) or "/set/" in rest or "/get/" in rest


def _binary(key: str, raw: object, declared: tuple[object, object] | None) -> bool | None:
    """A two-state value: JSON booleans as they are, other values by the definition's
    ``value_on``/``value_off``. Zigbee2MQTT's "on" is the state that wants attention, which
    for ``contact`` is the open door, so there it reads as contact false."""
    if raw is True or raw is False:
        return raw
    if declared is None or isinstance(raw, dict | list):
        return None
    on, off = declared
    if raw == on:
        active = True
    elif raw == off:
        active = False
    else:
        return None
    return not active if key == "contact" else active
