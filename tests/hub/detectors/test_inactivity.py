"""Inactivity: quiet spells against defaults and learned per-hour baselines."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from devices import CareProfile
from hub.detectors.inactivity import DAY_DEFAULT_S, MIN_GAP_S, InactivityDetector

SH = ZoneInfo("Asia/Shanghai")


def at(hh: int, mm: int = 0) -> float:
    return datetime(2026, 3, 10, hh, mm, tzinfo=SH).timestamp()


def test_default_threshold_by_day() -> None:
    d = InactivityDetector("R1", CareProfile())
    d.activity(at(9), "motion")
    assert d.tick(at(9) + DAY_DEFAULT_S - 1) == []
    found = d.tick(at(12, 30))
    assert [(x.kind, x.level) for x in found] == [("inactivity", "alarm")]
    assert found[0].t == at(9) + DAY_DEFAULT_S and found[0].subject == "R1"
    assert d.tick(at(13)) == []  # once per quiet spell
    cleared = d.activity(at(13), "door")
    assert [(x.kind, x.level) for x in cleared] == [("inactivity", "clear")]


def test_learned_baseline_is_used_for_that_hour() -> None:
    d = InactivityDetector("R1", CareProfile(), baseline={9: 3600.0})
    d.activity(at(9, 10), "motion")
    assert d.tick(at(10, 9)) == []
    found = d.tick(at(10, 11))
    assert found and found[0].detail["learned"] is True and found[0].detail["threshold_s"] == 3600


def test_time_in_bed_is_not_inactivity() -> None:
    d = InactivityDetector("R1", CareProfile())
    d.activity(at(21), "motion")
    d.bed(at(21, 30), occupied=True)
    assert d.tick(at(21, 30) + 9 * 3600) == []
    d.bed(at(6, 30) + 86400, occupied=False)  # getting up is activity
    assert d.tick(at(6, 31) + 86400) == []


def test_quiet_spells_are_recorded_for_learning() -> None:
    d = InactivityDetector("R1", CareProfile())
    d.activity(at(9), "motion")
    d.activity(at(9, 5), "motion")  # too short to learn from
    d.activity(at(10), "motion")
    gaps = d.take_gaps()
    assert len(gaps) == 1 and gaps[0].seconds == 55 * 60 and gaps[0].local_hour == 9
    assert gaps[0].seconds >= MIN_GAP_S
    assert d.take_gaps() == []


def test_out_of_order_and_nan_activity_is_ignored() -> None:
    d = InactivityDetector("R1", CareProfile())
    d.activity(at(9), "motion")
    assert d.activity(at(8), "motion") == []
    assert d.activity(float("nan"), "motion") == []
    assert d.tick(float("nan")) == []
    assert d.tick(at(12, 1))  # still measured from 09:00
