"""Alarm changes on the outbound MQTT topic, through a real Mosquitto."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alerts import AlertService, topic_for
from hub.settings import Settings
from tests.support import scalar, wait_until

from .test_escalation import raise_alarm, registry
from .test_lifecycle import T0, ack


class Subscriber:
    """A paho subscriber to ankang/v1/alerts/#, recording (topic, retain, payload)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.got: list[tuple[str, bool, dict[str, Any]]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="test-nurse-call", protocol=paho.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe("ankang/v1/alerts/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert subscribed.wait(10), "the subscriber could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.got.append((msg.topic, bool(msg.retain), orjson.loads(msg.payload)))

    def messages(self) -> list[tuple[str, bool, dict[str, Any]]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_topics_are_safe_mqtt_names():
    assert topic_for("fac-1", "fire") == "ankang/v1/alerts/fac-1/fire"
    assert topic_for("a/b+#", "fall") == "ankang/v1/alerts/a_b__/fall"
    assert topic_for(None, "device_offline") == "ankang/v1/alerts/_/device_offline"


def test_alarm_changes_are_published_once_each_qos1_not_retained(database, broker):
    registry(database)
    sub = Subscriber(broker.url)
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    now = [T0]

    async def scenario() -> None:
        settings = Settings(database_url=database, mqtt_url=broker.url)
        service = AlertService(settings, clock=lambda: now[0], publish_mqtt=True)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop, apply_migrations=False), name="test.alerts")

        def states() -> list[str]:
            return [p["state"] for t, _, p in sub.messages() if p["id"] == fall]

        await asyncio.to_thread(wait_until, lambda: "open" in states(), 15, "the opened fall")
        await asyncio.to_thread(ack, database, fall)
        await asyncio.to_thread(wait_until, lambda: "acknowledged" in states(), 15, "the acknowledgement")
        stop.set()
        await asyncio.wait_for(runner, 15)

    asyncio.run(scenario())
    sub.close()
    mine = [(t, r, p) for t, r, p in sub.messages() if p["id"] == fall]
    assert {t for t, _, _ in mine} == {"ankang/v1/alerts/fac-1/fall"}
    assert not any(r for _, r, _ in mine), "alarm changes are events: never retained"
    assert mine[-1][2]["state"] == "acknowledged"
    assert mine[-1][2]["acknowledged_by"] == "nurse-li"
    assert "王芳" not in str(mine), "no resident names on a shared topic"
    # Each published change is marked; nothing is left to publish.
    assert scalar(database, "SELECT count(*) FROM alarms WHERE published_at IS DISTINCT FROM updated_at") == 0
    updated = [p["updated_at"] for _, _, p in mine]
    assert len(updated) == len(set(updated)), "one message per change"
