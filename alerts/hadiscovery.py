"""Home Assistant MQTT discovery: each facility's alarms as entities in Home Assistant.

For every facility, one ``binary_sensor`` per alarm type (on while an alarm of that type is
open) and one ``sensor`` for the facility's status (``normal``, or the highest priority of
its open alarms), announced on Home Assistant's discovery topics:

    homeassistant/binary_sensor/ankang_{facility}_{type}/config
    homeassistant/sensor/ankang_{facility}_status/config

Their states are on ``ankang/v1/ha/{facility}/{type}`` (``ON``/``OFF``) and
``ankang/v1/ha/{facility}/status``. Configs and states are retained, because they are
state, not events (docs/standards.md: keep state retained, never commands): Home Assistant, started
after ankang, still finds both. The alarm events themselves stay on the non-retained
``ankang/v1/alerts/...`` topic (``alerts.publish``).

This module builds the messages and reads the state they need; sending them is the
caller's (``sync``). ``Announcer`` is what ``ankang alerts`` runs (alerts/service.py): every
message at start and after each new broker connection, then, after alarm changes, only the
messages that differ from what the broker last acknowledged. Nothing here names a resident.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from psycopg import AsyncConnection

from alerts.rules import RULES

DISCOVERY_PREFIX: Final = "homeassistant"
STATE_PREFIX: Final = "ankang/v1/ha"
_UNSAFE_ID: Final = re.compile(r"[^A-Za-z0-9_-]")
_UNSAFE_TOPIC: Final = re.compile(r"[/+#\x00]")

# Home Assistant binary_sensor device classes, by alarm type.
DEVICE_CLASS: Final[Mapping[str, str]] = {
    "fire": "smoke",
    "fire_prealarm": "smoke",
    "gas": "gas",
    "water_leak": "moisture",
    "low_battery": "battery",
    "tamper": "tamper",
    "device_offline": "problem",
    "fault": "problem",
    "bed_exit": "occupancy",
    "fall": "safety",
    "sos": "safety",
    "vitals": "safety",
    "inactivity": "safety",
    "ingest_delayed": "problem",
}
_PRIORITY_RANK: Final = {"high": 3, "medium": 2, "low": 1}

Publish = Callable[[str, bytes], Awaitable[None]]  # sends one retained message


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str = ""


def _object_id(facility_id: str, suffix: str) -> str:
    return f"ankang_{_UNSAFE_ID.sub('_', facility_id)}_{suffix}"


def _topic_part(value: str) -> str:
    return _UNSAFE_TOPIC.sub("_", value)


def state_topic(facility_id: str, what: str) -> str:
    return f"{STATE_PREFIX}/{_topic_part(facility_id)}/{_topic_part(what)}"


def _device(facility: Facility) -> dict[str, Any]:
    # One Home Assistant device per facility groups its entities.
    return {
        "identifiers": [_object_id(facility.id, "facility")],
        "name": f"ankang {facility.name or facility.id}",
        "manufacturer": "ankang",
        "model": "care facility",
    }


def discovery_messages(
    facilities: Iterable[Facility], *, prefix: str = DISCOVERY_PREFIX
) -> list[tuple[str, bytes]]:
    """The retained config messages that announce every facility's entities."""
    out: list[tuple[str, bytes]] = []
    for facility in facilities:
        device = _device(facility)
        for alarm_type in RULES:
            object_id = _object_id(facility.id, alarm_type)
            config: dict[str, Any] = {
                "name": alarm_type.replace("_", " "),
                "unique_id": object_id,
                "object_id": object_id,
                "state_topic": state_topic(facility.id, alarm_type),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device": device,
            }
            if alarm_type in DEVICE_CLASS:
                config["device_class"] = DEVICE_CLASS[alarm_type]
            out.append((f"{prefix}/binary_sensor/{object_id}/config", orjson.dumps(config)))
        object_id = _object_id(facility.id, "status")
        status = {
            "name": "status",
            "unique_id": object_id,
            "object_id": object_id,
            "state_topic": state_topic(facility.id, "status"),
            "device_class": "enum",
            "options": ["normal", "low", "medium", "high"],
            "device": device,
        }
        out.append((f"{prefix}/sensor/{object_id}/config", orjson.dumps(status)))
    return out


