"""Fleets become valid facility files; scenarios are validated and placed in time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from devices import FacilityFile
from simulators.fleet import FleetSpec, build_fleet
from simulators.scenario import ScenarioError, load_scenario, parse_offset, with_prefix

ROOT = Path(__file__).resolve().parents[2]


def test_a_care_home_and_family_beds():
    fleet = build_fleet(FleetSpec(care_homes=2, rooms_per_home=5, beds_per_room=2, home_beds=3))
    FacilityFile.model_validate(fleet.facility_file.model_dump())
    kinds = Counter(d.kind for d in fleet.devices)
    residents = 2 * 5 * 2 + 3
    assert kinds["wearable"] == residents
    assert kinds["bed_sensor"] == residents
    assert kinds["sos_button"] == residents
    assert kinds["smoke_detector"] == 2 * (5 + 1) + 3  # a detector per room and kitchen, one per home
    assert kinds["gas_detector"] == 2 + 3
    assert len({d.id for d in fleet.devices}) == len(fleet.devices)
    homes = [f for f in fleet.facility_file.facilities if f.kind == "home"]
    assert len(homes) == 3
    assert all(h.supervisor == "h0001" for h in homes)
    assert {d.placement for d in fleet.devices if d.kind == "wearable"} == {"waist", "chest", "wrist"}


def test_prefixes_keep_fleets_apart():
    a = build_fleet(FleetSpec(care_homes=1, rooms_per_home=2, prefix="x"))
    b = build_fleet(FleetSpec(care_homes=1, rooms_per_home=2))
    assert not {d.id for d in a.devices} & {d.id for d in b.devices}
    assert "smoke-xh0001-101" in {d.id for d in a.devices}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("02:13", 7980), ("00:01:30", 90), ("90s", 90), ("15m", 900), ("2h", 7200), (45, 45)],
)
def test_offsets(text, seconds):
    assert parse_offset(text) == seconds


def test_demo_scenario_loads_and_prefixes(tmp_path: Path):
    scen = load_scenario(ROOT / "scenarios" / "demo.yaml")
    assert scen.duration == 600
    kinds = {i.kind for i in scen.incidents}
    assert {"fall", "fire", "cooking", "offline", "garbage"} <= kinds
    moved = with_prefix(list(scen.incidents), "p")
    fire = next(i for i in moved if i.kind == "fire")
    assert fire.room == "ph0001/103"
    offline = next(i for i in moved if i.kind == "offline")
    assert offline.device == "smoke-ph0001-105"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("incidents: [{at: soon, kind: fall}]", "cannot read 'soon' as an offset"),
        ("incidents: [{at: 10s, kind: meteor}]", "kind"),
        ("fleet: {care_homes: -1}", "care_homes"),
        ("[1, 2]", "a scenario is a mapping"),
    ],
)
def test_bad_scenarios(tmp_path: Path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)
