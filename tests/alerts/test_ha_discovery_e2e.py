"""Home Assistant discovery from the running alert service, through a real Mosquitto."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alerts import AlertService
from alerts.rules import RULES
from hub.settings import Settings
from tests.support import scalar, wait_until

from .test_escalation import registry
from .test_lifecycle import T0, close, detect

FIRE_CONFIG = "homeassistant/binary_sensor/ankang_fac-1_fire/config"
FIRE_STATE = "ankang/v1/ha/fac-1/fire"
STATUS = "ankang/v1/ha/fac-1/status"


class Watcher:
    """A paho subscriber to Home Assistant's topics and ankang's, recording (topic, retain, payload)."""

    def __init__(self, url: str, client_id: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.got: list[tuple[str, bool, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("homeassistant/#", 1), ("ankang/v1/ha/#", 1), ("ankang/v1/alerts/#", 1)]
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert subscribed.wait(10), "the watcher could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.got.append((msg.topic, bool(msg.retain), bytes(msg.payload)))

    def messages(self, topic: str | None = None) -> list[tuple[str, bool, bytes]]:
        with self._lock:
            return [m for m in self.got if topic is None or m[0] == topic]

    def last(self, topic: str) -> bytes | None:
        found = self.messages(topic)
        return found[-1][2] if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_connect = self.client.on_subscribe = self.client.on_message = None


def run_service(settings: Settings, scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        service = AlertService(settings, clock=lambda: T0, publish_mqtt=True)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop, apply_migrations=False), name="test.alerts")
        try:
            await scenario()
        finally:
            stop.set()
            await asyncio.wait_for(runner, 15)

    asyncio.run(run())


def test_the_alert_service_keeps_home_assistant_in_step_with_the_alarms(database, broker):
    registry(database)
    live = Watcher(broker.url, "test-ha-live")
    late: list[Watcher] = []

    def home_assistant_starts() -> Watcher:
        """A subscriber that comes after the publish sees only what the broker retained."""
        late.append(Watcher(broker.url, f"test-ha-late-{len(late)}"))
        return late[-1]

    async def scenario() -> None:
        # at start: every facility's entities, all off
        await asyncio.to_thread(
            wait_until, lambda: live.last(FIRE_STATE) == b"OFF", 15, "the entities at start"
        )
        await asyncio.to_thread(detect, database, "fire", "alarm", "fac-1/101", T0)
        await asyncio.to_thread(wait_until, lambda: live.last(FIRE_STATE) == b"ON", 15, "the fire's state ON")
        assert live.last(STATUS) == b"high"
        first = await asyncio.to_thread(home_assistant_starts)
        await asyncio.to_thread(
            wait_until, lambda: len(first.messages()) >= 2 * 2 * (len(RULES) + 1), 15, "the retained messages"
        )

        fire = scalar(database, "SELECT id FROM alarms WHERE type = 'fire'")
        await asyncio.to_thread(close, database, fire, "false_alarm")
        await asyncio.to_thread(
            wait_until, lambda: live.last(FIRE_STATE) == b"OFF", 15, "the fire's state OFF"
        )
        await asyncio.to_thread(wait_until, lambda: live.last(STATUS) == b"normal", 15, "the status normal")
        second = await asyncio.to_thread(home_assistant_starts)
        await asyncio.to_thread(
            wait_until, lambda: second.last(FIRE_STATE) == b"OFF", 15, "the retained state OFF"
        )

    try:
        run_service(Settings(database_url=database, mqtt_url=broker.url), scenario)
    finally:
        for watcher in (live, *late):
            watcher.close()

    first, second = late
    # Home Assistant, starting after ankang, finds the entity and its state: both retained
    config = [(retain, orjson.loads(p)) for _, retain, p in first.messages(FIRE_CONFIG)]
    assert len(config) == 1 and config[0][0], "one retained config"
    assert config[0][1]["state_topic"] == FIRE_STATE
    assert config[0][1]["device_class"] == "smoke"
    assert config[0][1]["device"]["name"] == "ankang 青岛颐和养老院"
    # (then, still subscribed, the resolution live: not retained, as every live delivery)
    assert first.messages(FIRE_STATE) == [(FIRE_STATE, True, b"ON"), (FIRE_STATE, False, b"OFF")]
    assert first.messages(STATUS) == [(STATUS, True, b"high"), (STATUS, False, b"normal")]
    assert first.messages("ankang/v1/ha/home-1/fire") == [("ankang/v1/ha/home-1/fire", True, b"OFF")]
    # the alarm changes themselves are events: nothing of them is retained for a late subscriber
    assert not [t for t, retain, _ in first.messages() if t.startswith("ankang/v1/alerts/") and retain]
    assert second.messages(FIRE_STATE) == [(FIRE_STATE, True, b"OFF")]
    assert second.messages(STATUS) == [(STATUS, True, b"normal")]

    # live: the configs went out once, and each change sent only the states that changed
    assert len(live.messages(FIRE_CONFIG)) == 1
    assert [p for _, _, p in live.messages(FIRE_STATE)] == [b"OFF", b"ON", b"OFF"]
    assert [p for _, _, p in live.messages(STATUS)] == [b"normal", b"high", b"normal"]
    assert [p for _, _, p in live.messages("ankang/v1/ha/fac-1/sos")] == [b"OFF"]
    alarm_events = [(t, r) for t, r, _ in live.messages() if t.startswith("ankang/v1/alerts/")]
    assert alarm_events and all(t == "ankang/v1/alerts/fac-1/fire" and not r for t, r in alarm_events)


def test_ha_discovery_can_be_turned_off(database, broker):
    registry(database)
    live = Watcher(broker.url, "test-ha-off")

    async def scenario() -> None:
        await asyncio.to_thread(detect, database, "fire", "alarm", "fac-1/101", T0)
        await asyncio.to_thread(
            wait_until, lambda: live.messages("ankang/v1/alerts/fac-1/fire"), 15, "the alarm on its topic"
        )

    try:
        run_service(Settings(database_url=database, mqtt_url=broker.url, ha_discovery=False), scenario)
    finally:
        live.close()
    assert [t for t, _, _ in live.messages() if not t.startswith("ankang/v1/alerts/")] == []
