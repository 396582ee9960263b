"""The session holds at most ``receive_maximum`` unacknowledged messages, whatever the broker does.

Mosquitto 2.0 lets a client that acknowledges in order receive far more than its Receive
Maximum (docs/architecture.md), so the bound comes from the session itself: it stops
reading the socket at the limit. These tests queue many times the limit in a real broker,
drain it with a consumer slower than the broker, and check the bound, that every message
arrives exactly once, and that a long pause does not cost the connection.
"""

from __future__ import annotations

import asyncio
import time

from devices.mqtt import MqttEndpoint
from hub.mqtt import Inbound, MqttSession
from tests.support import Publisher, wait_until

LIMIT = 300
BATCH = 100
TOTAL = 20 * LIMIT


def _session(url: str, *, keepalive_s: int = 30) -> MqttSession:
    return MqttSession(
        MqttEndpoint.from_url(url),
        "backpressure-hub",
        ["bp/#"],
        receive_maximum=LIMIT,
        keepalive_s=keepalive_s,
    )


def _publish_backlog(url: str, total: int) -> None:
    """Queue ``total`` QoS 1 messages for the session; returns once the broker has them all."""
    pub = Publisher(url, client_id="backpressure-publisher")
    for i in range(total):
        pub.publish(f"bp/{i % 10}", str(i).encode())
    pub.wait_all(120)
    pub.close()


async def _drain(mqtt: MqttSession, total: int) -> tuple[list[int], int]:
    """Take, "commit" (a pause) and acknowledge until ``total`` messages have been taken.

    Returns the ids in arrival order and the most messages held at any check: those waiting
    in the session plus those in our hands, i.e. received and not yet acknowledged.
    """
    seen: list[int] = []
    most_held = 0
    while len(seen) < total:
        batch: list[Inbound] = await mqtt.next_batch(BATCH, timeout=30)
        assert batch, f"nothing more after {len(seen)} messages"
        # Slower than the broker: paho's thread gets time to read whatever it would.
        await asyncio.sleep(0.02)
        most_held = max(most_held, mqtt.pending + len(batch), mqtt.held)
        seen.extend(int(m.payload) for m in batch)
        mqtt.ack(batch)
    return seen, most_held


def test_a_backlog_far_beyond_the_limit_is_held_at_most_limit_at_a_time(broker):
    async def run() -> tuple[list[int], int, MqttSession]:
        async with _session(broker.url) as mqtt:
            assert await mqtt.wait_connected(10)
            _publish_backlog(broker.url, TOTAL)
            seen, most_held = await _drain(mqtt, TOTAL)
            # Anything beyond TOTAL (a redelivery) would be waiting by now.
            extra = await mqtt.next_batch(BATCH, timeout=1.0)
            seen.extend(int(m.payload) for m in extra)
            return seen, most_held, mqtt

    seen, most_held, mqtt = asyncio.run(run())
    # The session checks before reading each packet, so the bound is exact: no slack.
    # Without it, Mosquitto 2.0.11 sends the whole backlog after the first acknowledgements.
    assert most_held <= LIMIT
    assert most_held > LIMIT - BATCH, "the consumer should have fallen behind the broker"
    assert sorted(seen) == list(range(TOTAL)), "every message exactly once"
    assert (mqtt.connects, mqtt.disconnects) == (1, 1)  # the one disconnect is our own, at close


def test_a_pause_longer_than_the_keepalive_keeps_the_connection(broker):
    # With nothing acknowledged for three keepalive periods the session reads nothing, so the
    # broker's PINGRESP stays unread; the broker still hears our PINGREQs and keeps us, and
    # paho must not take our own silence for a dead broker.
    keepalive_s = 2

    async def run() -> tuple[list[int], int, MqttSession]:
        async with _session(broker.url, keepalive_s=keepalive_s) as mqtt:
            assert await mqtt.wait_connected(10)
            _publish_backlog(broker.url, 3 * LIMIT)
            wait_until(lambda: mqtt.held == LIMIT, 30, "the session to reach its limit")
            first = await mqtt.next_batch(LIMIT, timeout=10)
            await asyncio.to_thread(time.sleep, 3 * keepalive_s)  # the database is away
            assert mqtt.connected
            mqtt.ack(first)
            rest, most_held = await _drain(mqtt, 3 * LIMIT - len(first))
            return [int(m.payload) for m in first] + rest, most_held, mqtt

    seen, most_held, mqtt = asyncio.run(run())
    assert most_held <= LIMIT
    assert sorted(seen) == list(range(3 * LIMIT))
    assert mqtt.connects == 1, "the pause cost the connection"
