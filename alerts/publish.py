"""Alarm changes out over MQTT, for nurse-call systems and corridor displays, and the SQL.

Each change of an alarm (opened, repeated, escalated, acknowledged, resolved, ...) is
published to ``ankang/v1/alerts/{facility}/{type}`` as a JSON snapshot of the alarm, QoS 1
and **not retained**: an alarm change is an event, and docs/standards.md keeps only state retained
(a retained event would replay to every new subscriber as if it had just happened).

Which changes are still to publish lives in the database: every transition sets
``alarms.updated_at``, and ``published_at`` is the ``updated_at`` that the broker last
acknowledged (PUBACK). ``publish_changes`` sends the rows where the two differ and then
sets ``published_at`` only if the row has not changed meanwhile, so a restart, a broker
outage or a change during the publish costs a late message, never a lost one. Delivery is
at least once: a subscriber may see the same snapshot twice (same ``updated_at``).

Snapshots carry ids, room and bed, never a resident's name.
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self

import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import AsyncConnection

from alerts.errors import AlertsError, AlertsUnavailable
from devices.mqtt import MqttEndpoint

TOPIC_PREFIX: Final = "ankang/v1/alerts"
_UNSAFE: Final = re.compile(r"[/+#\x00]")


def topic_for(facility_id: str | None, alarm_type: str) -> str:
    """``ankang/v1/alerts/{facility}/{type}``; MQTT wildcards and separators in ids become ``_``."""
    facility = _UNSAFE.sub("_", facility_id) if facility_id else "_"
    return f"{TOPIC_PREFIX}/{facility}/{_UNSAFE.sub('_', alarm_type)}"


class AlarmPublisher:
    """An MQTT 5 client that publishes with QoS 1 and waits for the PUBACK.

    ``async with AlarmPublisher(endpoint) as pub: await pub.publish(topic, payload)``.
    Nothing connects before ``__aenter__``; a closed publisher refuses reuse. paho keeps
    reconnecting in its own thread; ``publish`` raises ``AlertsUnavailable`` while the
    broker is away. Messages are not retained unless asked (``retain=True``: state only,
    such as Home Assistant's discovery configs and states).
    """

    def __init__(self, endpoint: MqttEndpoint, client_id: str = "ankang-alerts", timeout_s: float = 5.0):
        self._endpoint = endpoint
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._connections = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._client is not None or self._closed:
            raise AlertsError("an AlarmPublisher is used once; make a new one")
        client_id = self._endpoint.client_id(self._client_id)
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self._endpoint.configure(client)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=30)
        client.loop_start()
        self._client = client
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client, self._closed = self._client, None, True
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def _on_connect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if not getattr(reason, "is_failure", False):
            self._connections += 1
            self._connected.set()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, _r: Any, _p: Any = None) -> None:
        self._connected.clear()

    async def wait_connected(self, timeout: float) -> bool:
        return await asyncio.to_thread(self._connected.wait, timeout)

    @property
    def connections(self) -> int:
        """Connections made so far. A new one may be to a broker that lost its retained messages."""
        return self._connections

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the PUBACK; alarm changes are never ``retain``ed."""
        client = self._client
        if client is None:
            raise AlertsError("the publisher is not open")
        if not self._connected.is_set():
            raise AlertsUnavailable("the MQTT broker is not connected")
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
            await asyncio.to_thread(info.wait_for_publish, self._timeout_s)
        except (RuntimeError, ValueError) as exc:
            # paho raises these when the connection dropped between the check above and the
            # publish (``Message publish failed: The client is not currently connected.``),
            # or its queue is full: the broker is away, which the caller waits out.
            raise AlertsUnavailable(f"publishing to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise AlertsUnavailable(f"no PUBACK for {topic} within {self._timeout_s:g} s")


_CHANGED: Final = """
    SELECT id, type, priority, state, subject, facility_id, room_id, device_id, count, opened_at,
           last_seen_at, escalation_level, acknowledged_at, acknowledged_by, resolved_at, resolution,
           cleared_at, updated_at
    FROM alarms
    WHERE published_at IS DISTINCT FROM updated_at
    ORDER BY updated_at, id
    LIMIT %s
"""

_COLUMNS: Final = (
    "id", "type", "priority", "state", "subject", "facility_id", "room_id", "device_id", "count",
    "opened_at", "last_seen_at", "escalation_level", "acknowledged_at", "acknowledged_by",
    "resolved_at", "resolution", "cleared_at", "updated_at",
)  # fmt: skip


def _json(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


async def publish_changes(conn: AsyncConnection[Any], publisher: AlarmPublisher, *, limit: int = 200) -> int:
    """Publish every alarm changed since its last acknowledged publish; returns how many."""
    done = 0
    try:
        async with conn.cursor() as cur:
            await cur.execute(_CHANGED, (limit,))
            changed = await cur.fetchall()
        for row in changed:
            snapshot = {name: _json(value) for name, value in zip(_COLUMNS, row, strict=True)}
            topic = topic_for(row[5], str(row[1]))  # facility_id, type
            await publisher.publish(topic, orjson.dumps(snapshot))
            # Only if nothing changed meanwhile: a newer change stays due and goes next.
            await conn.execute(
                "UPDATE alarms SET published_at = updated_at WHERE id = %s AND updated_at = %s",
                (row[0], row[-1]),
            )
            done += 1
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    return done
