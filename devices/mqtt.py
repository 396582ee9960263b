"""MQTT transport help shared by the hub and the simulators.

``MqttEndpoint`` is a broker address parsed from ``mqtt://user:pass@host:port`` (``mqtts://`` for
TLS, verified against the system's CAs or a given CA file).
``BufferedClient`` is paho-mqtt with a faster read path; everything else is paho's.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # PEM file of the CA that signed the broker's certificate (a private CA); None: the
    # system's trusted CAs. The broker's host name is always checked against its certificate.
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str, *, ca_file: str | None = None) -> MqttEndpoint:
        """``mqtt://user:pass@host:port``, or ``mqtts://`` for TLS (default ports 1883 and 8883)."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=ca_file,
        )

    @property
    def url(self) -> str:
        """The address without credentials, fit to print."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def client_id(self, anonymous: str) -> str:
        """The MQTT client id to connect with: the account's own name when there is one.

        A broker secured as docs/deployment.md describes ties each account to its name as
        client id (dynsec refuses any other; a password-file broker substitutes it), so that
        nobody can take over another's session; ``anonymous`` is used without an account.
        """
        return self.username if self.username is not None else anonymous

    def configure(self, client: paho.Client) -> None:
        """Give a paho client this endpoint's credentials, and TLS for ``mqtts://``."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, cert_reqs=ssl.CERT_REQUIRED)


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
