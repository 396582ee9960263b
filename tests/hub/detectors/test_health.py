"""Device health: deadlines on the hub's clock, last wills, battery, tamper, fault, stuck."""

from __future__ import annotations

from hub.detectors.health import GRACE, DeviceHealth, HealthRow

T0 = 1_700_000_000.0


def kinds(found: list) -> list[tuple[str, str]]:
    return [(d.kind, d.level) for d in found]


def test_offline_at_the_deadline_not_before() -> None:
    h = DeviceHealth()
    h.heard("d1", 60, T0)
    assert h.tick(T0 + 60 * GRACE - 0.01) == []
    found = h.tick(T0 + 60 * GRACE + 0.4)
    assert kinds(found) == [("device_offline", "alarm")]
    assert found[0].t == T0 + 60 * GRACE  # stamped with the deadline itself
    assert found[0].detail["reason"] == "silent"
    assert h.tick(T0 + 1000) == []  # reported once


def test_messages_push_the_deadline_back() -> None:
    h = DeviceHealth()
    for i in range(10):
        h.heard("d1", 60, T0 + 50 * i)
        assert h.tick(T0 + 50 * i + 1) == []
    assert h.tick(T0 + 450 + 89) == []
    assert kinds(h.tick(T0 + 450 + 91)) == [("device_offline", "alarm")]


def test_back_online_after_offline() -> None:
    h = DeviceHealth()
    h.heard("d1", 10, T0)
    assert kinds(h.tick(T0 + 20)) == [("device_offline", "alarm")]
    found = h.heard("d1", 10, T0 + 100)
    assert kinds(found) == [("device_online", "clear")]
    assert found[0].detail["offline_s"] == 85.0
    # and goes offline again at its next deadline
    assert kinds(h.tick(T0 + 116)) == [("device_offline", "alarm")]


def test_last_will_is_offline_at_once_and_only_once() -> None:
    h = DeviceHealth()
    h.heard("d1", 3600, T0)
    found = h.last_will("d1", T0 + 5)
    assert kinds(found) == [("device_offline", "alarm")]
    assert found[0].detail["reason"] == "last_will"
    assert h.last_will("d1", T0 + 6) == []
    assert h.tick(T0 + 10_000) == []  # not reported again by the deadline
    assert kinds(h.heard("d1", 3600, T0 + 20)) == [("device_online", "clear")]
    assert kinds(h.tick(T0 + 20 + 5401)) == [("device_offline", "alarm")]


def test_many_devices_each_at_its_own_deadline() -> None:
    h = DeviceHealth()
    for i in range(1000):
        h.heard(f"d{i}", 10 + i % 50, T0)
    offline = []
    for step in range(100):
        offline += [d.subject for d in h.tick(T0 + step)]
    assert len(offline) == 1000 and len(set(offline)) == 1000


def test_expected_device_that_never_speaks_goes_offline() -> None:
    h = DeviceHealth()
    h.expect("quiet", 60, T0)
    assert kinds(h.tick(T0 + 91)) == [("device_offline", "alarm")]


def test_restore_keeps_offline_devices_quiet_and_gives_others_a_fresh_deadline() -> None:
    h = DeviceHealth()
    rows = [
        HealthRow("down", online=False, since=T0 - 500, last_seen=T0 - 600),
        HealthRow("up", online=True, since=T0 - 900, last_seen=T0 - 800),
    ]
    h.restore(rows, {"down": 60, "up": 60}, T0)
    assert h.tick(T0 + 89) == []
    assert [d.subject for d in h.tick(T0 + 91)] == ["up"]
    assert kinds(h.heard("down", 60, T0 + 100)) == [("device_online", "clear")]


def test_battery_warning_with_hysteresis() -> None:
    h = DeviceHealth()
    h.heard("d1", 60, T0)
    assert h.metrics("d1", T0, {"battery_pct": 45}) == []
    assert kinds(h.metrics("d1", T0 + 1, {"battery_pct": 19.5})) == [("low_battery", "warning")]
    assert h.metrics("d1", T0 + 2, {"battery_pct": 18}) == []
    assert h.metrics("d1", T0 + 3, {"battery_pct": 25}) == []  # a warm battery is not a new one
    assert kinds(h.metrics("d1", T0 + 4, {"battery_pct": 95})) == [("low_battery", "clear")]


def test_a_devices_own_low_battery_flag_warns_and_clears() -> None:
    h = DeviceHealth()
    h.heard("z1", 60, T0)
    assert h.metrics("z1", T0, {"battery_low": 0}) == []
    assert kinds(h.metrics("z1", T0 + 1, {"battery_low": 1})) == [("low_battery", "warning")]
    assert h.metrics("z1", T0 + 2, {"battery_low": 1}) == []
    assert kinds(h.metrics("z1", T0 + 3, {"battery_low": 0})) == [("low_battery", "clear")]
    # with a percentage alongside, the flag raises but the percentage's hysteresis decides the clear
    h.heard("z2", 60, T0)
    assert kinds(h.metrics("z2", T0, {"battery_pct": 60, "battery_low": 1})) == [("low_battery", "warning")]
    assert h.metrics("z2", T0 + 1, {"battery_pct": 25, "battery_low": 0}) == []
    assert kinds(h.metrics("z2", T0 + 2, {"battery_pct": 35, "battery_low": 0})) == [("low_battery", "clear")]


def test_tamper_and_fault_report_changes_only() -> None:
    h = DeviceHealth()
    h.heard("d1", 60, T0)
    assert kinds(h.event("d1", T0, "tamper", None)) == [("tamper", "warning")]
    assert h.event("d1", T0 + 1, "tamper", None) == []
    assert kinds(h.event("d1", T0 + 2, "tamper", {"active": False})) == [("tamper", "clear")]
    found = h.event("d1", T0 + 3, "fault", {"code": "E12", "nested": {"x": 1}})
    assert kinds(found) == [("fault", "warning")]
    assert found[0].detail == {"code": "E12"}  # only scalars are kept
    rows = {r.device_id: r for r in h.take_changed()}
    assert rows["d1"].fault and rows["d1"].fault_since == T0 + 3 and not rows["d1"].tamper


def test_stuck_temperature_after_a_day_of_identical_readings() -> None:
    h = DeviceHealth()
    h.heard("d1", 600, T0)
    found = []
    for i in range(25 * 6):  # every 10 minutes for 25 h
        found += h.metrics("d1", T0 + 600 * i, {"temp_c": 22.0})
    assert kinds(found) == [("stuck_sensor", "warning")]
    assert found[0].detail["metric"] == "temp_c"
    assert kinds(h.metrics("d1", T0 + 600 * 151, {"temp_c": 22.1})) == [("stuck_sensor", "clear")]


def test_noisy_temperature_is_not_stuck() -> None:
    h = DeviceHealth()
    h.heard("d1", 600, T0)
    found = []
    for i in range(30 * 6):
        found += h.metrics("d1", T0 + 600 * i, {"temp_c": 22.0 + 0.1 * (i % 3)})
    assert found == []


def test_flat_acceleration_is_a_stuck_wearable() -> None:
    h = DeviceHealth()
    h.heard("w1", 60, T0)
    found = []
    for i in range(700):
        found += h.acceleration("w1", T0 + i, flat=True)
    assert kinds(found) == [("stuck_sensor", "warning")]
    assert found[0].detail["metric"] == "acc_g"
    assert kinds(h.acceleration("w1", T0 + 701, flat=False)) == [("stuck_sensor", "clear")]
