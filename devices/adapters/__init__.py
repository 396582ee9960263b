"""Adapters: foreign ecosystems mapped onto the v1 message contract at the hub's edge.

- ``Zigbee2Mqtt``: Zigbee devices behind Zigbee2MQTT (``devices/adapters/zigbee2mqtt.py``);
- ``ChirpStack``: LoRaWAN devices behind a ChirpStack v4 network server
  (``devices/adapters/chirpstack.py``).

An adapter takes a topic and payload and returns what they mean as v1 values: zero or more
``Message``s, and a ``Rejected`` (quarantined with its reason) when something was wrong.
It never raises. It knows nothing of the database: it is given ``lookup``, the registry's
map from a foreign address (a Zigbee friendly name or IEEE address, a LoRaWAN DevEUI) to
the registered ankang device. See docs/integrations.md, and ``_common`` for how sequence
numbers are handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from devices.adapters._common import AliasKey, Lookup, Scheme
from devices.adapters.chirpstack import ChirpStack
from devices.adapters.zigbee2mqtt import Zigbee2Mqtt, kind_from_exposes
from devices.contract import Message, Rejected

__all__ = [
    "Adapter",
    "Adapters",
    "AliasKey",
    "ChirpStack",
    "Lookup",
    "Scheme",
    "Zigbee2Mqtt",
    "kind_from_exposes",
]


class Adapter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def subscriptions(self) -> tuple[str, ...]: ...

    def handles(self, topic: str) -> bool: ...

    def keys(self, topic: str) -> tuple[AliasKey, ...]: ...

    def adapt(self, topic: str, payload: bytes, received: datetime) -> list[Message | Rejected]: ...


class Adapters:
    """The adapters a hub runs, chosen by topic (the first that handles it)."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self._adapters = tuple(adapters)

    def __bool__(self) -> bool:
        return bool(self._adapters)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(s for a in self._adapters for s in a.subscriptions)

    def for_topic(self, topic: str) -> Adapter | None:
        for adapter in self._adapters:
            if adapter.handles(topic):
                return adapter
        return None
