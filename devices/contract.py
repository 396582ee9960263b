"""The v1 device message contract, and the decoder that enforces it.

Topic: ``ankang/v1/{device_id}/{channel}``; the payload is a JSON object with ``ts`` and
``seq`` plus a body that depends on the channel (see docs/devices.md and
``devices/schema/v1.json``).

``decode`` turns raw MQTT bytes into one frozen, validated value, or into a ``Rejected``
with a human-readable reason. It never raises: every input from a device is hostile until
it has been through here, and the rest of the system trusts what comes out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import chain
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

TOPIC_PREFIX: Final = "ankang/v1/"
CHANNELS: Final = ("telemetry", "event", "status")
Channel = Literal["telemetry", "event", "status"]

KINDS: Final = (
    "wearable",
    "bed_sensor",
    "smoke_detector",
    "gas_detector",
    "sos_button",
    "door_contact",
    "water_leak",
    "motion_sensor",
)

EVENTS: Final = (
    "sos_pressed",
    "smoke_alarm",
    "smoke_alarm_cleared",
    "gas_alarm",
    "tamper",
    "fault",
    "test",
    "door_open",
    "door_closed",
    "water_leak",
    # the wearable's own fall detection (many watches and pendants detect on the device)
    "fall",
)

STATES: Final = ("online", "offline")

# Topics under the prefix that are not device input: ankang/v1/alerts/... and ankang/v1/ha/...
# are the alert service's (alerts/publish.py, alerts/hadiscovery.py), and
# ankang/v1/{id}/command goes to a device. No device may be called "alerts" or "ha".
COMMAND_CHANNEL: Final = "command"
RESERVED_DEVICE_IDS: Final = frozenset({"alerts", "ha"})

# Larger payloads are refused before parsing. One second of 200 Hz acceleration plus gyro
# is about 12 KiB of JSON, so this leaves ample room while bounding memory per message.
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_SAMPLES: Final = 4000
MAX_DETAIL_BYTES: Final = 4096
MAX_DETAIL_DEPTH: Final = 8  # detail is a small annotation, not a document
MAX_METRICS: Final = 64
# How much of a device's text a reason may echo.
_ECHO_CHARS: Final = 40

_DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METRIC_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_FW_RE: Final = re.compile(r"[\x20-\x7e]{1,64}")

# Physically plausible ranges. A value outside them is a broken or hostile sensor, not a
# reading: a room fire's ceiling gas stays well under 1,200 °C, and CO detectors saturate
# far below 10,000 ppm.
METRIC_RANGES: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "temp_c": (-60.0, 1200.0),
        "co_ppm": (0.0, 10_000.0),
        "smoke": (0.0, 1.0),
        "smoke_density_pct_m": (0.0, 100.0),
        "gas_lel_pct": (0.0, 100.0),
        "battery_pct": (0.0, 100.0),
        "battery_v": (0.0, 60.0),
        "occupied": (0.0, 1.0),
        "hr_bpm": (0.0, 300.0),
        "rr_rpm": (0.0, 120.0),
        "movement": (0.0, 1_000_000.0),
        "rssi_dbm": (-200.0, 20.0),
        "snr_db": (-50.0, 50.0),
        "humidity_pct": (0.0, 100.0),
        "contact": (0.0, 1.0),
        "water_leak": (0.0, 1.0),
        "motion": (0.0, 1.0),
    }
)
_DEFAULT_RANGE: Final = (-1e9, 1e9)
_BOOLEAN_METRICS: Final = frozenset({"smoke", "occupied", "contact", "water_leak", "motion"})
_NUMBER_TYPES: Final = frozenset({int, float})

MAX_ACC_G: Final = 64.0  # MEMS accelerometers saturate at 16 g or below; more is garbage
MAX_GYRO_DPS: Final = 5000.0
MIN_RATE_HZ: Final = 1.0
MAX_RATE_HZ: Final = 1000.0
_MAX_SEQ: Final = 2**63 - 1

# Device clocks drift and buffered devices send late, but a timestamp a day ahead of the
# hub or older than a year is a broken clock.
MAX_FUTURE_SKEW: Final = timedelta(hours=24)
MAX_AGE: Final = timedelta(days=366)
_EPOCH_MS_MIN: Final = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message. ``ts`` is the device's time (UTC), ``seq`` its counter."""

    device_id: str
    ts: datetime
    seq: int

    @property
    def channel(self) -> Channel:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Telemetry(Message):
    """Scalars in ``metrics``, and optionally one block of acceleration (and gyro) samples."""

    metrics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    rate_hz: float | None = None
    acc_g: npt.NDArray[np.float32] | None = None
    gyro_dps: npt.NDArray[np.float32] | None = None

    @property
    def channel(self) -> Channel:
        return "telemetry"

    @property
    def n_samples(self) -> int:
        return 0 if self.acc_g is None else int(self.acc_g.shape[0])


