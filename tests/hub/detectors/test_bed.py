"""Bed detector: night exits, not back in time, absent all night, sustained vitals, apnea."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from devices import CareProfile
from hub.detectors.bed import BedDetector

SH = ZoneInfo("Asia/Shanghai")


def at(hh: int, mm: int = 0, ss: int = 0, day: int = 10) -> float:
    return datetime(2026, 3, day, hh, mm, ss, tzinfo=SH).timestamp()


def run(bed: BedDetector, start: float, seconds: float, step: float = 5, **metrics: float) -> list:
    found = []
    t = start
    while t < start + seconds:
        found += bed.reading(t, metrics)
        t += step
    return found


def kinds(found: list) -> list[tuple[str, str]]:
    return [(d.kind, d.level) for d in found]


def test_exit_at_night_and_return_in_time() -> None:
    bed = BedDetector("mat1", CareProfile())
    assert run(bed, at(23), 60, occupied=1, hr_bpm=62, rr_rpm=14) == []
    found = run(bed, at(23, 1), 300, occupied=0)
    assert kinds(found) == [("bed_exit", "alarm")]
    assert found[0].t == at(23, 1)
    assert kinds(run(bed, at(23, 6), 10, occupied=1, hr_bpm=62, rr_rpm=14)) == [("bed_exit", "clear")]


def test_exit_by_day_is_not_reported() -> None:
    bed = BedDetector("mat1", CareProfile())
    run(bed, at(14), 60, occupied=1)
    assert run(bed, at(14, 1), 3600, occupied=0) == []


def test_not_back_within_the_facility_minutes() -> None:
    bed = BedDetector("mat1", CareProfile(bed_return_min=15))
    run(bed, at(2), 60, occupied=1)
    found = run(bed, at(2, 1), 20 * 60, occupied=0)
    assert kinds(found) == [("bed_exit", "alarm"), ("bed_not_returned", "alarm")]
    assert found[1].t == at(2, 16)
    back = run(bed, at(2, 25), 10, occupied=1)
    assert kinds(back) == [("bed_exit", "clear"), ("bed_not_returned", "clear")]


def test_not_back_fires_from_tick_when_the_mat_is_silent() -> None:
    bed = BedDetector("mat1", CareProfile(bed_return_min=10))
    run(bed, at(3), 30, occupied=1)
    bed.reading(at(3, 1), {"occupied": 0})
    assert bed.tick(at(3, 10)) == []
    assert kinds(bed.tick(at(3, 11, 1))) == [("bed_not_returned", "alarm")]
    assert bed.tick(at(3, 30)) == []


def test_absent_all_night() -> None:
    bed = BedDetector("mat1", CareProfile(bed_absent_min=180))
    found = run(bed, at(20, 30), 5 * 3600, step=60, occupied=0)
    assert kinds(found) == [("bed_absent", "alarm")]
    assert found[0].t == at(21) + 180 * 60
    assert kinds(bed.reading(at(1, 40, day=11), {"occupied": 1})) == [("bed_absent", "clear")]


def test_in_bed_at_night_is_not_absent() -> None:
    bed = BedDetector("mat1", CareProfile())
    assert run(bed, at(21, 30), 6 * 3600, step=60, occupied=1, hr_bpm=60, rr_rpm=14) == []


def test_one_noisy_heart_rate_sample_is_not_an_alarm() -> None:
    bed = BedDetector("mat1", CareProfile())
    found = run(bed, at(23), 120, occupied=1, hr_bpm=64, rr_rpm=14)
    found += bed.reading(at(23, 2, 1), {"occupied": 1, "hr_bpm": 160, "rr_rpm": 14})
    found += run(bed, at(23, 2, 3), 300, occupied=1, hr_bpm=64, rr_rpm=14)
    assert found == []


def test_sustained_tachycardia_alarms_once_then_clears() -> None:
    bed = BedDetector("mat1", CareProfile(hr_range=(50, 100)))
    run(bed, at(23), 60, occupied=1, hr_bpm=70, rr_rpm=14)
    found = run(bed, at(23, 1), 600, occupied=1, hr_bpm=128, rr_rpm=14)
    assert kinds(found) == [("vitals", "alarm")]
    assert found[0].detail["metric"] == "hr_bpm" and found[0].detail["median"] == 128
    assert kinds(run(bed, at(23, 12), 300, occupied=1, hr_bpm=72, rr_rpm=14)) == [("vitals", "clear")]


def test_per_resident_range() -> None:
    # 48 bpm is normal for this resident, whose range starts at 40
    bed = BedDetector("mat1", CareProfile(hr_range=(40, 90)))
    assert run(bed, at(23), 600, occupied=1, hr_bpm=48, rr_rpm=14) == []
    strict = BedDetector("mat2", CareProfile(hr_range=(50, 90)))
    assert kinds(run(strict, at(23), 600, occupied=1, hr_bpm=48, rr_rpm=14)) == [("vitals", "alarm")]


def test_apnea_gap() -> None:
    bed = BedDetector("mat1", CareProfile())
    run(bed, at(1), 60, occupied=1, hr_bpm=60, rr_rpm=14)
    found = run(bed, at(1, 1), 70, step=5, occupied=1, hr_bpm=60, rr_rpm=0)
    assert kinds(found) == [("apnea", "warning"), ("apnea", "alarm")]
    assert found[0].t == at(1, 1)
    assert kinds(bed.reading(at(1, 3), {"occupied": 1, "hr_bpm": 60, "rr_rpm": 13})) == [("apnea", "clear")]


def test_bad_input_does_not_crash_or_alarm() -> None:
    bed = BedDetector("mat1", CareProfile())
    run(bed, at(23), 60, occupied=1, hr_bpm=60, rr_rpm=14)
    nan = float("nan")
    assert bed.reading(at(23, 1), {"occupied": nan, "hr_bpm": nan, "rr_rpm": float("inf")}) == []
    assert bed.reading(at(22, 59), {"occupied": 0}) == []  # out of order: ignored
    assert bed.reading(at(23, 1), {"occupied": 0}) == []  # duplicate time: ignored
    assert bed.reading(nan, {"occupied": 0}) == []
    assert bed.reading(at(23, 2), {}) == []


def test_heart_and_respiration_alarms_together_are_two_detections() -> None:
    bed = BedDetector("mat1", CareProfile(hr_range=(50, 100), rr_range=(10, 24)))
    found = run(bed, at(23), 600, occupied=1, hr_bpm=130, rr_rpm=30)
    assert sorted(d.detail["metric"] for d in found if d.kind == "vitals") == ["hr_bpm", "rr_rpm"]
    assert len({d.key for d in found}) == len(found)


def test_leaving_the_bed_ends_open_vital_and_apnea_alarms() -> None:
    bed = BedDetector("mat1", CareProfile(hr_range=(50, 100)))
    run(bed, at(23), 60, occupied=1, hr_bpm=70, rr_rpm=14)
    run(bed, at(23, 1), 300, occupied=1, hr_bpm=130, rr_rpm=0)
    out = bed.reading(at(23, 7), {"occupied": 0})
    assert ("vitals", "clear") in kinds(out) and ("apnea", "clear") in kinds(out)
