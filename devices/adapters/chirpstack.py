"""ChirpStack v4: LoRaWAN devices behind a ChirpStack network server, as v1 messages.

ChirpStack's MQTT integration publishes JSON events (the protobuf JSON mapping, camelCase)
on ``application/{application_id}/device/{dev_eui}/event/{type}``:

- ``up``: an uplink. ``time`` is its time, ``fCnt`` its frame counter, ``object`` what the
  device profile's codec decoded, ``rxInfo`` one entry per gateway that heard it. It becomes
  a telemetry message with ``seq = fCnt`` (a real counter: the hub counts gaps, and a
  rejoin, which restarts it at 0, reads as a reboot), the codec's numbers and booleans as
  metrics, and the best gateway's ``rssi``/``snr`` as ``rssi_dbm``/``snr_db``. Two-state
  values (``smoke``, ``water_leak``, ``tamper``, ...) also give events on change, as from
  Zigbee2MQTT, and a codec may name ankang events outright (``"event": "sos_pressed"`` or
  ``"events": [...]``).
- ``status``: the device's answer to DevStatusReq: ``batteryLevel`` (percent), or
  ``externalPowerSource``, and ``margin`` (the demodulation SNR margin, dB).
- ``join``: the device (re)joined: a status ``online``.
- ``ack``, ``txack``, ``log``, ``location``, ``integration``: nothing for the hub.

The protobuf JSON mapping leaves out fields at their default value, so a missing ``fCnt`` is
0. Messages other than the uplink's telemetry are unsequenced (``devices.adapters._common``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from devices.contract import EVENTS, MAX_PAYLOAD_BYTES, Message, Rejected, Status, Telemetry
from devices.registry import Device

from ._common import (
    SLOT_CODEC_EVENT,
    SLOT_STATUS,
    SLOT_TELEMETRY,
    AliasKey,
    Invalid,
    Lookup,
    Metrics,
    Transitions,
    event,
    number,
    parse_json,
    parse_time,
    reject,
    state_events,
)

DEFAULT_TOPIC_FILTER: Final = "application/+/device/+/event/+"
DEV_EUI_RE: Final = re.compile(r"[0-9a-fA-F]{16}")
MAX_FCNT: Final = 2**32 - 1  # LoRaWAN 1.0.x/1.1 32-bit frame counter

_IGNORED: Final = frozenset({"ack", "txack", "log", "location", "integration"})
_METRIC_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CAMEL_RE: Final = re.compile(r"(?<=[a-z0-9])([A-Z])")
# Names common codecs use for what ankang already has a metric for.
_CODEC_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "temperature": "temp_c",
        "humidity": "humidity_pct",
        "battery": "battery_pct",
        "battery_level": "battery_pct",
        "bat_v": "battery_v",
        "battery_voltage": "battery_v",
        "occupancy": "motion",
        "leak": "water_leak",
    }
)
_FLAGS: Final = frozenset({"smoke", "test", "gas", "water_leak", "tamper", "contact"})


def _metric_name(key: str) -> str | None:
    name = _CAMEL_RE.sub(r"_\1", key[:80]).lower()
    name = _CODEC_ALIASES.get(name, name)
    return name if _METRIC_NAME_RE.fullmatch(name) else None


class ChirpStack:
    """Maps ChirpStack v4 integration events to v1 messages. ``lookup`` is the registry's
    alias map. Not thread-safe: the hub runs one batch at a time through it."""

    name: Final = "chirpstack"

    def __init__(self, lookup: Lookup, *, topic_filter: str = DEFAULT_TOPIC_FILTER) -> None:
        parts = topic_filter.split("/")
        if len(parts) < 6 or parts[-6:] != ["application", "+", "device", "+", "event", "+"]:
            raise ValueError("the ChirpStack topic filter must end in application/+/device/+/event/+")
        if any(p in ("+", "#") for p in parts[:-6]):
            raise ValueError("the ChirpStack topic prefix must be plain")
        self._lookup = lookup
        self._prefix = "/".join(parts[:-6])
        self._prefix_parts = len(parts) - 6
        self.subscriptions: tuple[str, ...] = (topic_filter,)
        self._transitions = Transitions()

    # -- routing ----------------------------------------------------------------------

    def _split(self, topic: str) -> tuple[str, str] | None:
        """(DevEUI, event type) of an integration topic, or None."""
        parts = topic.split("/")
        if (
            len(parts) != self._prefix_parts + 6
            or parts[-6] != "application"
            or parts[-4] != "device"
            or parts[-2] != "event"
            or "/".join(parts[:-6]) != self._prefix
        ):
            return None
        return parts[-3], parts[-1]

    def handles(self, topic: str) -> bool:
        return self._split(topic) is not None

    def keys(self, topic: str) -> tuple[AliasKey, ...]:
        split = self._split(topic)
        if split is None or split[1] in _IGNORED or not DEV_EUI_RE.fullmatch(split[0]):
            return ()
        return (("lorawan_dev_eui", split[0].lower()),)

    # -- mapping ----------------------------------------------------------------------

    def adapt(self, topic: str, payload: bytes, received: datetime) -> list[Message | Rejected]:
        """Never raises: anything unexpected becomes a ``Rejected`` with a reason."""
        try:
            return self._adapt(topic, payload, received)
        except Invalid as exc:
            return [reject(topic, payload, str(exc), self._device_id(topic))]
        except Exception as exc:  # noqa: BLE001 - the adapter's promise, as the decoder's
            return [reject(topic, payload, f"undecodable: {type(exc).__name__}", self._device_id(topic))]

    def _device_id(self, topic: str) -> str | None:
        keys = self.keys(topic)
        device = self._lookup(*keys[0]) if keys else None
        return None if device is None else device.id

    def _adapt(self, topic: str, payload: bytes, received: datetime) -> list[Message | Rejected]:
        split = self._split(topic)
        if split is None:
            raise Invalid(f"topic is not a ChirpStack integration event: {topic[:200]!r}")
        dev_eui, kind = split
        if kind in _IGNORED:
            return []
        if kind not in ("up", "status", "join"):
            raise Invalid(f"topic names an unknown ChirpStack event {kind[:40]!r}")
        if not DEV_EUI_RE.fullmatch(dev_eui):
            raise Invalid("topic DevEUI must be 16 hex digits")
        dev_eui = dev_eui.lower()
        device = self._lookup("lorawan_dev_eui", dev_eui)
        if device is None:
            raise Invalid(f"unknown device: no ankang device has LoRaWAN DevEUI {dev_eui}")
        obj = parse_json(payload, MAX_PAYLOAD_BYTES)
        if not isinstance(obj, dict):
            raise Invalid(f"a ChirpStack event must be a JSON object, not {type(obj).__name__}")
        _check_device_info(obj.get("deviceInfo"), dev_eui)
        if "time" not in obj:
            raise Invalid("missing time")
        ts = parse_time(obj["time"], received, "time")
        if kind == "join":
            return [Status(device.id, ts, -SLOT_STATUS, "online")]
        if kind == "status":
            return self._status(topic, payload, device, ts, obj)
        return self._up(topic, payload, device, ts, obj)

    def _up(
        self, topic: str, payload: bytes, device: Device, ts: datetime, obj: dict[str, Any]
    ) -> list[Message | Rejected]:
        fcnt = obj.get("fCnt", 0)
        if type(fcnt) is not int or not 0 <= fcnt <= MAX_FCNT:
            raise Invalid(f"fCnt must be an integer from 0 to {MAX_FCNT}")
        problems: list[str] = []
        metrics = Metrics({}, problems)
        flags: dict[str, bool] = {}
        names: list[str] = []
        decoded = obj.get("object")
        if decoded is not None and not isinstance(decoded, dict):
            problems.append("object must be a JSON object")
        elif decoded:
            for key, value in decoded.items():
                if key == "event":
                    if isinstance(value, str):
                        names.append(value)
                    else:
                        problems.append("event must be a string")
                elif key == "events":
                    if isinstance(value, list) and all(isinstance(v, str) for v in value):
                        names.extend(value[:8])
                    else:
                        problems.append("events must be a list of event names")
                elif value is True or value is False or number(value) is not None:
                    name = _metric_name(key)
                    if name is None:
                        problems.append(f"object key {key[:40]!r} is not a usable metric name")
                        continue
                    if name in _FLAGS and isinstance(value, bool):
                        flags[name] = value
                    if name not in ("test", "tamper"):
                        metrics.add(name, value)
                # strings, lists and objects from a codec are not metrics: left out
        _radio(obj.get("rxInfo"), metrics)
        out: list[Message | Rejected] = []
        out.extend(state_events(self._transitions, device, ts, flags))
        for name in dict.fromkeys(names):
            if name in EVENTS:
                out.append(event(device, ts, SLOT_CODEC_EVENT + EVENTS.index(name), name))
            else:
                problems.append(f"event {name[:40]!r} is not an ankang event")
        if metrics.values:
            out.append(Telemetry(device.id, ts, fcnt, metrics.frozen()))
        if problems:
            reason = f"chirpstack {device.id}: " + "; ".join(problems[:5])
            if out:
                reason += " (dropped; the rest of the uplink was taken in)"
            out.append(reject(topic, payload, reason, device.id))
        return out

    @staticmethod
    def _status(
        topic: str, payload: bytes, device: Device, ts: datetime, obj: dict[str, Any]
    ) -> list[Message | Rejected]:
        problems: list[str] = []
        metrics = Metrics({}, problems)
        external = obj.get("externalPowerSource", False)
        unavailable = obj.get("batteryLevelUnavailable", False)
        if not isinstance(external, bool) or not isinstance(unavailable, bool):
            raise Invalid("externalPowerSource and batteryLevelUnavailable must be booleans")
        metrics.add("external_power", external)
        if not external and not unavailable and "batteryLevel" in obj:
            metrics.add("battery_pct", obj["batteryLevel"])
        if "margin" in obj:
            metrics.add("snr_margin_db", obj["margin"])
        out: list[Message | Rejected] = [Telemetry(device.id, ts, -SLOT_TELEMETRY, metrics.frozen())]
        if problems:
            reason = f"chirpstack {device.id}: " + "; ".join(problems[:5]) + " (dropped)"
            out.append(reject(topic, payload, reason, device.id))
        return out


def _check_device_info(info: object, dev_eui: str) -> None:
    if info is None:
        return
    if not isinstance(info, dict):
        raise Invalid("deviceInfo must be a JSON object")
    named = info.get("devEui")
    if named is not None and (not isinstance(named, str) or named.lower() != dev_eui):
        raise Invalid(f"deviceInfo.devEui {str(named)[:40]!r} does not match the topic's {dev_eui}")


def _radio(rx_info: object, metrics: Metrics) -> None:
    """The best gateway's RSSI and SNR (the one that heard the uplink loudest)."""
    if rx_info is None:
        return
    if not isinstance(rx_info, list):
        metrics.problems.append("rxInfo must be a list")
        return
    best: dict[str, Any] | None = None
    best_rssi = -1e9
    for rx in rx_info[:64]:
        if isinstance(rx, dict):
            rssi = number(rx.get("rssi"))
            if rssi is not None and rssi > best_rssi:
                best, best_rssi = rx, rssi
    if best is not None:
        metrics.add("rssi_dbm", best["rssi"])
        if "snr" in best:
            metrics.add("snr_db", best["snr"])