@dataclass(frozen=True, slots=True)
class Event(Message):
    event: str = ""
    detail: Mapping[str, Any] | None = None

    @property
    def channel(self) -> Channel:
        return "event"


@dataclass(frozen=True, slots=True)
class Status(Message):
    state: str = "online"
    fw: str | None = None
    heartbeat_s: int | None = None

    @property
    def channel(self) -> Channel:
        return "status"


class QuarantineKind(StrEnum):
    """What kind of rule a quarantined message broke (``quarantine.kind``, and the
    ``kind`` label of ``ankang_quarantine``)."""

    JSON = "json"  # not JSON at all
    TOPIC = "topic"  # a topic outside the contract or an adapter's topics
    CONTRACT = "contract"  # JSON that breaks the contract
    UNKNOWN_DEVICE = "unknown_device"  # a well-formed message from a device nobody registered
    SEQUENCE = "sequence"  # a duplicate or out-of-order sequence number
    STORAGE = "storage"  # refused by the database although it passed validation
    DETECTION = "detection"  # a detection the database refused (its topic is ``detection/{kind}``)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that failed the contract; it is quarantined with ``reason``."""

    topic: str
    payload: bytes
    reason: str
    device_id: str | None = None
    kind: QuarantineKind | None = None  # None: told from the reason (see __post_init__)

    def __post_init__(self) -> None:
        # A reason may quote the device's own text; it goes to logs and to a text column,
        # so it is made printable here, whoever built it.
        object.__setattr__(self, "reason", printable(self.reason, 500))
        if self.kind is None:
            kind = QuarantineKind.CONTRACT
            if self.reason.startswith("malformed JSON"):
                kind = QuarantineKind.JSON
            elif self.reason.startswith("topic"):
                kind = QuarantineKind.TOPIC
            elif self.reason.startswith("unknown device"):
                kind = QuarantineKind.UNKNOWN_DEVICE  # an adapter's: no device has that address
            object.__setattr__(self, "kind", kind)


