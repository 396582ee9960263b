"""The hub's MQTT 5 session: persistent, QoS 1, acknowledged only after commit.

paho-mqtt runs its network loop in its own thread. Received messages are appended to a
buffer and the asyncio side is woken at most once per burst, so a busy stream costs one
wake-up per batch rather than one per message.

What the hub holds is bounded here, not by the broker. We advertise ``receive_maximum``
(MQTT 5 §3.1.2.11.3), but Mosquitto 2.0 does not keep to it once acknowledgements flow:
a PUBACK for the oldest message in flight moves up to a whole Receive Maximum of queued
messages into flight, so acknowledging in order, as the hub does, lets the broker send
its entire queue (docs/architecture.md). So the network thread stops reading the socket
while ``receive_maximum`` messages are taken and not yet released by ``ack``; TCP flow
control then leaves the rest with the broker, and reading resumes as batches commit.

Every message carries the *generation* of the connection it arrived on. After a reconnect
the broker redelivers whatever was unacknowledged, so an acknowledgement that belongs to
an earlier connection is dropped rather than sent: its packet id may already name
something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.mqtt import MqttEndpoint, PausableClient
from hub.errors import MqttError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as it came off the wire, not yet validated."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float  # hub wall clock, seconds since the epoch
    generation: int


class _HubClient(PausableClient):
    """A client that stops reading while the hub holds ``limit`` messages.

    A message is held from the moment paho hands it to ``on_message`` (``taken``, counted
    by the network thread) until the hub releases it after its commit (``released``,
    counted by the asyncio side); each counter has one writer, so neither needs a lock.
    The check sits in front of every packet, so at most ``limit`` messages are held; what
    the broker sends beyond that waits in our 64 KiB read buffer, the kernel's socket
    buffers and then the broker, which stops writing when TCP's window closes.
    """

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit = limit
        self.taken = 0
        self.released = 0

    @property
    def held(self) -> int:
        return self.taken - self.released

    def paused(self) -> bool:
        # Never before CONNACK: the packets that follow a reconnect must be read, and the
        # generation must change before anything is acknowledged on the new connection.
        return self.held >= self._limit and self.is_connected()

    def release(self, count: int) -> None:
        """The hub is done with ``count`` messages (asyncio side); wake a paused reader."""
        self.released += count
        self.wake_reader()


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class MqttSession:
    """A persistent MQTT 5 subscription. Use as ``async with MqttSession(...) as s``."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        client_id: str,
        topics: Sequence[str],
        *,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 20_000,
        keepalive_s: int = 30,
    ) -> None:
        self._endpoint = endpoint
        self._client_id = client_id
        self._topics = list(topics)
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._state = _State.NEW
        self._client: _HubClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer: deque[Inbound] = deque()
        self._ready = asyncio.Event()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = threading.Event()
        self.connects = 0
        self.disconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Messages received and not yet taken by ``next_batch``."""
        return len(self._buffer)

    @property
    def held(self) -> int:
        """Messages received and not yet passed to ``ack``: at most ``receive_maximum``."""
        return self._client.held if self._client is not None else 0

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise MqttError(f"an MQTT session cannot be reopened (state {self._state.value})")
        self._loop = asyncio.get_running_loop()
        client = _HubClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
            limit=self._receive_maximum,
        )
        self._endpoint.configure(client)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        client.connect_async(
            self._endpoint.host,
            self._endpoint.port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client = client
        client.loop_start()
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        client = self._client
        assert client is not None  # noqa: S101 - set in __aenter__
        # Disconnect normally: the broker keeps the session (and everything unacknowledged)
        # for session_expiry_s, and redelivers it when the hub comes back.
        await asyncio.to_thread(self._shutdown_client, client)

    @staticmethod
    def _shutdown_client(client: paho.Client) -> None:
        client.disconnect()
        client.loop_stop()

    async def wait_connected(self, timeout: float) -> bool:
        return await asyncio.to_thread(self._connected.wait, timeout)

    # -- paho thread -------------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the hub: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        log.info(
            "connected to %s:%s (session present: %s)",
            self._endpoint.host,
            self._endpoint.port,
            getattr(flags, "session_present", None),
        )
        # Subscribing again on a resumed session is harmless and covers an expired one.
        result, _ = client.subscribe([(t, 1) for t in self._topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", result)
        self._connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        self.disconnects += 1
        if self._state is _State.OPEN:
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        client.taken += 1  # type: ignore[attr-defined]  # a _HubClient; see its docstring
        self._buffer.append(
            Inbound(topic, bytes(msg.payload), msg.mid, msg.qos, time.time(), self._generation)
        )
        if not self._wake_pending:
            self._wake_pending = True
            assert self._loop is not None  # noqa: S101
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(self._wake)

    # -- asyncio side ------------------------------------------------------------------

    def _wake(self) -> None:
        self._wake_pending = False
        self._ready.set()

    async def next_batch(
        self, max_size: int, timeout: float | None = None, linger: float = 0.0
    ) -> list[Inbound]:
        """Wait for one message, then up to ``linger`` seconds for more; take up to ``max_size``.

        At high load batches also grow by themselves while the previous one is being
        committed. Returns [] on timeout.
        """
        if self._state is not _State.OPEN:
            raise MqttError("session is not open")
        while not self._buffer:
            self._ready.clear()
            if self._buffer:
                break
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        if linger > 0 and len(self._buffer) < max_size:
            await asyncio.sleep(linger)
        take = min(max_size, len(self._buffer))
        popleft = self._buffer.popleft
        return [popleft() for _ in range(take)]

    def ack(self, messages: Sequence[Inbound]) -> int:
        """Acknowledge committed messages; returns how many acks were sent.

        Every message taken by ``next_batch`` must come back here once, whatever became of
        it: this also releases it from the bound on what the session holds. Acknowledgements
        from an earlier connection are dropped (see the module docstring), but the messages
        are released all the same.
        """
        client = self._client
        if client is None or self._state is not _State.OPEN:
            return 0
        generation = self._generation
        mids = [m.mid for m in messages if m.qos == 1 and m.generation == generation]
        client.ack_many(mids)  # queued before the release, so a resumed reader sends them first
        client.release(len(messages))
        return len(mids)
