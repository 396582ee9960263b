"""A described fleet: care homes with rooms, beds and residents, family care beds, and their devices.

The fleet becomes a facility file (``devices.FacilityFile``) that ``ankang devices import``
reads, so the simulator registers exactly what it will publish as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from devices import DeviceSpec, FacilityFile
from devices.registry import BedSpec, FacilitySpec, ResidentSpec, RoomSpec

PLACEMENTS: Final = ("waist", "chest", "wrist")
SURNAMES: Final = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN: Final = (
    "秀英",
    "桂兰",
    "建国",
    "玉兰",
    "淑珍",
    "国华",
    "志强",
    "凤英",
    "德明",
    "秀兰",
    "文华",
    "金花",
)

# Publishing period of each kind's telemetry, in seconds at speed 1. Wearables send one
# block of acceleration a second; bed mats report vitals every few seconds; detectors and
# buttons report rarely and rely on their heartbeat.
TELEMETRY_PERIOD_S: Final = {
    "wearable": 1.0,
    "bed_sensor": 5.0,
    "smoke_detector": 10.0,  # samples every 10 s; reports on change or every minute
    "gas_detector": 10.0,
    "sos_button": 3600.0,
    "door_contact": 3600.0,
    "water_leak": 3600.0,
    "motion_sensor": 300.0,
}


class FleetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    care_homes: int = Field(default=1, ge=0, le=10_000)
    rooms_per_home: int = Field(default=10, ge=1, le=1000)
    beds_per_room: int = Field(default=2, ge=1, le=8)
    home_beds: int = Field(default=2, ge=0, le=100_000)
    district: str = "市南区"
    prefix: str = Field(default="", max_length=12, pattern=r"^[A-Za-z0-9_-]*$")
    wearable_rate_hz: int = Field(default=50, ge=20, le=200)


@dataclass(frozen=True, slots=True)
class SimDevice:
    id: str
    kind: str
    facility: str
    room: str | None
    bed: str | None
    resident: str | None
    placement: str | None
    heartbeat_s: int
    period_s: float


@dataclass(frozen=True)
class Fleet:
    spec: FleetSpec
    facility_file: FacilityFile
    devices: tuple[SimDevice, ...]

    def by_id(self) -> dict[str, SimDevice]:
        return {d.id: d for d in self.devices}

    def residents(self) -> dict[str, list[SimDevice]]:
        out: dict[str, list[SimDevice]] = {}
        for d in self.devices:
            if d.resident:
                out.setdefault(d.resident, []).append(d)
        return out

    def rooms(self) -> dict[str, list[SimDevice]]:
        """Devices by "facility/room"."""
        out: dict[str, list[SimDevice]] = {}
        for d in self.devices:
            if d.room:
                out.setdefault(f"{d.facility}/{d.room}", []).append(d)
        return out


def _name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)]


def build_fleet(spec: FleetSpec) -> Fleet:
    p = spec.prefix
    facilities: list[FacilitySpec] = []
    devices: list[DeviceSpec] = []
    resident_no = 0

    def dev(
        kind: str,
        fid: str,
        room: str | None = None,
        bed: str | None = None,
        resident: str | None = None,
        placement: str | None = None,
        suffix: str = "",
    ) -> None:
        short = {
            "wearable": "w",
            "bed_sensor": "bed",
            "smoke_detector": "smoke",
            "gas_detector": "gas",
            "sos_button": "sos",
            "door_contact": "door",
            "water_leak": "leak",
            "motion_sensor": "pir",
        }[kind]
        tail = suffix or room or resident or ""
        ident = f"{short}-{fid}-{tail.removeprefix(p) if p else tail}"
        devices.append(
            DeviceSpec.model_validate(
                {
                    "id": ident,
                    "kind": kind,
                    "facility": fid,
                    "room": room,
                    "bed": bed,
                    "resident": resident,
                    "placement": placement,
                }
            )
        )

    for h in range(spec.care_homes):
        fid = f"{p}h{h + 1:04d}"
        rooms: list[RoomSpec] = []
        for r in range(spec.rooms_per_home):
            room_id = f"{100 * (1 + r // 20) + 1 + r % 20}"
            beds = []
            for b in range(spec.beds_per_room):
                resident_no += 1
                rid = f"{p}R{resident_no:06d}"
                bed_id = f"{room_id}-{b + 1}"
                beds.append(
                    BedSpec(
                        id=bed_id,
                        nursing=(b + r) % 5 != 0,
                        resident=ResidentSpec(id=rid, name=_name(resident_no)),
                    )
                )
                dev("bed_sensor", fid, room_id, bed_id, rid, suffix=bed_id)
                dev("wearable", fid, None, None, rid, placement=PLACEMENTS[resident_no % 3], suffix=rid)
                dev("sos_button", fid, room_id, bed_id, rid, suffix=bed_id)
            rooms.append(RoomSpec(id=room_id, kind="bedroom", beds=beds))
            dev("smoke_detector", fid, room_id)
            dev("door_contact", fid, room_id)
        rooms.append(RoomSpec(id="kitchen", kind="kitchen"))
        dev("smoke_detector", fid, "kitchen")
        dev("gas_detector", fid, "kitchen")
        dev("water_leak", fid, "kitchen")
        facilities.append(
            FacilitySpec(
                id=fid,
                name=f"{spec.district}第{h + 1}养老院",
                kind="institution",
                district=spec.district,
                rooms=rooms,
            )
        )
    supervisor = facilities[0].id if facilities else None
    for k in range(spec.home_beds):
        resident_no += 1
        fid = f"{p}fam{k + 1:05d}"
        rid = f"{p}R{resident_no:06d}"
        facilities.append(
            FacilitySpec(
                id=fid,
                name=f"{_name(resident_no)}家（家庭养老床位）",
                kind="home",
                district=spec.district,
                supervisor=supervisor,
                rooms=[
                    RoomSpec(
                        id="bedroom",
                        beds=[
                            BedSpec(
                                id="1", nursing=True, resident=ResidentSpec(id=rid, name=_name(resident_no))
                            )
                        ],
                    ),
                    RoomSpec(id="kitchen", kind="kitchen"),
                ],
            )
        )
        dev("bed_sensor", fid, "bedroom", "1", rid)
        dev("wearable", fid, None, None, rid, placement=PLACEMENTS[resident_no % 3], suffix=rid)
        dev("sos_button", fid, "bedroom", "1", rid)
        dev("smoke_detector", fid, "bedroom")
        dev("gas_detector", fid, "kitchen")
        dev("door_contact", fid, "bedroom", suffix="entrance")
    return fleet_from_file(FacilityFile(facilities=facilities, devices=devices), spec)


def fleet_from_file(file: FacilityFile, spec: FleetSpec | None = None) -> Fleet:
    """The fleet that a facility file describes: one simulated device per registered device.

    ``spec`` is kept for the options that apply to every device (the wearables' rate);
    the file, not the spec, says what there is.
    """
    from devices.registry import DEFAULT_HEARTBEAT_S

    sims = tuple(
        SimDevice(
            id=d.id,
            kind=d.kind,
            facility=d.facility,
            room=d.room,
            bed=d.bed,
            resident=d.resident,
            placement=d.placement,
            heartbeat_s=d.heartbeat_s or DEFAULT_HEARTBEAT_S[d.kind],
            period_s=TELEMETRY_PERIOD_S[d.kind],
        )
        for d in file.devices
    )
    return Fleet(spec or FleetSpec(), file, sims)
