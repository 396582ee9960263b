"""The simulator on a real broker: what it publishes follows the v1 contract, and the ground
truth matches what it injected."""

from __future__ import annotations

import threading
from pathlib import Path

import jsonschema
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from devices import Rejected, decode, json_schema
from devices.mqtt import MqttEndpoint
from simulators.engine import run_scenario
from simulators.fleet import FleetSpec, build_fleet
from simulators.scenario import Incident, Scenario, read_ground_truth


class Recorder:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="recorder", protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("ankang/v1/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_simulated_traffic_follows_the_contract_and_ground_truth_matches(broker, tmp_path: Path):
    fleet = build_fleet(FleetSpec(care_homes=1, rooms_per_home=3, beds_per_room=2, home_beds=1))
    incidents = [
        Incident(at=10, kind="fall", resident="R000002", fall="sideways"),
        Incident(at=15, kind="fire", room="h0001/102", growth="fast"),
        Incident(at=20, kind="sos", resident="R000004"),
        Incident(at=25, kind="garbage", device="bed-h0001-101-1", count=3),
        Incident(at=30, kind="power_loss", device="door-h0001-103"),
        Incident(at=35, kind="bed_exit", resident="R000001", minutes=5),
    ]
    scenario = Scenario(duration=120, seed=3, fleet=fleet.spec, incidents=incidents)
    recorder = Recorder(broker.url)
    truth_path = tmp_path / "truth.jsonl"
    result = run_scenario(
        scenario, fleet, MqttEndpoint.from_url(broker.url), speed=30.0, truth_path=truth_path
    )
    recorder.close()

    assert result["connected"] == len(fleet.devices)
    schema = json_schema()
    validators = {
        ch: jsonschema.Draft202012Validator({"$ref": f"#/$defs/{ch}", "$defs": schema["$defs"]})
        for ch in ("telemetry", "event", "status")
    }
    garbage = valid = 0
    for topic, payload in recorder.messages:
        channel = topic.rsplit("/", 1)[1]
        msg = decode(topic, payload)
        if isinstance(msg, Rejected):
            garbage += 1
            assert topic == "ankang/v1/bed-h0001-101-1/telemetry"
            continue
        validators[channel].validate(orjson.loads(payload))
        valid += 1
    assert garbage == 3
    assert valid > 500

    truth = read_ground_truth(truth_path)
    assert [r["kind"] for r in truth] == ["fall", "fire", "sos", "garbage", "power_loss", "bed_exit"]
    fall = truth[0]
    assert fall["device"] == "w-h0001-R000002"
    assert fall["fall"] == "sideways"
    assert 0 < fall["impact"] - fall["t"] < 2
    events = [(t, orjson.loads(p)) for t, p in recorder.messages if t.endswith("/event")]
    smoke = [(t, e) for t, e in events if e["event"] == "smoke_alarm"]
    assert [t for t, _ in smoke] == ["ankang/v1/smoke-h0001-102/event"], "only the burning room's detector"
    assert smoke[0][1]["ts"] / 1000 > truth[1]["t"], "the alarm follows ignition"
    assert any(t == "ankang/v1/sos-h0001-102-2/event" and e["event"] == "sos_pressed" for t, e in events)
    wills = [orjson.loads(p) for t, p in recorder.messages if t == "ankang/v1/door-h0001-103/status"]
    assert wills[-1]["state"] == "offline", "a power loss makes the broker send the last will"
    wearable_blocks = [
        orjson.loads(p) for t, p in recorder.messages if t == "ankang/v1/w-h0001-R000002/telemetry"
    ]
    assert all(len(b["acc_g"]) == 50 for b in wearable_blocks)
    seqs = [b["seq"] for b in wearable_blocks]
    assert seqs == sorted(seqs)


def test_a_fleet_split_across_processes_keeps_rooms_together(broker, tmp_path: Path):
    fleet = build_fleet(FleetSpec(care_homes=3, rooms_per_home=2, beds_per_room=1, home_beds=2))
    incidents = [
        Incident(at=5, kind="fire", room="h0002/101", growth="fast"),
        Incident(at=8, kind="sos", resident="R000001"),
        Incident(at=9, kind="fall", resident="R000005", fall="backward"),
    ]
    scenario = Scenario(duration=60, seed=1, fleet=fleet.spec, incidents=incidents)
    recorder = Recorder(broker.url)
    truth_path = tmp_path / "truth.jsonl"
    result = run_scenario(
        scenario, fleet, MqttEndpoint.from_url(broker.url), speed=20.0, truth_path=truth_path, processes=2
    )
    recorder.close()
    assert result["processes"] == 2
    assert result["connected"] == len(fleet.devices)
    truth = read_ground_truth(truth_path)
    assert [r["kind"] for r in truth] == ["fire", "sos", "fall"], (
        "each incident is injected once, by one process"
    )
    assert not list(tmp_path.glob("*.part*")), "the per-process parts are merged and removed"
    senders = {t.split("/")[2] for t, _ in recorder.messages}
    assert senders == {d.id for d in fleet.devices}
    smoke = [
        t for t, p in recorder.messages if t.endswith("/event") and orjson.loads(p)["event"] == "smoke_alarm"
    ]
    assert smoke == ["ankang/v1/smoke-h0002-101/event"]
