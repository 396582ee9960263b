"""Foreign addresses in the registry and the hub's cache, against a real database."""

from __future__ import annotations

import asyncio

import psycopg

from devices.registry import Registry, parse_facility_yaml
from hub.registry import RegistryCache
from hub.storage import Database
from tests.support import rows

FILE = """
devices:
  - {id: smoke-201, kind: smoke_detector, facility: care-1, room: kitchen,
     zigbee: {friendly_name: kitchen_smoke, ieee: "0x00158d0001a2b3c4"}}
  - {id: climate-103, kind: motion_sensor, facility: care-1, lorawan: {dev_eui: a84041000181c061}}
"""


async def apply_async(url: str, text: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Registry(conn).apply(parse_facility_yaml(text))


def apply(url: str, text: str) -> None:
    asyncio.run(apply_async(url, text))


def aliases(url: str) -> list[tuple[str, str, str]]:
    return rows(url, "SELECT scheme, value, device_id FROM device_aliases ORDER BY scheme, value")


def test_aliases_follow_the_file(database):
    apply(database, FILE)
    assert aliases(database) == [
        ("lorawan_dev_eui", "a84041000181c061", "climate-103"),
        ("zigbee_ieee", "0x00158d0001a2b3c4", "smoke-201"),
        ("zigbee_name", "kitchen_smoke", "smoke-201"),
    ]
    # renamed in Zigbee2MQTT: the new name replaces the old one, the IEEE address stays
    apply(database, FILE.replace("kitchen_smoke", "kitchen/smoke"))
    assert ("zigbee_name", "kitchen/smoke", "smoke-201") in aliases(database)
    assert ("zigbee_name", "kitchen_smoke", "smoke-201") not in aliases(database)
    # a replacement device takes over the DevEUI of the one it replaces
    apply(
        database,
        "devices:\n  - {id: climate-103b, kind: motion_sensor, facility: care-1,"
        " lorawan: {dev_eui: A84041000181C061}}\n",
    )
    assert ("lorawan_dev_eui", "a84041000181c061", "climate-103b") in aliases(database)
    # and deleting a device deletes its addresses
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM devices WHERE id = 'smoke-201'")
    assert [a for a in aliases(database) if a[2] == "smoke-201"] == []


def test_cache_resolves_aliases_and_follows_changes(database):
    apply(database, FILE)

    async def run() -> None:
        async with Database(database) as db:
            cache = RegistryCache(db, database)
            await cache.load_all()
            smoke = cache.alias("zigbee_ieee", "0x00158d0001a2b3c4")
            assert smoke is not None
            assert (smoke.id, smoke.kind) == ("smoke-201", "smoke_detector")
            assert cache.alias("lorawan_dev_eui", "a84041000181c061").id == "climate-103"  # type: ignore[union-attr]
            assert cache.alias("zigbee_name", "nobody") is None

            # registered after the cache was loaded: found by a look-up, as device ids are
            await apply_async(
                database,
                "devices:\n  - {id: sos-7, kind: sos_button, facility: care-1,"
                " zigbee: {ieee: '0x54ef441000a1b2c3'}}\n",
            )
            await cache.resolve_aliases([("zigbee_ieee", "0x54ef441000a1b2c3"), ("zigbee_name", "ghost")])
            assert cache.alias("zigbee_ieee", "0x54ef441000a1b2c3").id == "sos-7"  # type: ignore[union-attr]
            assert cache.alias("zigbee_name", "ghost") is None

            # a change notified for one device reloads its addresses
            await apply_async(database, FILE.replace("kitchen_smoke", "hob_smoke"))
            await cache._reload_device("smoke-201")
            assert cache.alias("zigbee_name", "kitchen_smoke") is None
            assert cache.alias("zigbee_name", "hob_smoke").id == "smoke-201"  # type: ignore[union-attr]

    asyncio.run(run())
