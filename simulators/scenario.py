"""Scenario files: a fleet plus incidents placed in time, and the ground truth they produce.

```yaml
name: night shift
duration: 3h            # simulated time
seed: 7
fleet: {care_homes: 1, rooms_per_home: 6, home_beds: 2}
incidents:
  - {at: "02:13", kind: fall, resident: R000003, fall: forward}
  - {at: "00:30", kind: fire, room: h0001/103, growth: medium}
  - {at: "01:10", kind: cooking, room: h0001/kitchen}
  - {at: "01:30", kind: bed_exit, resident: R000002, minutes: 25}
  - {at: "00:40", kind: offline, device: smoke-h0001-105}
```

``at`` is an offset from the start of the scenario: ``HH:MM``, ``HH:MM:SS`` or ``90s``/``15m``.
Every incident that is injected is appended to a ground-truth file (JSON lines) with its
simulated time, so that detections can be scored against it later.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from simulators.fleet import FleetSpec

IncidentKind = Literal[
    "fall",
    "fire",
    "cooking",
    "steam",
    "gas_leak",
    "sos",
    "bed_exit",
    "water_leak",
    "offline",
    "power_loss",
    "reconnect",
    "battery_drain",
    "garbage",
    "duplicate",
    "out_of_order",
    "test",
]


class ScenarioError(ValueError):
    """A scenario file is invalid."""


def parse_offset(value: Any) -> float:
    """Seconds from an offset written as HH:MM[:SS], or a number with s/m/h."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("an offset is HH:MM, HH:MM:SS, or a number with s, m or h")  # noqa: TRY004 - pydantic wants ValueError
    text = value.strip()
    m = re.fullmatch(r"(\d{1,3}):(\d{2})(?::(\d{2}))?", text)
    if m:
        return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", text)
    if m:
        return float(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]
    raise ValueError(f"cannot read {value!r} as an offset (HH:MM, HH:MM:SS, 90s, 15m, 2h)")


Offset = Annotated[float, BeforeValidator(parse_offset), Field(ge=0)]


class Incident(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Offset
    kind: IncidentKind
    resident: str | None = None
    device: str | None = None
    room: str | None = None  # "facility/room"
    fall: Literal["forward", "backward", "sideways", "from_chair", "slump"] = "forward"
    growth: Literal["slow", "medium", "fast", "smoldering"] = "medium"
    minutes: float = Field(default=10.0, gt=0, le=24 * 60)
    count: int = Field(default=3, ge=1, le=1000)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "scenario"
    duration: Offset = 600.0
    seed: int = 0
    fleet: FleetSpec = FleetSpec()
    incidents: list[Incident] = Field(default_factory=list)


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError("a scenario is a mapping")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
        raise ScenarioError(f"invalid scenario: {problems}") from None


class GroundTruth:
    """Appends one JSON line per injected incident."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.records: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._path is not None:
            with self._path.open("ab") as fh:
                fh.write(orjson.dumps(record) + b"\n")


def read_ground_truth(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def with_prefix(incidents: list[Incident], prefix: str) -> list[Incident]:
    """Rewrite incident targets for a fleet built with an id ``prefix`` (see FleetSpec.prefix)."""
    if not prefix:
        return incidents
    out = []
    for inc in incidents:
        update: dict[str, Any] = {}
        if inc.resident:
            update["resident"] = prefix + inc.resident
        if inc.room:
            update["room"] = prefix + inc.room
        if inc.device:
            kind, _, rest = inc.device.partition("-")
            update["device"] = f"{kind}-{prefix}{rest}"
        out.append(inc.model_copy(update=update))
    return out
