"""The device registry: facility → room → bed, residents, and the devices placed among them.

A facility file (YAML, or a CSV of devices) describes a site; ``load_facility_file``
validates it completely before anything is written, so a bad file changes nothing.
The ``Registry`` functions read and write the registry tables created by ``ankang migrate``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.contract import KINDS, is_valid_device_id
from devices.errors import RegistryError

DEFAULT_TZ = "Asia/Shanghai"
MAX_FACILITY_FILE_BYTES = 16 * 1024 * 1024
DEFAULT_HEARTBEAT_S = {
    # Battery devices report rarely; mains and wearables often. NFPA 72 supervises a
    # path at least every 60 min, so no fire device may be quieter than that.
    "wearable": 60,
    "bed_sensor": 60,
    "smoke_detector": 3600,
    "gas_detector": 600,
    "sos_button": 3600,
    "door_contact": 3600,
    "water_leak": 3600,
    "motion_sensor": 600,
}

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Kind = Literal[
    "wearable",
    "bed_sensor",
    "smoke_detector",
    "gas_detector",
    "sos_button",
    "door_contact",
    "water_leak",
    "motion_sensor",
]
Placement = Literal["waist", "chest", "wrist"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Range = tuple[Annotated[float, Field(gt=0, le=300)], Annotated[float, Field(gt=0, le=300)]]


class ResidentSpec(_Strict):
    id: Ident
    name: str = Field(default="", max_length=200)
    hr_range: Range | None = None  # bpm; None: the default range (docs/detection.md)
    rr_range: Range | None = None  # breaths/min

    @field_validator("hr_range", "rr_range")
    @classmethod
    def _ordered(cls, value: Range | None) -> Range | None:
        if value is not None and value[0] >= value[1]:
            raise ValueError("a range is [low, high] with low < high")
        return value


class BedSpec(_Strict):
    id: Ident
    nursing: bool = False
    resident: ResidentSpec | None = None


class RoomSpec(_Strict):
    id: Ident
    name: str = Field(default="", max_length=200)
    kind: Literal["bedroom", "kitchen", "corridor", "common", "office", "bathroom", "other"] = "bedroom"
    beds: list[BedSpec] = Field(default_factory=list, max_length=64)


class FacilitySpec(_Strict):
    id: Ident
    name: str = Field(default="", max_length=200)
    kind: Literal["institution", "home"] = "institution"
    tz: str = DEFAULT_TZ
    district: str = Field(default="", max_length=100)
    supervisor: Ident | None = None  # for a home care bed: the supervising institution
    night: str = Field(default="21:00-06:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
    bed_return_min: int = Field(default=15, ge=1, le=720)
    bed_absent_min: int = Field(default=180, ge=10, le=720)
    rooms: list[RoomSpec] = Field(default_factory=list, max_length=10_000)

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


_IEEE_RE = re.compile(r"0x[0-9a-fA-F]{16}")
_DEV_EUI_RE = re.compile(r"[0-9a-fA-F]{16}")
# Zigbee2MQTT keeps these topic suffixes for itself (docs/integrations.md).
_Z2M_RESERVED = ("/set", "/get", "/availability")


class ZigbeeSpec(_Strict):
    """A device behind Zigbee2MQTT, by friendly name, IEEE address or both (the IEEE
    address survives a rename in Zigbee2MQTT; the friendly name is what its topics carry)."""

    friendly_name: str | None = Field(default=None, min_length=1, max_length=200)
    ieee: str | None = None

    @field_validator("friendly_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(c in value for c in "+#\x00") or value.startswith(("/", "bridge/")) or value.endswith("/"):
            raise ValueError("a friendly name may not contain + # or NUL, start with / or bridge/, end in /")
        if value.endswith(_Z2M_RESERVED) or "/set/" in value or "/get/" in value:
            raise ValueError("a friendly name may not end in /set, /get or /availability")
        return value

    @field_validator("ieee")
    @classmethod
    def _ieee(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _IEEE_RE.fullmatch(value):
            raise ValueError("an IEEE address is 0x and 16 hex digits, e.g. 0x00158d0001a2b3c4")
        return value.lower()

    @model_validator(mode="after")
    def _some(self) -> ZigbeeSpec:
        if self.friendly_name is None and self.ieee is None:
            raise ValueError("zigbee needs friendly_name, ieee or both")
        return self


class LorawanSpec(_Strict):
    """A LoRaWAN device behind ChirpStack, by its DevEUI."""

    dev_eui: str

    @field_validator("dev_eui")
    @classmethod
    def _dev_eui(cls, value: str) -> str:
        compact = value.replace("-", "").replace(":", "")
        if not _DEV_EUI_RE.fullmatch(compact):
            raise ValueError("a DevEUI is 16 hex digits, e.g. a84041000181c061")
        return compact.lower()


class DeviceSpec(_Strict):
    id: str
    kind: Kind
    facility: Ident
    room: Ident | None = None
    bed: Ident | None = None
    resident: Ident | None = None
    heartbeat_s: int | None = Field(default=None, ge=1, le=86_400)
    placement: Placement | None = None
    zigbee: ZigbeeSpec | None = None
    lorawan: LorawanSpec | None = None

    @field_validator("id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if not is_valid_device_id(value):
            raise ValueError("device id must match [A-Za-z0-9_-]{1,64}")
        return value

    @model_validator(mode="after")
    def _bed_needs_room(self) -> DeviceSpec:
        if self.bed is not None and self.room is None:
            raise ValueError("a bed needs its room")
        if self.zigbee is not None and self.lorawan is not None:
            raise ValueError("a device is either zigbee or lorawan, not both")
        return self

    def aliases(self) -> list[tuple[str, str]]:
        """Its foreign addresses as (scheme, value), as table ``device_aliases`` keeps them."""
        out: list[tuple[str, str]] = []
        if self.zigbee is not None:
            if self.zigbee.friendly_name is not None:
                out.append(("zigbee_name", self.zigbee.friendly_name))
            if self.zigbee.ieee is not None:
                out.append(("zigbee_ieee", self.zigbee.ieee))
        if self.lorawan is not None:
            out.append(("lorawan_dev_eui", self.lorawan.dev_eui))
        return out


class FacilityFile(_Strict):
    facilities: list[FacilitySpec] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FacilityFile:
        ids = [d.id for d in self.devices]
        dupes = {i for i in ids if ids.count(i) > 1} if len(ids) != len(set(ids)) else set()
        if dupes:
            raise ValueError(f"duplicate device ids: {', '.join(sorted(dupes)[:5])}")
        owner: dict[tuple[str, str], str] = {}
        for d in self.devices:
            for alias in d.aliases():
                if alias in owner:
                    raise ValueError(f"{alias[0]} {alias[1]!r} is given to both {owner[alias]} and {d.id}")
                owner[alias] = d.id
        return self


@dataclass(frozen=True, slots=True)
class CareProfile:
    """What the detectors need to know about a device's facility and resident.

    Times of day are minutes after local midnight in ``tz``. The vital-sign defaults are a
    little wider than the resting adult range (HR 50-100, RR 12-20): sleeping older
    adults often dip under 50 bpm, and a nurse woken for a harmless 48 bpm stops trusting
    the alarm. Ranges are set per resident where a clinician knows better.
    """

    tz: str = DEFAULT_TZ
    facility_kind: str = "institution"  # "home": a family care bed, one household
    night_start_min: int = 21 * 60
    night_end_min: int = 6 * 60
    bed_return_min: int = 15
    bed_absent_min: int = 180
    hr_range: tuple[float, float] = (45.0, 110.0)
    rr_range: tuple[float, float] = (10.0, 24.0)


DEFAULT_CARE = CareProfile()


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device as the hub sees it."""

    id: str
    kind: str
    facility_id: str
    room_id: str | None
    bed_id: str | None
    resident_id: str | None
    heartbeat_s: int
    placement: str | None
    care: CareProfile = DEFAULT_CARE


