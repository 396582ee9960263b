"""The hub's cached view of the device registry.

All registered devices are loaded at start. Registry writes send ``NOTIFY
ankang_registry`` with the device id, and the cache reloads that device; an empty payload,
sent after bulk changes, reloads everything. A message from an
id that is not cached triggers one database look-up; ids that are still unknown are
remembered for a few seconds, so that a flood from an unregistered device costs one query
per few seconds rather than one per message.

The cache also holds the devices' foreign addresses (table ``device_aliases``: Zigbee
friendly names and IEEE addresses, LoRaWAN DevEUIs), which the adapters resolve through
``alias``; they are reloaded with their device and looked up the same way when not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import cast

import psycopg

from devices import Device, Registry
from devices.adapters import AliasKey, Scheme
from hub.storage import Database

log = logging.getLogger(__name__)

NEGATIVE_TTL_S = 5.0


class RegistryCache:
    def __init__(self, db: Database, url: str) -> None:
        self._db = db
        self._url = url
        self._devices: dict[str, Device] = {}
        self._unknown_until: dict[str, float] = {}
        self._aliases: dict[AliasKey, str] = {}
        self._unknown_alias_until: dict[AliasKey, float] = {}

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def alias(self, scheme: Scheme, value: str) -> Device | None:
        """The device a foreign address belongs to (the adapters' ``lookup``)."""
        device_id = self._aliases.get((scheme, value))
        return None if device_id is None else self._devices.get(device_id)

    def __len__(self) -> int:
        return len(self._devices)

    def all(self) -> list[Device]:
        return list(self._devices.values())

    async def load_all(self) -> None:
        async with self._db.connection() as conn:
            registry = Registry(conn)
            devices = await registry.devices()
            aliases = await registry.aliases()
        self._devices = {d.id: d for d in devices}
        self._aliases = {_key(scheme, value): device_id for scheme, value, device_id in aliases}
        self._unknown_alias_until.clear()
        log.info("registry: %d devices, %d foreign addresses", len(self._devices), len(self._aliases))

    async def resolve_aliases(self, keys: Iterable[AliasKey]) -> None:
        """Look up foreign addresses that are not cached (and not recently found missing)."""
        now = time.monotonic()
        wanted = [
            k for k in set(keys) if k not in self._aliases and self._unknown_alias_until.get(k, 0.0) <= now
        ]
        if not wanted:
            return
        async with self._db.connection() as conn:
            registry = Registry(conn)
            found = await registry.aliases(wanted)
            owners = [d for _, _, d in found if d not in self._devices]
            for device in await registry.devices(owners) if owners else []:
                self._devices[device.id] = device
        for scheme, value, device_id in found:
            self._aliases[_key(scheme, value)] = device_id
        missing = set(wanted) - {(s, v) for s, v, _ in found}
        if len(self._unknown_alias_until) > 100_000:
            self._unknown_alias_until.clear()
        for key in missing:
            self._unknown_alias_until[key] = now + NEGATIVE_TTL_S

    async def _reload_device(self, device_id: str) -> None:
        self._unknown_until.pop(device_id, None)
        self._devices.pop(device_id, None)
        await self.resolve([device_id])
        async with self._db.connection() as conn:
            aliases = await Registry(conn).device_aliases(device_id)
        for key in [k for k, d in self._aliases.items() if d == device_id]:
            del self._aliases[key]
        for scheme, value in aliases:
            self._aliases[_key(scheme, value)] = device_id
            self._unknown_alias_until.pop(_key(scheme, value), None)

    async def resolve(self, device_ids: Iterable[str]) -> None:
        """Look up ids that are not cached (and not recently found missing)."""
        now = time.monotonic()
        wanted = [
            i for i in set(device_ids) if i not in self._devices and self._unknown_until.get(i, 0.0) <= now
        ]
        if not wanted:
            return
        async with self._db.connection() as conn:
            found = await Registry(conn).devices(wanted)
        for device in found:
            self._devices[device.id] = device
            self._unknown_until.pop(device.id, None)
        missing = set(wanted) - {d.id for d in found}
        if len(self._unknown_until) > 100_000:  # bound the memory a scan of random ids can take
            self._unknown_until.clear()
        for device_id in missing:
            self._unknown_until[device_id] = now + NEGATIVE_TTL_S

    async def listen(self, stop: asyncio.Event) -> None:
        """Follow registry changes until ``stop``; reconnects after database outages."""
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except psycopg.OperationalError:
                await _sleep_or_stop(stop, 2.0)
                continue
            try:
                async with conn:
                    await conn.execute("LISTEN ankang_registry")
                    # Changes made while we were not listening.
                    await self.load_all()
                    while not stop.is_set():
                        async for note in conn.notifies(timeout=1.0):
                            if not note.payload:  # a bulk change: reload everything
                                self._unknown_until.clear()
                                await self.load_all()
                                continue
                            await self._reload_device(note.payload)
            except psycopg.Error as exc:
                log.warning("registry listener lost the database: %s", exc)
                await _sleep_or_stop(stop, 2.0)


def _key(scheme: str, value: str) -> AliasKey:
    return cast(Scheme, scheme), value  # the table's CHECK keeps scheme to the three names


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
