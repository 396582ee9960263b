"""The engine routes messages to the right detectors and fills in who and where."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import numpy as np

from devices import CareProfile, Device, Event, Status, Telemetry
from hub.detectors.engine import DetectionEngine

T0 = datetime(2026, 5, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # by day


def device(
    id_: str, kind: str, room: str | None = "101", resident: str | None = None, hb: int = 60
) -> Device:
    return Device(id_, kind, "care-1", room, None, resident, hb, None, CareProfile())


DEVICES = {
    d.id: d
    for d in [
        device("sos-1", "sos_button", resident="R1"),
        device("mat-1", "bed_sensor", resident="R1"),
        device("smoke-a", "smoke_detector"),
        device("smoke-b", "smoke_detector"),
        device("motion-1", "motion_sensor"),
        device("leak-1", "water_leak", room="bath"),
        device("w-1", "wearable", resident="R1"),
    ]
}


def engine() -> DetectionEngine:
    e = DetectionEngine(DEVICES.get, fall_model=None)
    e.restore(DEVICES.values(), [], {}, T0)
    return e


def ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def metrics(**m: float) -> MappingProxyType[str, float]:
    return MappingProxyType(m)


def test_sos_is_found_with_its_resident_room_and_facility() -> None:
    e = engine()
    out = e.feed([(Event("sos-1", ts(T0), 1, "sos_pressed"), T0 + 0.1)])
    (found,) = out.found
    assert (found.detection.kind, found.detection.level) == ("sos", "alarm")
    assert (found.facility_id, found.room_id, found.resident_id) == ("care-1", "101", "R1")
    assert found.detection.t == T0


def test_two_smoke_detectors_in_one_room_share_one_fire_episode() -> None:
    e = engine()
    out = e.feed(
        [
            (Event("smoke-a", ts(T0), 1, "smoke_alarm"), T0),
            (Event("smoke-b", ts(T0 + 5), 1, "smoke_alarm"), T0 + 5),
        ]
    )
    fires = [f.detection for f in out.found if f.detection.kind == "fire"]
    assert fires and all(d.subject == "care-1/101" for d in fires)
    assert len([d for d in fires if d.level == "alarm"]) == 1


def test_unknown_devices_are_ignored() -> None:
    e = engine()
    assert not e.feed([(Event("ghost", ts(T0), 1, "sos_pressed"), T0)]).found


def test_offline_by_deadline_and_by_last_will() -> None:
    e = engine()
    e.feed([(Status("sos-1", ts(T0), 1, "online"), T0)])
    e.feed([(Telemetry("motion-1", ts(T0), 1, metrics(motion=1)), T0)])
    assert not [
        f
        for f in e.tick(T0 + 80).found
        if f.detection.kind == "device_offline" and f.detection.subject == "sos-1"
    ]
    e.feed([(Status("motion-1", ts(T0 - 50), 0, "offline"), T0 + 85)])
    out = e.tick(T0 + 91)
    offline = sorted(f.detection.subject for f in out.found if f.detection.kind == "device_offline")
    # every registered device that stayed silent, including those that never spoke
    assert "sos-1" in offline and "smoke-a" in offline
    assert "motion-1" not in offline  # already reported by its will, not twice
    assert any(r.device_id == "sos-1" and not r.online for r in out.health)


def test_water_leak_reports_changes_only() -> None:
    e = engine()
    out = e.feed(
        [
            (Telemetry("leak-1", ts(T0), 1, metrics(water_leak=1)), T0),
            (Telemetry("leak-1", ts(T0 + 10), 2, metrics(water_leak=1)), T0 + 10),
            (Telemetry("leak-1", ts(T0 + 20), 3, metrics(water_leak=0)), T0 + 20),
        ]
    )
    assert [(f.detection.kind, f.detection.level) for f in out.found] == [
        ("water_leak", "alarm"),
        ("water_leak", "clear"),
    ]


def test_motion_in_the_room_counts_as_the_residents_activity() -> None:
    e = engine()
    e.feed([(Telemetry("motion-1", ts(T0), 1, metrics(motion=1)), T0)])
    out = e.tick(T0 + 4 * 3600)
    inactive = [f for f in out.found if f.detection.kind == "inactivity"]
    assert len(inactive) == 1 and inactive[0].resident_id == "R1" and inactive[0].facility_id == "care-1"
    out = e.feed([(Telemetry("motion-1", ts(T0 + 4 * 3600 + 60), 2, metrics(motion=1)), T0 + 4 * 3600 + 60)])
    assert [(f.detection.kind, f.detection.level) for f in out.found if f.detection.kind == "inactivity"] == [
        ("inactivity", "clear")
    ]
    assert out.gaps and out.gaps[0].resident_id == "R1"


def test_a_moving_wearable_is_activity_and_a_flat_one_is_not() -> None:
    e = engine()
    rng = np.random.default_rng(1)
    moving = (np.array([0, 0, 1.0]) + rng.normal(0, 0.2, (50, 3))).astype(np.float32)
    e.feed([(Telemetry("w-1", ts(T0), 1, metrics(), 50.0, moving), T0)])
    flat = np.tile(np.array([0, 0, 1.0], np.float32), (50, 1))
    for i in range(1, 100):
        e.feed([(Telemetry("w-1", ts(T0 + i), i + 1, metrics(), 50.0, flat), T0 + i)])
    out = e.tick(T0 + 3 * 3600 + 10)
    assert [f.resident_id for f in out.found if f.detection.kind == "inactivity"] == ["R1"]


def test_a_detector_error_does_not_stop_the_batch() -> None:
    e = engine()
    bad = Telemetry("w-1", ts(T0), 1, metrics(), 50.0, np.zeros((0, 3), np.float32))
    out = e.feed([(bad, T0), (Event("sos-1", ts(T0 + 1), 1, "sos_pressed"), T0 + 1)])
    assert [f.detection.kind for f in out.found] == ["sos"]


def test_hub_clock_detections_keep_their_key_when_the_message_is_redelivered() -> None:
    will = Status("sos-1", ts(T0 - 3600), 0, "offline")
    back = Status("sos-1", ts(T0 + 30), 2, "online")
    keys = []
    for arrival in (0.0, 7.5):  # the same messages, delivered again later after a restart
        e = engine()
        e.feed([(Status("sos-1", ts(T0), 1, "online"), T0 + arrival)])
        offline = e.feed([(will, T0 + 10 + arrival)]).found
        online = e.feed([(back, T0 + 31 + arrival)]).found
        keys.append([f.detection.key for f in offline + online])
    assert len(keys[0]) == 2
    assert keys[0] == keys[1]


def test_each_outage_reported_by_the_same_reused_will_is_its_own_detection() -> None:
    e = engine()
    will = Status("sos-1", ts(T0 - 86400), 0, "offline")  # composed once, reused for every connection
    keys = []
    for k in range(3):
        e.feed([(Status("sos-1", ts(T0 + 100 * k), 10 + k, "online"), T0 + 100 * k)])
        found = e.feed([(will, T0 + 100 * k + 50)]).found
        keys += [f.detection.key for f in found if f.detection.kind == "device_offline"]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_a_stalled_hub_does_not_declare_its_devices_offline() -> None:
    e = engine()
    e.feed([(Status("sos-1", ts(T0), 1, "online"), T0)])
    # the hub could not process anything newer than T0 + 5 (say the database was away)
    stalled = e.tick(T0 + 1000, health_now=e.watermark + 5)
    assert not [f for f in stalled.found if f.detection.kind == "device_offline"]
    caught_up = e.tick(T0 + 1000)
    assert "sos-1" in {f.detection.subject for f in caught_up.found if f.detection.kind == "device_offline"}


def test_a_resident_still_since_before_a_restart_is_found() -> None:
    e = engine()  # restored at T0 with no activity seen since
    out = e.tick(T0 + 3 * 3600 + 60)
    assert [f.resident_id for f in out.found if f.detection.kind == "inactivity"] == ["R1"]


def test_a_sensor_with_a_clock_far_ahead_does_not_hide_inactivity() -> None:
    e = engine()
    ahead = Telemetry("motion-1", ts(T0 + 20 * 3600), 1, metrics(motion=1))  # its clock is 20 h fast
    e.feed([(ahead, T0 + 60)])
    out = e.tick(T0 + 60 + 3 * 3600 + 60)
    assert [f.resident_id for f in out.found if f.detection.kind == "inactivity"] == ["R1"]


def test_a_last_will_does_not_reset_the_mats_clock() -> None:
    night = datetime(2026, 5, 28, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    e = engine()
    e.feed([(Telemetry("mat-1", ts(night), 1, metrics(occupied=1, hr_bpm=60, rr_rpm=14)), night)])
    e.feed([(Status("mat-1", ts(night - 2 * 86400), 0, "offline"), night + 30)])
    out = e.tick(night + 60)
    assert not [f for f in out.found if f.detection.kind.startswith("bed_")]


def test_empty_bed_zeros_are_not_a_stuck_sensor() -> None:
    e = engine()
    found = []
    for k in range(400):  # 0 bpm every 5 s for over half an hour
        t = T0 + 5 * k
        found += e.feed(
            [(Telemetry("mat-1", ts(t), k + 1, metrics(occupied=0, hr_bpm=0, rr_rpm=0)), t)]
        ).found
    assert not [f for f in found if f.detection.kind == "stuck_sensor"]


def test_a_room_less_door_counts_only_in_a_home() -> None:
    institution = device("front-door", "motion_sensor", room=None)
    e = DetectionEngine({**DEVICES, "front-door": institution}.get, fall_model=None)
    e.restore([*DEVICES.values(), institution], [], {}, T0)
    e.feed([(Telemetry("front-door", ts(T0 + 3 * 3600), 1, metrics(motion=1)), T0 + 3 * 3600)])
    out = e.tick(T0 + 3 * 3600 + 120)
    assert [f.resident_id for f in out.found if f.detection.kind == "inactivity"] == ["R1"]
