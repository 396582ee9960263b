"""Home Assistant discovery: retained configs and states through a real Mosquitto."""

from __future__ import annotations

import asyncio
import threading

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.errors import AlertsUnavailable
from alerts.hadiscovery import Announcer, Facility, discovery_messages, state_messages, sync
from alerts.rules import RULES
from tests.support import wait_until


def test_configs_name_each_facility_alarm_type_and_status():
    messages = dict(discovery_messages([Facility("qd-01", "康乐养老院"), Facility("home:42")]))
    assert len(messages) == 2 * (len(RULES) + 1)
    fire = orjson.loads(messages["homeassistant/binary_sensor/ankang_qd-01_fire/config"])
    assert fire["state_topic"] == "ankang/v1/ha/qd-01/fire"
    assert fire["device_class"] == "smoke"
    assert fire["unique_id"] == "ankang_qd-01_fire"
    assert fire["device"]["name"] == "ankang 康乐养老院"
    # ids that are not safe in an entity id or a topic are made so
    assert "homeassistant/sensor/ankang_home_42_status/config" in messages


def test_states_follow_open_alarms():
    states = dict(
        state_messages(
            [Facility("qd-01"), Facility("qd-02")],
            [("qd-01", "fire", "high"), ("qd-01", "low_battery", "low")],
        )
    )
    assert states["ankang/v1/ha/qd-01/fire"] == b"ON"
    assert states["ankang/v1/ha/qd-01/low_battery"] == b"ON"
    assert states["ankang/v1/ha/qd-01/sos"] == b"OFF"
    assert states["ankang/v1/ha/qd-01/status"] == b"high"
    assert states["ankang/v1/ha/qd-02/status"] == b"normal"


def _client(url: str, client_id: str) -> paho.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(host, int(port))
    client.loop_start()
    assert connected.wait(10)
    return client


def test_sync_publishes_retained_messages_a_late_subscriber_still_gets(broker, database):
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO facilities (id, name) VALUES ('qd-01', 'Qingdao 1')")
        conn.execute(
            "INSERT INTO alarms (type, priority, subject, facility_id, room_id, opened_at, last_seen_at)"
            " VALUES ('fire', 'high', 'qd-01/kitchen', 'qd-01', 'kitchen', now(), now())"
        )
    publisher = _client(broker.url, "ha-publisher")

    async def publish(topic: str, payload: bytes) -> None:
        info = publisher.publish(topic, payload, qos=1, retain=True)
        await asyncio.to_thread(info.wait_for_publish, 5)

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            return await sync(conn, publish)

    try:
        sent = asyncio.run(run())
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert sent == 2 * (len(RULES) + 1)

    # Home Assistant starting later still finds the entities and their states
    received: dict[str, bytes] = {}
    subscriber = _client(broker.url, "home-assistant")
    subscriber.on_message = lambda _c, _u, msg: received.__setitem__(msg.topic, msg.payload)
    subscriber.subscribe([("homeassistant/#", 1), ("ankang/v1/ha/#", 1)])
    try:
        wait_until(lambda: len(received) >= sent, 10, "every retained message")
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert received["ankang/v1/ha/qd-01/fire"] == b"ON"
    assert received["ankang/v1/ha/qd-01/status"] == b"high"
    assert (
        orjson.loads(received["homeassistant/binary_sensor/ankang_qd-01_sos/config"])["device_class"]
        == "safety"
    )


def test_the_announcer_sends_what_changed_and_everything_after_a_reconnect(database):
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO facilities (id, name) VALUES ('qd-01', 'Qingdao 1')")
    sent: list[tuple[str, bytes]] = []
    fail = [False]

    async def publish(topic: str, payload: bytes) -> None:  # the seam: sync's publish callable
        if fail[0]:
            raise AlertsUnavailable("the broker is away")
        sent.append((topic, payload))

    async def run() -> list[int]:
        announcer = Announcer()
        counts = []
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            counts.append(await announcer.sync(conn, publish, session=1, changed=False))  # start: all
            counts.append(await announcer.sync(conn, publish, session=1, changed=False))  # nothing due
            await conn.execute(
                "INSERT INTO alarms (type, priority, subject, facility_id, room_id, opened_at, last_seen_at)"
                " VALUES ('sos', 'high', 'qd-01/101', 'qd-01', '101', now(), now())"
            )
            fail[0] = True
            with pytest.raises(AlertsUnavailable):
                await announcer.sync(conn, publish, session=1, changed=True)
            fail[0] = False
            counts.append(await announcer.sync(conn, publish, session=1, changed=False))  # still due
            counts.append(await announcer.sync(conn, publish, session=2, changed=False))  # reconnected
        return counts

    counts = asyncio.run(run())
    everything = len(RULES) * 2 + 2
    assert counts == [everything, 0, 2, everything]
    assert sent[everything : everything + 2] == [
        ("ankang/v1/ha/qd-01/sos", b"ON"),
        ("ankang/v1/ha/qd-01/status", b"high"),
    ]
