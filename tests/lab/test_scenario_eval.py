"""A scenario through the real broker, hub and database, scored against its ground truth."""

from __future__ import annotations

import asyncio

import psycopg

from devices import Registry
from devices.mqtt import MqttEndpoint
from lab.scenario_eval import Seen, score, stored_detections
from simulators.engine import run_scenario
from simulators.fleet import FleetSpec, build_fleet
from simulators.scenario import Incident, Scenario
from tests.support import wait_until


def test_score_matches_misses_and_false_alarms() -> None:
    truth = [
        {
            "kind": "fall",
            "t": 100.0,
            "impact": 100.3,
            "device": "w1",
            "fall": "forward",
            "placement": "waist",
        },
        {"kind": "fall", "t": 400.0, "impact": 400.3, "device": "w2"},
        {"kind": "fire", "t": 200.0, "room": "f/101", "growth": "fast"},
        {"kind": "cooking", "t": 300.0, "room": "f/kitchen"},
        {"kind": "sos", "t": 500.0, "devices": ["s1"]},
    ]
    seen = [
        Seen("fall", "alarm", 101.0, "w1", "w1", 0.2),
        Seen("fall", "alarm", 420.0, "w2", "w2", 0.2),  # too late to be that fall: a miss and a false alarm
        Seen("fire", "prealarm", 210.0, "f/101", "smoke-101", 0.1),
        Seen("fire", "alarm", 231.0, "f/101", "smoke-101", 0.1),
        Seen("fire", "prealarm", 350.0, "f/kitchen", "smoke-k", 0.1),
        Seen("sos", "alarm", 500.0, "s1", "s1", 0.05),
    ]
    result = score(truth, seen, device_rooms={})
    matched = {(o.incident, o.target): o for o in result.outcomes}
    assert matched[("fall", "w1")].matched and abs(matched[("fall", "w1")].delay_s - 0.7) < 1e-9
    assert not matched[("fall", "w2")].matched
    assert matched[("fire", "f/101")].delay_s == 31.0
    assert matched[("cooking", "f/kitchen")].matched and result.nuisance_prealarms == 1
    assert matched[("sos", "s1")].matched
    assert [(s.kind, s.t) for s in result.false_alarms] == [("fall", 420.0)]


def test_a_scenario_end_to_end(broker, database, hub_factory):
    fleet = build_fleet(FleetSpec(care_homes=1, rooms_per_home=2, beds_per_room=1, home_beds=0))
    scenario = Scenario(
        name="e2e",
        duration=100,
        seed=3,
        fleet=fleet.spec,
        incidents=[
            Incident(at=20, kind="fall", resident="R000001", fall="forward"),
            Incident(at=25, kind="fire", room="h0001/102", growth="fast"),
            Incident(at=30, kind="cooking", room="h0001/kitchen", minutes=1),
            Incident(at=40, kind="sos", resident="R000002"),
            Incident(at=45, kind="test", device="smoke-h0001-101"),
            Incident(at=50, kind="power_loss", device="door-h0001-101"),
        ],
    )

    async def register() -> None:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            await Registry(conn).apply(fleet.facility_file)

    asyncio.run(register())
    hub_factory(database, ANKANG_DETECT_TICK_S="0.2", ANKANG_DETECT_SLOW_TICK_S="0.5")
    result = run_scenario(scenario, fleet, MqttEndpoint.from_url(broker.url), speed=4.0, truth_path=None)

    def settled() -> bool:
        found = {s.kind for s in stored_detections(database, ["h0001"])}
        return {"fall", "fire", "sos", "fire_test", "device_offline"} <= found

    wait_until(settled, 60, "the scenario's detections")
    outcome = score(result["truth"], stored_detections(database, ["h0001"]), device_rooms={})
    summary = outcome.as_dict()
    assert outcome.missed == [], summary
    assert outcome.false_alarms == [], summary
    fall = next(o for o in outcome.outcomes if o.incident == "fall")
    assert fall.delay_s is not None and -1 <= fall.delay_s <= 5
