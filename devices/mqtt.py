"""MQTT transport help shared by the hub and the simulators.

``MqttEndpoint`` is a broker address parsed from ``mqtt://user:pass@host:port`` (``mqtts://`` for
TLS, verified against the system's CAs or a given CA file).
``BufferedClient`` is paho-mqtt with a faster read path (``devices._paho``, where every use
of paho's private internals is fenced); everything else is paho's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho

from devices._paho import BufferedClient, PausableClient

__all__ = ["BufferedClient", "MqttEndpoint", "PausableClient"]


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
