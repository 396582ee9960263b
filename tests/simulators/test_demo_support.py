"""What ``ankang demo`` needs from the simulator: a fleet from a facility file, and bed times
that need not span midnight."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from devices import load_facility_file
from devices.mqtt import MqttEndpoint
from simulators.engine import Simulation
from simulators.fleet import FleetSpec, build_fleet, fleet_from_file
from simulators.signals import BedModel

ROOT = Path(__file__).resolve().parents[2]


def test_a_facility_file_is_its_own_fleet() -> None:
    file = load_facility_file(ROOT / "ankang" / "demo" / "facility.yaml")
    fleet = fleet_from_file(file)
    assert [d.id for d in fleet.devices] == [d.id for d in file.devices]
    watch = fleet.by_id()["watch-R001"]
    assert (watch.kind, watch.resident, watch.placement, watch.period_s) == ("wearable", "R001", "wrist", 1.0)
    assert fleet.by_id()["smoke-101"].heartbeat_s == 3600  # the kind's default, as the registry applies it
    kinds = Counter(d.kind for d in fleet.devices)
    assert kinds["bed_sensor"] == kinds["wearable"] == kinds["sos_button"] == 6


def test_a_generated_fleet_is_unchanged_by_going_through_its_file() -> None:
    fleet = build_fleet(FleetSpec(care_homes=1, rooms_per_home=2, home_beds=1))
    assert fleet_from_file(fleet.facility_file, fleet.spec) == fleet


def test_bed_time_within_one_day() -> None:
    bed = BedModel(np.random.default_rng(1), in_bed_from=6.5 * 3600, in_bed_until=15.5 * 3600)
    assert not bed.occupied(6 * 3600)
    assert bed.occupied(7 * 3600)
    assert bed.occupied(15 * 3600)
    assert not bed.occupied(16 * 3600)
    assert not bed.occupied(23 * 3600)


def test_bed_time_across_midnight_as_before() -> None:
    bed = BedModel(np.random.default_rng(1))
    assert bed.occupied(23 * 3600)
    assert bed.occupied(3 * 3600)
    assert not bed.occupied(12 * 3600)


def test_the_simulation_puts_residents_to_bed_when_told() -> None:
    fleet = fleet_from_file(load_facility_file(ROOT / "ankang" / "demo" / "facility.yaml"))
    sim = Simulation(
        fleet.devices, MqttEndpoint("127.0.0.1", 1), duration_s=60, in_bed=(10 * 3600.0, 11 * 3600.0)
    )
    beds = [d.bed for d in sim._devices if d.bed is not None]
    assert len(beds) == 6
    assert all((b.in_bed_from, b.in_bed_until) == (36000.0, 39600.0) for b in beds)
    assert all(b.occupied(10.5 * 3600) and not b.occupied(12 * 3600) for b in beds)