def printable(text: object, limit: int = _ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with every control character, lone surrogate
    and other unprintable code point written as an escape (``\\x00``, ``\\ud800``).

    Use it for anything a device wrote that a reason, a log line or a column repeats:
    PostgreSQL refuses NUL in text, and a surrogate cannot even be encoded as UTF-8.
    """
    s = str(text)[:limit]
    if s.isascii() and s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def text_problem(value: object, *, depth: int = 0, where: str = "") -> str | None:
    """Why a decoded JSON value cannot be stored as is, or None.

    Keys and strings must not hold NUL (PostgreSQL's text and jsonb refuse it) or lone
    surrogates (no UTF-8 encoding exists for them; JSON decoders usually refuse them
    first), and containers nest at most ``MAX_DETAIL_DEPTH`` deep.
    """
    if isinstance(value, str):
        return _bad_text(value, where)
    if isinstance(value, dict):
        if depth >= MAX_DETAIL_DEPTH:
            return f"{where or 'value'} nests deeper than {MAX_DETAIL_DEPTH} levels"
        for key, item in value.items():
            inner = f"{where}.{printable(key)}" if where else printable(key)
            problem = _bad_text(str(key), f"key {inner}") or text_problem(item, depth=depth + 1, where=inner)
            if problem:
                return problem
    elif isinstance(value, list):
        if depth >= MAX_DETAIL_DEPTH:
            return f"{where or 'value'} nests deeper than {MAX_DETAIL_DEPTH} levels"
        for i, item in enumerate(value):
            problem = text_problem(item, depth=depth + 1, where=f"{where}[{i}]")
            if problem:
                return problem
    return None


def _bad_text(s: str, where: str) -> str | None:
    if s.isascii():
        if "\x00" in s:
            return f"{where or 'text'} contains a NUL character"
        return None
    if "\x00" in s:
        return f"{where or 'text'} contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where or 'text'} contains a lone surrogate"
    return None


class _Invalid(Exception):
    """Internal: carries a quarantine reason out of the nested validators."""


def is_valid_device_id(device_id: str) -> bool:
    return _DEVICE_ID_RE.fullmatch(device_id) is not None


def device_id_from_topic(topic: str) -> str | None:
    """The device id a topic under the prefix names, or None if it names none.

    ``ankang/v1/{id}/telemetry/extra`` names device ``id``: a device may publish anything
    under its own id, and what it sends outside the channels is quarantined as its own.
    """
    if not topic.startswith(TOPIC_PREFIX):
        return None
    device_id = topic[len(TOPIC_PREFIX) :].split("/", 1)[0]
    return device_id if is_valid_device_id(device_id) else None


def is_device_input(topic: str) -> bool:
    """False for the topics under the prefix that devices do not publish to the hub: the
    alert service's own and the command topics (see ``RESERVED_DEVICE_IDS``)."""
    if not topic.startswith(TOPIC_PREFIX):
        return True
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if parts[0] in RESERVED_DEVICE_IDS:
        return False
    return not (len(parts) == 2 and parts[1] == COMMAND_CHANNEL)


def decode(topic: str, payload: bytes, *, now: datetime | None = None) -> Message | Rejected:
    """Validate one MQTT message against the v1 contract. Never raises."""
    try:
        return _decode(topic, payload, now or datetime.now(UTC))
    except _Invalid as exc:
        return Rejected(topic, payload, str(exc), device_id_from_topic(topic))
    except Exception as exc:  # noqa: BLE001 - the decoder's promise is that nothing escapes
        return Rejected(topic, payload, f"undecodable: {type(exc).__name__}", device_id_from_topic(topic))


def _decode(topic: str, payload: bytes, now: datetime) -> Message:
    if not topic.startswith(TOPIC_PREFIX):
        raise _Invalid(f"topic outside the v1 contract: {printable(topic, 200)!r}")
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if len(parts) != 2:
        raise _Invalid(f"topic {printable(topic, 200)!r} is not ankang/v1/{{device_id}}/{{channel}}")
    device_id, channel = parts
    if not is_valid_device_id(device_id):
        raise _Invalid("device id must match [A-Za-z0-9_-]{1,64}")
    if channel not in CHANNELS:
        raise _Invalid(
            f"topic names an unknown channel {printable(channel)!r}; expected telemetry, event or status"
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Invalid(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _Invalid(f"malformed JSON: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"payload must be a JSON object, not {type(obj).__name__}")
    ts = _timestamp(obj.get("ts"), now)
    seq = obj.get("seq")
    if type(seq) is not int:
        raise _Invalid("seq must be an integer")
    if not 0 <= seq <= _MAX_SEQ:
        raise _Invalid("seq out of range")
    if channel == "telemetry":
        return _telemetry(device_id, ts, seq, obj, b"true" in payload or b"false" in payload)
    if channel == "event":
        return _event(device_id, ts, seq, obj)
    return _status(device_id, ts, seq, obj)


def _timestamp(raw: object, now: datetime) -> datetime:
    if raw is None:
        raise _Invalid("missing ts")
    if type(raw) is int:
        if raw < _EPOCH_MS_MIN:
            raise _Invalid("ts must be epoch milliseconds after 2000-01-01")
        try:
            ts = datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("ts out of range") from None
    elif isinstance(raw, str):
        if len(raw) > 40:
            raise _Invalid("ts string too long")
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise _Invalid("ts is not an RFC 3339 timestamp") from None
        if ts.tzinfo is None:
            raise _Invalid("ts must carry a UTC offset (RFC 3339)")
        ts = ts.astimezone(UTC)
    else:
        raise _Invalid("ts must be epoch milliseconds or an RFC 3339 string")
    if ts > now + MAX_FUTURE_SKEW:
        raise _Invalid(f"ts {ts.isoformat()} is more than 24 h ahead of the hub clock")
    if ts < now - MAX_AGE:
        raise _Invalid(f"ts {ts.isoformat()} is more than a year old")
    return ts


def _check_keys(obj: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = obj.keys() - allowed
    if extra:
        raise _Invalid(f"unknown field(s): {', '.join(sorted(printable(k) for k in extra)[:5])}")


_TELEMETRY_KEYS: Final = frozenset({"ts", "seq", "metrics", "rate_hz", "acc_g", "gyro_dps"})
_EVENT_KEYS: Final = frozenset({"ts", "seq", "event", "detail"})
_STATUS_KEYS: Final = frozenset({"ts", "seq", "state", "fw", "heartbeat_s"})


def _telemetry(
    device_id: str, ts: datetime, seq: int, obj: dict[str, Any], may_have_bools: bool
) -> Telemetry:
    _check_keys(obj, _TELEMETRY_KEYS)
    metrics = _metrics(obj.get("metrics"))
    acc_raw = obj.get("acc_g")
    rate_raw = obj.get("rate_hz")
    gyro_raw = obj.get("gyro_dps")
    if acc_raw is None:
        if rate_raw is not None or gyro_raw is not None:
            raise _Invalid("rate_hz and gyro_dps need acc_g")
        if not metrics:
            raise _Invalid("telemetry carries neither metrics nor acc_g")
        return Telemetry(device_id, ts, seq, metrics)
    if not isinstance(rate_raw, int | float) or isinstance(rate_raw, bool) or not math.isfinite(rate_raw):
        raise _Invalid("acc_g needs a numeric rate_hz")
    rate = float(rate_raw)
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise _Invalid(f"rate_hz {rate:g} outside {MIN_RATE_HZ:g}..{MAX_RATE_HZ:g}")
    acc = _samples(acc_raw, "acc_g", MAX_ACC_G, may_have_bools)
    gyro = None
    if gyro_raw is not None:
        gyro = _samples(gyro_raw, "gyro_dps", MAX_GYRO_DPS, may_have_bools)
        if gyro.shape != acc.shape:
            raise _Invalid("gyro_dps must have as many samples as acc_g")
    return Telemetry(device_id, ts, seq, metrics, rate, acc, gyro)


def _metrics(raw: object) -> Mapping[str, float]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, dict):
        raise _Invalid("metrics must be an object")
    if len(raw) > MAX_METRICS:
        raise _Invalid(f"more than {MAX_METRICS} metrics")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if not _METRIC_RE.fullmatch(name):
            raise _Invalid(f"metric name {printable(name)!r} must match [a-z][a-z0-9_]*")
        if type(value) is bool:
            number = 1.0 if value else 0.0
        elif type(value) in (int, float):
            number = float(value)
        else:
            raise _Invalid(f"metric {name} must be a number or boolean")
        if not math.isfinite(number):
            raise _Invalid(f"metric {name} is not finite")
        low, high = METRIC_RANGES.get(name, _DEFAULT_RANGE)
        if not low <= number <= high:
            raise _Invalid(f"metric {name}={number:g} outside plausible range {low:g}..{high:g}")
        if name in _BOOLEAN_METRICS and number not in (0.0, 1.0):
            raise _Invalid(f"metric {name} must be 0 or 1")
        out[name] = number
    return MappingProxyType(out)


def _samples(raw: object, name: str, limit: float, may_have_bools: bool) -> npt.NDArray[np.float32]:
    if not isinstance(raw, list) or not raw:
        raise _Invalid(f"{name} must be a non-empty list of [x, y, z]")
    if len(raw) > MAX_SAMPLES:
        raise _Invalid(f"{name} has more than {MAX_SAMPLES} samples")
    try:
        arr = np.array(raw)  # ragged rows raise; strings, nulls and objects give a non-numeric dtype
    except (ValueError, TypeError, OverflowError):
        raise _Invalid(f"{name} must be a list of [x, y, z] numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "if":
        raise _Invalid(f"{name} must be a list of [x, y, z] numbers")
    if may_have_bools and not set(map(type, chain.from_iterable(raw))) <= _NUMBER_TYPES:
        # numpy quietly turns true into 1 when it is mixed with numbers; only a payload that
        # contains a JSON boolean somewhere pays for this exact check
        raise _Invalid(f"{name} must be a list of [x, y, z] numbers")
    peak = float(np.abs(arr).max())
    if not peak <= limit:  # also true for NaN, which compares false with everything
        raise _Invalid(f"{name} contains NaN, infinite or values beyond ±{limit:g}")
    out = arr.astype(np.float32)
    out.flags.writeable = False
    return out


def _event(device_id: str, ts: datetime, seq: int, obj: dict[str, Any]) -> Event:
    _check_keys(obj, _EVENT_KEYS)
    name = obj.get("event")
    if not isinstance(name, str) or name not in EVENTS:
        raise _Invalid(f"event must be one of {', '.join(EVENTS)}")
    detail = obj.get("detail")
    if detail is not None:
        if not isinstance(detail, dict):
            raise _Invalid("detail must be an object")
        if len(orjson.dumps(detail)) > MAX_DETAIL_BYTES:
            raise _Invalid(f"detail larger than {MAX_DETAIL_BYTES} bytes")
        problem = text_problem(detail, where="detail")
        if problem:
            raise _Invalid(problem)
        detail = MappingProxyType(detail)
    return Event(device_id, ts, seq, name, detail)


def _status(device_id: str, ts: datetime, seq: int, obj: dict[str, Any]) -> Status:
    _check_keys(obj, _STATUS_KEYS)
    state = obj.get("state")
    if state not in STATES:
        raise _Invalid("state must be online or offline")
    fw = obj.get("fw")
    if fw is not None and (not isinstance(fw, str) or not _FW_RE.fullmatch(fw)):
        raise _Invalid("fw must be a printable ASCII string of at most 64 characters")
    hb = obj.get("heartbeat_s")
    if hb is not None and (type(hb) is not int or not 1 <= hb <= 86_400):
        raise _Invalid("heartbeat_s must be an integer from 1 to 86400")
    return Status(device_id, ts, seq, str(state), fw, hb)


def json_schema() -> dict[str, Any]:
    """The v1 contract as JSON Schema (draft 2020-12); see ``$defs`` per channel."""
    from importlib import resources

    text = resources.files("devices").joinpath("schema/v1.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = orjson.loads(text)
    return schema