def load_facility_file(path: Path) -> FacilityFile:
    """Parse and validate a YAML facility file or a CSV of devices."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RegistryError(f"cannot read {path.name}: {exc.strerror}") from exc
    if size > MAX_FACILITY_FILE_BYTES:
        raise RegistryError(f"{path.name} is larger than {MAX_FACILITY_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {path.name} as UTF-8 text: {exc}") from exc
    if path.suffix.lower() == ".csv":
        return parse_device_csv(text)
    return parse_facility_yaml(text)


def parse_facility_yaml(text: str) -> FacilityFile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError("a facility file is a mapping with 'facilities' and/or 'devices'")
    return _validated(data)


def parse_device_csv(text: str) -> FacilityFile:
    reader = csv.DictReader(io.StringIO(text))
    required = {"id", "kind", "facility"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise RegistryError("a device CSV needs at least the columns id, kind, facility")
    rows: list[dict[str, Any]] = []
    for row in reader:
        fields = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        zigbee = {
            key: fields.pop(column)
            for column, key in (("zigbee_friendly_name", "friendly_name"), ("zigbee_ieee", "ieee"))
            if column in fields
        }
        if zigbee:
            fields["zigbee"] = zigbee
        if "lorawan_dev_eui" in fields:
            fields["lorawan"] = {"dev_eui": fields.pop("lorawan_dev_eui")}
        rows.append(fields)
    return _validated({"devices": rows})


def _validated(data: dict[str, Any]) -> FacilityFile:
    try:
        return FacilityFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
        )
        raise RegistryError(f"invalid facility file: {problems}") from None


class Registry:
    """Reads and writes the registry tables over one connection."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn

    async def apply(self, spec: FacilityFile) -> int:
        """Upsert a whole facility file in one transaction; returns the number of devices."""
        async with self._conn.transaction(), self._conn.cursor() as cur:
            for fac in spec.facilities:
                await cur.execute(
                    """
                    INSERT INTO facilities (id, name, kind, tz, district, supervisor_id,
                                            night_start, night_end, bed_return_min, bed_absent_min)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                        tz = EXCLUDED.tz, district = EXCLUDED.district,
                        supervisor_id = EXCLUDED.supervisor_id, night_start = EXCLUDED.night_start,
                        night_end = EXCLUDED.night_end, bed_return_min = EXCLUDED.bed_return_min,
                        bed_absent_min = EXCLUDED.bed_absent_min
                    """,
                    (
                        fac.id,
                        fac.name,
                        fac.kind,
                        fac.tz,
                        fac.district,
                        fac.supervisor,
                        *fac.night.split("-"),
                        fac.bed_return_min,
                        fac.bed_absent_min,
                    ),
                )
                for room in fac.rooms:
                    await cur.execute(
                        """
                        INSERT INTO rooms (facility_id, id, name, kind) VALUES (%s, %s, %s, %s)
                        ON CONFLICT (facility_id, id) DO UPDATE SET name = EXCLUDED.name,
                            kind = EXCLUDED.kind
                        """,
                        (fac.id, room.id, room.name, room.kind),
                    )
                    for bed in room.beds:
                        if bed.resident is not None:
                            await self._resident(cur, fac.id, bed.resident)
                        await cur.execute(
                            """
                            INSERT INTO beds (facility_id, room_id, id, nursing, resident_id)
                            VALUES (%s, %s, %s, %s, %s)
                            ON CONFLICT (facility_id, room_id, id) DO UPDATE
                            SET nursing = EXCLUDED.nursing, resident_id = EXCLUDED.resident_id
                            """,
                            (fac.id, room.id, bed.id, bed.nursing, bed.resident.id if bed.resident else None),
                        )
            for dev in spec.devices:
                await self._device(cur, dev, notify=False)
            await cur.execute("SELECT pg_notify('ankang_registry', '')")  # one reload, not one per device
        return len(spec.devices)

    async def add_many(
        self, facility: str, devices: Sequence[tuple[str, str]], heartbeat_s: int = 60
    ) -> None:
        """Register many (id, kind) devices in one facility at once, with a single notification.

        For fleets of thousands (simulations and benchmarks); ``apply`` is for facility files.
        """
        async with self._conn.transaction(), self._conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO facilities (id, tz) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (facility, DEFAULT_TZ),
            )
            await cur.execute(
                """
                INSERT INTO devices (id, kind, facility_id, heartbeat_s)
                SELECT d.id, d.kind, %s, %s FROM unnest(%s::text[], %s::text[]) AS d(id, kind)
                ON CONFLICT (id) DO NOTHING
                """,
                (facility, heartbeat_s, [d[0] for d in devices], [d[1] for d in devices]),
            )
            await cur.execute("SELECT pg_notify('ankang_registry', '')")

    async def add(self, dev: DeviceSpec) -> None:
        async with self._conn.transaction(), self._conn.cursor() as cur:
            await self._device(cur, dev)

    async def _resident(self, cur: Any, facility_id: str, resident: ResidentSpec) -> None:
        hr = resident.hr_range or (None, None)
        rr = resident.rr_range or (None, None)
        await cur.execute(
            """
            INSERT INTO residents (id, facility_id, name, hr_low, hr_high, rr_low, rr_high)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET name = CASE WHEN EXCLUDED.name = '' THEN residents.name
                ELSE EXCLUDED.name END,
                hr_low = coalesce(EXCLUDED.hr_low, residents.hr_low),
                hr_high = coalesce(EXCLUDED.hr_high, residents.hr_high),
                rr_low = coalesce(EXCLUDED.rr_low, residents.rr_low),
                rr_high = coalesce(EXCLUDED.rr_high, residents.rr_high)
            WHERE residents.facility_id = EXCLUDED.facility_id
            """,
            (resident.id, facility_id, resident.name, *hr, *rr),
        )
        if cur.rowcount == 0:
            raise RegistryError(f"resident {resident.id} belongs to another facility")

    async def _device(self, cur: Any, dev: DeviceSpec, *, notify: bool = True) -> None:
        # A device may name a facility, room or bed that the file did not describe; they are
        # created with default attributes so that `devices add` works on an empty registry.
        await cur.execute(
            "INSERT INTO facilities (id, tz) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (dev.facility, DEFAULT_TZ),
        )
        if dev.room is not None:
            await cur.execute(
                "INSERT INTO rooms (facility_id, id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (dev.facility, dev.room),
            )
        if dev.bed is not None:
            await cur.execute(
                "INSERT INTO beds (facility_id, room_id, id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (dev.facility, dev.room, dev.bed),
            )
        if dev.resident is not None:
            await self._resident(cur, dev.facility, ResidentSpec(id=dev.resident))
        heartbeat = dev.heartbeat_s or DEFAULT_HEARTBEAT_S[dev.kind]
        await cur.execute(
            """
            INSERT INTO devices (id, kind, facility_id, room_id, bed_id, resident_id, heartbeat_s, placement)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, facility_id = EXCLUDED.facility_id,
                room_id = EXCLUDED.room_id, bed_id = EXCLUDED.bed_id, resident_id = EXCLUDED.resident_id,
                heartbeat_s = EXCLUDED.heartbeat_s, placement = EXCLUDED.placement, updated_at = now()
            """,
            (dev.id, dev.kind, dev.facility, dev.room, dev.bed, dev.resident, heartbeat, dev.placement),
        )
        await self._aliases(cur, dev)
        if notify:
            await cur.execute("SELECT pg_notify('ankang_registry', %s)", (dev.id,))

    async def _aliases(self, cur: Any, dev: DeviceSpec) -> None:
        # The file is the word on a device's addresses: those it no longer names are dropped,
        # and an address given to this device is taken from any device that had it (the
        # hardware was moved or replaced).
        aliases = dev.aliases()
        await cur.execute(
            """
            DELETE FROM device_aliases WHERE device_id = %s
              AND (scheme, value) NOT IN (SELECT * FROM unnest(%s::text[], %s::text[]))
            """,
            (dev.id, [a[0] for a in aliases], [a[1] for a in aliases]),
        )
        for scheme, value in aliases:
            await cur.execute(
                """
                INSERT INTO device_aliases (scheme, value, device_id) VALUES (%s, %s, %s)
                ON CONFLICT (scheme, value) DO UPDATE SET device_id = EXCLUDED.device_id
                RETURNING (SELECT device_id FROM device_aliases WHERE scheme = %s AND value = %s)
                """,
                (scheme, value, dev.id, scheme, value),
            )
            row = await cur.fetchone()
            previous = row[0] if row else None
            if previous is not None and previous != dev.id:
                await cur.execute("SELECT pg_notify('ankang_registry', %s)", (previous,))

    async def aliases(self, keys: Iterable[tuple[str, str]] | None = None) -> list[tuple[str, str, str]]:
        """(scheme, value, device_id) of every alias, or of the given (scheme, value) keys."""
        query = "SELECT scheme, value, device_id FROM device_aliases"
        params: Sequence[Any] = ()
        if keys is not None:
            wanted = list(keys)
            query += " WHERE (scheme, value) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            params = ([k[0] for k in wanted], [k[1] for k in wanted])
        async with self._conn.cursor() as cur:
            await cur.execute(query, params)
            return [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]

    async def device_aliases(self, device_id: str) -> list[tuple[str, str]]:
        async with self._conn.cursor() as cur:
            await cur.execute("SELECT scheme, value FROM device_aliases WHERE device_id = %s", (device_id,))
            return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]

    async def devices(self, ids: Iterable[str] | None = None) -> list[Device]:
        query = """
            SELECT d.id, d.kind, d.facility_id, d.room_id, d.bed_id, d.resident_id, d.heartbeat_s,
                   d.placement, f.tz, f.kind AS facility_kind, f.night_start, f.night_end,
                   f.bed_return_min, f.bed_absent_min,
                   r.hr_low, r.hr_high, r.rr_low, r.rr_high
            FROM devices d
            JOIN facilities f ON f.id = d.facility_id
            LEFT JOIN residents r ON r.id = d.resident_id
        """
        params: Sequence[Any] = ()
        if ids is not None:
            query += " WHERE d.id = ANY(%s)"
            params = (list(ids),)
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query + " ORDER BY d.id", params)
            return [_device_row(row) for row in await cur.fetchall()]


def _device_row(row: dict[str, Any]) -> Device:
    hr = (row["hr_low"], row["hr_high"])
    rr = (row["rr_low"], row["rr_high"])
    care = CareProfile(
        tz=row["tz"],
        facility_kind=row["facility_kind"],
        night_start_min=row["night_start"].hour * 60 + row["night_start"].minute,
        night_end_min=row["night_end"].hour * 60 + row["night_end"].minute,
        bed_return_min=row["bed_return_min"],
        bed_absent_min=row["bed_absent_min"],
        hr_range=DEFAULT_CARE.hr_range if None in hr else (float(hr[0]), float(hr[1])),
        rr_range=DEFAULT_CARE.rr_range if None in rr else (float(rr[0]), float(rr[1])),
    )
    return Device(
        id=row["id"],
        kind=row["kind"],
        facility_id=row["facility_id"],
        room_id=row["room_id"],
        bed_id=row["bed_id"],
        resident_id=row["resident_id"],
        heartbeat_s=row["heartbeat_s"],
        placement=row["placement"],
        care=care,
    )


assert set(DEFAULT_HEARTBEAT_S) == set(KINDS)  # noqa: S101 - a table kept in step with the contract
