"""The hub's cached view of the device registry.

All registered devices are loaded at start. Registry writes send ``NOTIFY
ankang_registry`` with the device id, and the cache reloads that device; an empty payload,
sent after bulk changes, reloads everything. A message from an
id that is not cached triggers one database look-up; ids that are still unknown are
remembered for a few seconds, so that a flood from an unregistered device costs one query
per few seconds rather than one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import psycopg

from devices import Device, Registry
from hub.storage import Database

log = logging.getLogger(__name__)

NEGATIVE_TTL_S = 5.0


class RegistryCache:
    def __init__(self, db: Database, url: str) -> None:
        self._db = db
        self._url = url
        self._devices: dict[str, Device] = {}
        self._unknown_until: dict[str, float] = {}

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def __len__(self) -> int:
        return len(self._devices)

    def all(self) -> list[Device]:
        return list(self._devices.values())

    async def load_all(self) -> None:
        async with self._db.connection() as conn:
            devices = await Registry(conn).devices()
        self._devices = {d.id: d for d in devices}
        log.info("registry: %d devices", len(self._devices))

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
                            self._unknown_until.pop(note.payload, None)
                            self._devices.pop(note.payload, None)
                            await self.resolve([note.payload])
            except psycopg.Error as exc:
                log.warning("registry listener lost the database: %s", exc)
                await _sleep_or_stop(stop, 2.0)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
