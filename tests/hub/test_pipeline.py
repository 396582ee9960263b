"""The ingest pipeline without MQTT: a batch prepared while the previous one is uncommitted."""

from __future__ import annotations

import asyncio
import time

from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.mqtt import Inbound
from hub.registry import RegistryCache
from hub.storage import Database
from tests.support import now_ms, register, rows, scalar, telemetry


def _inbound(seq: int, ts_ms: int, mid: int) -> Inbound:
    return Inbound("ankang/v1/d1/telemetry", telemetry(seq, ts_ms, hr_bpm=60.0), mid, 1, time.time(), 1)


def test_redelivery_of_a_message_still_being_committed_is_not_quarantined(database):
    register(database, [("d1", "bed_sensor")])
    t = now_ms() - 60_000

    async def run() -> None:
        async with Database(database) as db:
            registry = RegistryCache(db, database)
            await registry.load_all()
            ingest = Ingestor(db, registry, HubMetrics())
            first = await ingest.prepare([_inbound(1, t, 1), _inbound(2, t + 1000, 2)])
            # the broker redelivers seq 2 before the first batch has been committed
            second = await ingest.prepare([_inbound(2, t + 1000, 3), _inbound(3, t + 2000, 4)])
            assert second.redelivered == 1
            assert second.quarantined == []
            await ingest.commit(first)
            await ingest.commit(second)
            # and once committed, a further redelivery is recognised from the database
            third = await ingest.prepare([_inbound(1, t, 5)])
            assert third.redelivered == 1
            assert third.quarantined == []

    asyncio.run(run())
    assert rows(database, "SELECT seq FROM messages ORDER BY seq") == [(1,), (2,), (3,)]
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