def state_messages(
    facilities: Iterable[Facility], open_alarms: Iterable[tuple[str, str, str]]
) -> list[tuple[str, bytes]]:
    """Retained states from the open alarms, given as (facility_id, type, priority)."""
    active: dict[str, set[str]] = {}
    highest: dict[str, int] = {}
    for facility_id, alarm_type, priority in open_alarms:
        active.setdefault(facility_id, set()).add(alarm_type)
        highest[facility_id] = max(highest.get(facility_id, 0), _PRIORITY_RANK.get(priority, 0))
    names = {rank: name for name, rank in _PRIORITY_RANK.items()}
    out: list[tuple[str, bytes]] = []
    for facility in facilities:
        on = active.get(facility.id, set())
        for alarm_type in RULES:
            out.append((state_topic(facility.id, alarm_type), b"ON" if alarm_type in on else b"OFF"))
        status = names.get(highest.get(facility.id, 0), "normal")
        out.append((state_topic(facility.id, "status"), status.encode()))
    return out


async def load(conn: AsyncConnection[Any]) -> tuple[list[Facility], list[tuple[str, str, str]]]:
    """The facilities, and the (facility, type, priority) of every alarm not yet resolved."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT id, name FROM facilities ORDER BY id")
        facilities = [Facility(str(r[0]), str(r[1])) for r in await cur.fetchall()]
        await cur.execute(
            "SELECT facility_id, type, priority FROM alarms"
            " WHERE state <> 'resolved' AND facility_id IS NOT NULL"
        )
        open_alarms = [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]
    return facilities, open_alarms


async def sync(
    conn: AsyncConnection[Any],
    publish: Publish,
    *,
    prefix: str = DISCOVERY_PREFIX,
    sent: dict[str, bytes] | None = None,
) -> int:
    """Announce every facility's entities and publish their current states, retained.

    Run it at start and after alarm changes; repeating it is harmless (same retained
    messages). With ``sent`` (topic to the payload last published, kept by the caller), a
    message the broker already holds is skipped, and ``sent`` is updated after each publish
    returns. Returns the number of messages sent.
    """
    facilities, open_alarms = await load(conn)
    messages = discovery_messages(facilities, prefix=prefix) + state_messages(facilities, open_alarms)
    count = 0
    for topic, payload in messages:
        if sent is not None and sent.get(topic) == payload:
            continue
        await publish(topic, payload)
        if sent is not None:
            sent[topic] = payload
        count += 1
    return count


class Announcer:
    """Keeps Home Assistant's retained messages in step with the alarms, for one publisher.

    ``await announcer.sync(conn, publish, session=..., changed=...)`` after each round of alarm
    changes. It sends everything the first time and whenever ``session`` differs from the last
    call (a new broker connection: a broker restarted without persistence has lost its
    retained messages). After that it sends only when alarms ``changed``, and only the messages
    that differ. A sync that fails (the broker went away) is due again at the next call.
    """

    def __init__(self, *, prefix: str = DISCOVERY_PREFIX) -> None:
        self._prefix = prefix
        self._sent: dict[str, bytes] = {}
        self._session: object = None
        self._due = True

    async def sync(
        self, conn: AsyncConnection[Any], publish: Publish, *, session: object, changed: bool
    ) -> int:
        if session != self._session:
            self._sent.clear()
            self._session = session
            self._due = True
        self._due = self._due or changed
        if not self._due:
            return 0
        count = await sync(conn, publish, prefix=self._prefix, sent=self._sent)
        self._due = False
        return count
