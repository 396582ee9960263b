"""Every use of paho-mqtt's private internals, in one place, for one paho version.

paho-mqtt reads a packet's fixed header one byte per ``recv`` and handles one packet per
``select``, and it has no way to stop reading while its user holds too many messages. Both
matter to the hub (docs/architecture.md), so two small subclasses override paho's private
socket hooks:

- ``BufferedClient`` reads 64 KiB at a time (``_sock_recv``, ``loop_read``) and sends many
  PUBACKs in one write (``_packet_queue``);
- ``PausableClient`` stops reading while ``paused()`` says so (``_packet_read``, ``_loop``),
  keeping PUBACKs and keepalive going (``_sockpairR``, ``_sockpairW``, ``_msgtime_mutex``,
  ``_last_bytes_received``, ``_ping_t``).

These names are not paho's API and may change in any release, so paho is pinned to exactly
``PAHO_VERSION`` and this module refuses to load with any other; the canary test
(tests/devices/test_paho_privates.py) fails when a name or a signature it relies on moves.
What replacing them would take is in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import select
import struct
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

PAHO_VERSION: Final = "2.2.0"

if version("paho-mqtt") != PAHO_VERSION:  # pragma: no cover - the pin keeps it from happening
    raise ImportError(
        f"ankang's MQTT read path was written for paho-mqtt {PAHO_VERSION} and relies on its private "
        f"internals; paho-mqtt {version('paho-mqtt')} is installed (see devices/_paho.py)"
    )

# The private members this module uses, for the canary test: methods with their parameters,
# then attributes every client has once constructed.
PRIVATE_METHODS: Final = {
    "_sock_recv": ("self", "bufsize"),
    "_packet_read": ("self",),
    "_loop": ("self", "timeout"),
    "_loop_rc_handle": ("self", "rc"),
    "_packet_queue": ("self", "command", "packet", "mid", "qos", "info"),
}
PRIVATE_ATTRIBUTES: Final = (
    "_sock",
    "_sockpairR",
    "_sockpairW",
    "_msgtime_mutex",
    "_last_bytes_received",
    "_ping_t",
)


class BufferedClient(paho.Client):
    """paho, reading the socket in 64 KiB chunks and handling every packet they hold.

    Stock paho reads a packet's fixed header one byte per ``recv`` and handles one packet
    per ``select``; profiling the hub showed that loop as its largest cost. This subclass
    overrides two of paho's socket hooks (``_sock_recv``, ``loop_read``) and adds
    ``ack_many``.
    """

    _READ_CHUNK = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._READ_CHUNK)  # raises BlockingIOError when empty
            if not data:
                return data  # the peer closed the connection
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        chunk = self._rbuf[self._rpos : end]
        self._rpos = min(end, len(self._rbuf))
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # Until the socket has nothing more: whatever stays in the buffer would otherwise
        # wait for the next select(), which does not see it. Writes (acks) are not starved
        # for long: the hub's session stops reading at its own bound of unacknowledged
        # messages (hub/mqtt.py), because Mosquitto 2.0 does not hold to Receive Maximum.
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if rc > 0:
                return self._loop_rc_handle(rc)

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (``manual_ack``) with one write for the lot.

        ``ack`` queues one PUBACK at a time and wakes paho's network thread for each. Here
        the PUBACKs (MQTT 5 §3.4: fixed header, remaining length 2, packet id; reason code
        omitted for success) go out as one buffer through paho's own queue.
        """
        if not mids:
            return
        packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
        self._packet_queue(paho.PUBACK, packet, 0, 1)


_PUBACK = struct.Struct("!BBH")


class PausableClient(BufferedClient):
    """``BufferedClient`` that stops reading the socket while ``paused()`` is true.

    Subclasses say when (the hub: while it holds its bound of unacknowledged messages);
    ``wake_reader`` is called when that may have changed. While paused, PUBACKs still go out
    and the connection is kept alive; TCP flow control leaves what the broker sends beyond
    that in our read buffer, the kernel's socket buffers and then the broker.
    """

    def paused(self) -> bool:
        return False

    def wake_reader(self) -> None:
        """Wake paho's network thread (from any thread), so a paused reader looks again."""
        wake = self._sockpairW
        if wake is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                wake.send(b"\0")

    def _packet_read(self) -> MQTTErrorCode:
        if self.paused():
            return MQTTErrorCode.MQTT_ERR_AGAIN  # loop_read stops as if the socket were empty
        return super()._packet_read()

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        """One turn of paho's network loop (``loop_forever`` calls this)."""
        if not self.paused():
            if self._rsock is self._sock and self._rpos < len(self._rbuf):
                # Packets read before a pause and not handled yet: select() cannot see them.
                rc = self.loop_read()
                if rc or self._sock is None:
                    return rc
            return super()._loop(timeout)
        sock, wake = self._sock, self._sockpairR
        if sock is None or wake is None:
            return super()._loop(timeout)
        # The silence is ours, not the broker's: its PINGRESP waits unread behind the
        # messages we are not reading, so paho must not count the pause against the broker
        # (it would drop the connection after two keepalive periods). The broker still
        # hears from us: PUBACKs go out, and loop_misc sends PINGREQ when they do not.
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()  # paho's time_func
        self._ping_t = 0
        try:
            readable, writable, _ = select.select([wake], [sock] if self.want_write() else [], [], timeout)
        except (TypeError, ValueError, OSError):
            return super()._loop(0.0)  # paho handles a socket closed under it
        if readable:
            with contextlib.suppress(BlockingIOError):
                wake.recv(10000)
        if readable or writable:
            rc = self.loop_write()
            if rc or self._sock is None:
                return rc
        return self.loop_misc()
