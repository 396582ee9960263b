"""Broker security against a real Mosquitto 2: per-device accounts and ACLs, TLS, revocation.

Every test runs twice, once with each way provisioning reaches the broker: password and ACL
files reloaded with SIGHUP (``passwd``), and the dynamic-security plugin (``dynsec``). The
broker has a plain listener and a TLS one with a throwaway CA; devices and the hub connect
over TLS, the provisioner's admin connection (dynsec) over the plain one.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices import DeviceSpec
from devices.mqtt import MqttEndpoint
from devices.provisioning import (
    BridgeTopics,
    BrokerAuth,
    BrokerAuthError,
    Credentials,
    Dynsec,
    PasswdFiles,
    Provisioner,
    ProvisioningError,
    verify_hash,
)
from lab.localservices import MosquittoServer, free_port
from tests.conftest import _tmpdir, run_cli
from tests.hub.test_adapters_e2e import CLIMATE, FACILITY, PAYLOADS, apply, iso, recorded
from tests.support import HubProcess, now_ms, rows, scalar, telemetry, wait_until

T = TypeVar("T")

# MQTT 5 §2.4 reason codes
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
BAD_CREDENTIALS = 0x86
NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""
    d = _tmpdir("ankang-pki-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "2",
        "-subj", "/CN=ankang test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=localhost"
    )
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    )
    _openssl(
        "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-out", str(d / "server.pem"), "-days", "2", "-extfile", str(d / "server.ext"),
    )  # fmt: skip
    return Pki(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key")


@pytest.fixture(params=["passwd", "dynsec"])
def secure_broker(request: pytest.FixtureRequest, pki: Pki) -> Iterator[MosquittoServer]:
    """A Mosquitto with authentication, ACLs and a TLS listener, on free ports."""
    server = MosquittoServer(
        _tmpdir(f"ankang-mqtt-{request.param}-"),
        auth=request.param,
        tls_port=free_port(),
        tls_ca=pki.ca,
        tls_cert=pki.cert,
        tls_key=pki.key,
    )
    server.start()
    yield server
    server.stop()


def broker_auth(server: MosquittoServer) -> BrokerAuth:
    if server.auth == "passwd":
        return PasswdFiles(server.password_file, server.acl_file, server.pid_file)
    return Dynsec(MqttEndpoint.from_url(server.admin_url))


def provisioning(database: str, server: MosquittoServer, action: Callable[[Provisioner], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await psycopg.AsyncConnection.connect(database, autocommit=True)
        async with conn:
            return await action(Provisioner(conn, broker_auth(server), server.tls_url))

    return asyncio.run(run())


def provision(
    database: str, server: MosquittoServer, device_id: str, kind: str = "smoke_detector"
) -> Credentials:
    spec = DeviceSpec(id=device_id, kind=kind, facility="fac-1")  # type: ignore[arg-type]
    return provisioning(database, server, lambda p: p.provision(device_id, spec))


def cli_env(database: str, server: MosquittoServer, pki: Pki) -> dict[str, str]:
    env = {
        "ANKANG_DATABASE_URL": database,
        "ANKANG_MQTT_URL": server.tls_url,
        "ANKANG_MQTT_CA_FILE": str(pki.ca),
        "ANKANG_BROKER_AUTH": server.auth,
    }
    if server.auth == "passwd":
        env |= {
            "ANKANG_BROKER_PASSWORD_FILE": str(server.password_file),
            "ANKANG_BROKER_ACL_FILE": str(server.acl_file),
            "ANKANG_BROKER_PID_FILE": str(server.pid_file),
        }
    else:
        env["ANKANG_BROKER_ADMIN_URL"] = server.admin_url
    return env


def secret_of(cli_output: str) -> str:
    return next(line.split()[1] for line in cli_output.splitlines() if line.startswith("secret "))


class Device:
    """A paho MQTT 5 client over TLS that records every CONNACK, PUBACK, SUBACK and disconnect.

    It does not reconnect on its own: a test decides when to try again.
    """

    def __init__(
        self,
        server: MosquittoServer,
        pki: Pki,
        username: str | None,
        secret: str | None,
        client_id: str | None = None,
        clean_start: bool = False,
    ) -> None:
        self.client_id = client_id or username or "anonymous"
        self.clean_start = clean_start
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        MqttEndpoint.from_url(server.tls_url, ca_file=str(pki.ca)).configure(self.client)
        if username is not None:
            self.client.username_pw_set(username, secret)
        self.port = server.tls_port
        self.connack: ReasonCode | None = None
        self.disconnects: list[str] = []
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.received: list[str] = []
        self._connacked = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.received.append(msg.topic)

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = reason
        self._connacked.set()

    def _on_disconnect(self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.disconnects.append(str(reason))
        client.loop_stop()  # from paho's own thread this only ends the loop: no reconnecting

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.pubacks[mid] = reason.value

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            self.subacks[mid] = [r.value for r in reasons]

    def connect(self) -> int:
        """Connect and return the CONNACK reason code (0 when accepted)."""
        assert self.port is not None
        self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=self.clean_start)
        self.client.loop_start()
        assert self._connacked.wait(10), "no CONNACK"
        assert self.connack is not None
        return int(self.connack.value)

    @property
    def connected(self) -> bool:
        """Accepted, and not disconnected since (paho's own flag lags a server's DISCONNECT)."""
        return self.connack is not None and not self.connack.is_failure and not self.disconnects

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """QoS 1; returns the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self.pubacks, 10, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        """Returns the SUBACK reason code (the granted QoS, or a failure code)."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return wait_until(lambda: self.subacks.get(mid), 10, f"SUBACK for {topic}")[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # No cycle through the callbacks: the client is freed, and closes its sockets, at
        # once rather than whenever the garbage collector gets to it.
        self.client.on_connect = self.client.on_disconnect = self.client.on_message = None
        self.client.on_publish = self.client.on_subscribe = None


@pytest.fixture
def devices() -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(*args: Any) -> Device:
        made.append(Device(*args))
        return made[-1]

    yield make
    for device in made:
        device.close()


@pytest.fixture
def hub(secure_broker: MosquittoServer, pki: Pki, database: str) -> Iterator[HubProcess]:
    """The real hub, with its own service account, over TLS verified against the test CA."""
    creds = provisioning(database, secure_broker, lambda p: p.service_account("ankang-hub", "hub"))
    url = f"mqtts://{creds.username}:{creds.secret}@127.0.0.1:{secure_broker.tls_port}"
    proc = HubProcess(
        mqtt_url=url,
        database_url=database,
        metrics_port=free_port(),
        extra_env={"ANKANG_MQTT_CA_FILE": str(pki.ca), "ANKANG_DETECTION": "false"},
    )
    proc.start()
    yield proc
    proc.stop()


def test_a_device_publishes_and_subscribes_only_under_its_own_id(secure_broker, pki, database, devices, hub):
    """Over TLS the hub stores a device's telemetry, and nothing the device sent as another."""
    run_cli(
        "devices", "provision", "smoke-a", "--kind", "smoke_detector", "--facility", "fac-1", "--room", "101",
        env=cli_env(database, secure_broker, pki),
    )  # fmt: skip
    out = run_cli(
        "devices", "provision", "smoke-b", "--kind", "smoke_detector", "--facility", "fac-1",
        env=cli_env(database, secure_broker, pki),
    ).stdout  # fmt: skip
    assert "subscribe  ankang/v1/smoke-b/command" in out
    assert "publish    ankang/v1/smoke-b/#" in out
    secret_a = secret_of(
        run_cli("devices", "rotate", "smoke-a", env=cli_env(database, secure_broker, pki)).stdout
    )

    a = devices(secure_broker, pki, "smoke-a", secret_a)
    assert a.connect() == SUCCESS
    t = now_ms() - 10_000
    assert a.publish("ankang/v1/smoke-a/telemetry", telemetry(1, t, temp_c=21.5)) == SUCCESS
    # Mosquitto 2 answers an ACL denial at QoS 1 with PUBACK "not authorized" (MQTT 5 §3.4.2.1)
    assert a.publish("ankang/v1/smoke-b/telemetry", telemetry(1, t, temp_c=99.0)) == NOT_AUTHORIZED
    assert (
        a.publish("ankang/v1/smoke-b/event", b'{"ts": 1, "seq": 2, "event": "smoke_alarm"}') == NOT_AUTHORIZED
    )
    assert a.publish("ankang/v1/alerts/fac-1/fire", b"{}") == NOT_AUTHORIZED
    assert a.publish("ankang/v1/smoke-a/telemetry", telemetry(2, t + 1000, temp_c=22.5)) == SUCCESS
    assert a.subscribe("ankang/v1/smoke-a/command") == 1  # granted QoS 1
    # dynsec refuses the subscription; with an acl_file Mosquitto 2 grants it and checks
    # "read" for every message it would deliver, so either way nothing arrives
    assert a.subscribe("ankang/v1/smoke-b/command") in expected_suback(secure_broker)
    assert a.subscribe("ankang/v1/+/telemetry") in expected_suback(secure_broker)
    api = provisioning(database, secure_broker, lambda p: p.service_account("ankang-api", "api"))
    console = devices(secure_broker, pki, "ankang-api", api.secret)
    assert console.connect() == SUCCESS
    assert console.publish("ankang/v1/smoke-b/command", b'{"cmd": "test"}') == SUCCESS
    assert console.publish("ankang/v1/smoke-a/command", b'{"cmd": "test"}') == SUCCESS
    assert console.publish("ankang/v1/smoke-a/telemetry", b"{}") == NOT_AUTHORIZED
    wait_until(lambda: a.received, 10, "smoke-a's own command")
    assert a.connected  # refusals do not cost the device its connection
    # The broker had routed both commands to every subscriber before smoke-a received its
    # own, and it hands the hub its messages in order: once this last reading is stored, the
    # refused publishes and the commands would have been stored or quarantined too had
    # they reached the hub.
    assert a.publish("ankang/v1/smoke-a/telemetry", telemetry(3, t + 2000, temp_c=23.5)) == SUCCESS
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM readings WHERE device_id = 'smoke-a'") == 3,
        30,
        f"smoke-a's readings (hub log: {hub.log()[-1500:]})",
    )
    assert rows(database, "SELECT value FROM readings WHERE device_id = 'smoke-a' ORDER BY ts") == [
        (21.5,),
        (22.5,),
        (23.5,),
    ]
    assert scalar(database, "SELECT count(*) FROM messages WHERE device_id <> 'smoke-a'") == 0
    assert scalar(database, "SELECT count(*) FROM events") == 0
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0  # commands never reach the hub
    # commands to others never reached it; the broker sends one connection's messages in order
    assert a.received == ["ankang/v1/smoke-a/command"]


def expected_suback(server: MosquittoServer) -> tuple[int, ...]:
    return (1,) if server.auth == "passwd" else (NOT_AUTHORIZED,)


def test_anonymous_clients_and_wrong_secrets_are_refused(secure_broker, pki, database, devices):
    creds = provision(database, secure_broker, "sos-1", "sos_button")
    assert devices(secure_broker, pki, None, None).connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert devices(secure_broker, pki, "sos-1", "not-the-secret").connect() in (
        BAD_CREDENTIALS,
        NOT_AUTHORIZED,
    )
    assert devices(secure_broker, pki, "sos-2", creds.secret).connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert devices(secure_broker, pki, "sos-1", creds.secret).connect() == SUCCESS

    # the plain listener asks for the same credentials
    plain = paho.Client(CallbackAPIVersion.VERSION2, client_id="plain-anon", protocol=paho.MQTTv5)
    refused: list[int] = []
    plain.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason.value)
    plain.connect("127.0.0.1", secure_broker.port)
    plain.loop_start()
    try:
        wait_until(lambda: refused, 10, "CONNACK on the plain listener")
    finally:
        plain.disconnect()
        plain.loop_stop()
    assert refused[0] in (BAD_CREDENTIALS, NOT_AUTHORIZED)


def test_revocation_ends_the_live_connection_and_refuses_the_next(secure_broker, pki, database, devices):
    creds = provision(database, secure_broker, "wear-1", "wearable")
    other = provision(database, secure_broker, "wear-2", "wearable")
    device = devices(secure_broker, pki, "wear-1", creds.secret)
    bystander = devices(secure_broker, pki, "wear-2", other.secret)
    assert device.connect() == SUCCESS
    assert bystander.connect() == SUCCESS

    provisioning(database, secure_broker, lambda p: p.revoke("wear-1"))

    wait_until(lambda: device.disconnects, 10, "the broker to close the revoked device's connection")
    assert not device.connected
    assert devices(secure_broker, pki, "wear-1", creds.secret).connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert bystander.connected and not bystander.disconnects
    assert bystander.publish("ankang/v1/wear-2/telemetry", telemetry(1, now_ms())) in (
        SUCCESS,
        NO_MATCHING_SUBSCRIBERS,
    )
    state = "SELECT secret_hash IS NULL, revoked_at IS NOT NULL FROM broker_accounts WHERE username = %s"
    assert rows(database, state, ("wear-1",)) == [(True, True)]
    with pytest.raises(ProvisioningError, match="revoked"):
        provisioning(database, secure_broker, lambda p: p.rotate("wear-1"))

    # provisioning it again gives it a new secret; the old one stays refused
    again = provisioning(database, secure_broker, lambda p: p.provision("wear-1"))
    assert again.secret != creds.secret
    assert devices(secure_broker, pki, "wear-1", again.secret).connect() == SUCCESS
    assert devices(secure_broker, pki, "wear-1", creds.secret).connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED)


def test_rotation_replaces_the_secret(secure_broker, pki, database, devices):
    old = provision(database, secure_broker, "bed-1", "bed_sensor")
    connected = devices(secure_broker, pki, "bed-1", old.secret)
    assert connected.connect() == SUCCESS

    new = provisioning(database, secure_broker, lambda p: p.rotate("bed-1"))

    assert new.secret != old.secret
    # the connection made with the old secret does not outlive it
    wait_until(lambda: connected.disconnects, 10, "the connection with the old secret to be closed")
    assert devices(secure_broker, pki, "bed-1", new.secret).connect() == SUCCESS
    assert devices(secure_broker, pki, "bed-1", old.secret).connect() in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    stored = scalar(database, "SELECT secret_hash FROM broker_accounts WHERE username = 'bed-1'")
    assert new.secret not in stored
    assert verify_hash(new.secret, stored) and not verify_hash(old.secret, stored)


def test_provisioning_another_device_keeps_connected_devices_connected(secure_broker, pki, database, devices):
    first = provision(database, secure_broker, "door-1", "door_contact")
    device = devices(secure_broker, pki, "door-1", first.secret)
    assert device.connect() == SUCCESS
    assert device.subscribe("ankang/v1/door-1/command") == 1

    # passwd: the files are rewritten and the broker reloaded; dynsec: a client is added
    second = provision(database, secure_broker, "door-2", "door_contact")
    newcomer = devices(secure_broker, pki, "door-2", second.secret)
    assert newcomer.connect() == SUCCESS  # so the change has taken effect

    # a PUBACK after the change: the same connection is still there
    assert device.publish("ankang/v1/door-1/event", b'{"ts": 1, "seq": 1, "event": "door_open"}') in (
        SUCCESS,
        NO_MATCHING_SUBSCRIBERS,
    )
    assert device.connected and device.disconnects == []
    assert device.publish("ankang/v1/door-2/event", b"{}") == NOT_AUTHORIZED


def test_provisioning_refuses_what_would_open_a_hole(secure_broker, pki, database):
    env = cli_env(database, secure_broker, pki)
    register = ("--kind", "sos_button", "--facility", "fac-1")
    proc = run_cli("devices", "provision", "alerts", *register, env=env, check=False)
    assert proc.returncode == 1 and "reserved" in proc.stderr
    proc = run_cli("devices", "provision", "ha", *register, env=env, check=False)
    assert proc.returncode == 1 and "reserved" in proc.stderr  # ankang/v1/ha/...: Home Assistant states
    proc = run_cli("devices", "provision", "ghost-1", env=env, check=False)
    assert proc.returncode == 1 and "unknown device" in proc.stderr

    out = run_cli(
        "devices", "provision", "gas-1", "--kind", "gas_detector", "--facility", "fac-1", env=env
    ).stdout
    secret = secret_of(out)
    again = run_cli("devices", "provision", "gas-1", env=env, check=False)
    assert again.returncode == 1 and "already provisioned" in again.stderr
    # a service account may not take a device's name, nor a device a service's
    taken = run_cli("devices", "service-account", "gas-1", "--role", "hub", env=env, check=False)
    assert taken.returncode == 1 and "device id" in taken.stderr
    run_cli("devices", "service-account", "ankang-alerts", "--role", "alerts", env=env)
    with pytest.raises(ProvisioningError, match="service account"):
        provisioning(
            database,
            secure_broker,
            lambda p: p.provision(
                "ankang-alerts", DeviceSpec(id="ankang-alerts", kind="sos_button", facility="fac-1")
            ),
        )

    # the secret is nowhere in the database, and the hash is what the broker checks
    dump = rows(database, "SELECT username, role, secret_hash FROM broker_accounts ORDER BY username")
    assert [(u, r) for u, r, _ in dump] == [("ankang-alerts", "alerts"), ("gas-1", "device")]
    assert all(secret not in str(row) for row in dump)
    assert verify_hash(secret, dump[1][2])
    listing = run_cli("devices", "accounts", env=env).stdout
    assert "gas-1" in listing and secret not in listing
    if secure_broker.auth == "passwd":
        assert secret not in secure_broker.password_file.read_text()
        assert "pattern write ankang/v1/%u/#" in secure_broker.acl_file.read_text()
        assert "user ankang-alerts\ntopic write ankang/v1/alerts/#" in secure_broker.acl_file.read_text()
    assert run_cli("devices", "broker-sync", env=env).returncode == 0


def test_a_change_the_broker_does_not_take_is_not_recorded(secure_broker, pki, database, devices):
    working = provision(database, secure_broker, "leak-1", "water_leak")
    broken: BrokerAuth
    if secure_broker.auth == "passwd":
        broken = PasswdFiles(secure_broker.password_file, secure_broker.acl_file, Path("/nonexistent/pid"))
    else:
        admin = MqttEndpoint.from_url(secure_broker.admin_url)
        broken = Dynsec(
            MqttEndpoint(admin.host, admin.port, admin.username, "wrong-admin-secret"), timeout_s=3
        )

    async def revoke_through_broken_broker() -> None:
        conn = await psycopg.AsyncConnection.connect(database, autocommit=True)
        async with conn:
            await Provisioner(conn, broken, secure_broker.tls_url).revoke("leak-1")

    with pytest.raises(BrokerAuthError):
        asyncio.run(revoke_through_broken_broker())
    # still active in the record, and on the broker
    assert rows(database, "SELECT revoked_at FROM broker_accounts WHERE username = 'leak-1'") == [(None,)]
    assert devices(secure_broker, pki, "leak-1", working.secret).connect() == SUCCESS


def test_the_bridges_publish_only_their_own_topics_and_the_hub_reads_them(
    secure_broker, pki, database, devices
):
    """A Zigbee smoke alarm, sent on Zigbee2MQTT's own account, is stored and is a fire."""
    apply(database, FACILITY)
    env = cli_env(database, secure_broker, pki)
    out = run_cli("devices", "service-account", "zigbee2mqtt", "--role", "zigbee2mqtt", env=env).stdout
    assert "publish    zigbee2mqtt/#" in out
    assert "subscribe  zigbee2mqtt/#" in out
    zigbee = devices(secure_broker, pki, "zigbee2mqtt", secret_of(out))
    out = run_cli("devices", "service-account", "chirpstack", "--role", "chirpstack", env=env).stdout
    assert "publish    application/+/device/+/event/+" in out
    assert "subscribe  application/+/device/+/command/down" in out
    chirpstack = devices(secure_broker, pki, "chirpstack", secret_of(out))
    sensor = devices(
        secure_broker, pki, "wear-9", provision(database, secure_broker, "wear-9", "wearable").secret
    )
    hub_account = provisioning(database, secure_broker, lambda p: p.service_account("ankang-hub", "hub"))
    hub = HubProcess(
        mqtt_url=f"mqtts://ankang-hub:{hub_account.secret}@127.0.0.1:{secure_broker.tls_port}",
        database_url=database,
        metrics_port=free_port(),
        extra_env={
            "ANKANG_MQTT_CA_FILE": str(pki.ca),
            "ANKANG_ZIGBEE2MQTT": "true",
            "ANKANG_CHIRPSTACK": "true",
            "ANKANG_DETECT_TICK_S": "0.2",
        },
    )
    hub.start()
    try:
        assert zigbee.connect() == SUCCESS
        assert chirpstack.connect() == SUCCESS
        assert sensor.connect() == SUCCESS
        now = time.time()
        inventory = (PAYLOADS / "zigbee2mqtt/bridge_devices.json").read_bytes()
        assert zigbee.publish("zigbee2mqtt/bridge/devices", inventory) == SUCCESS
        idle = recorded("zigbee2mqtt/smoke_idle.json", last_seen=iso(now - 3))
        assert zigbee.publish("zigbee2mqtt/kitchen_smoke", idle) == SUCCESS
        smoke = recorded("zigbee2mqtt/smoke_alarm.json", last_seen=iso(now - 2))
        assert orjson.loads(smoke)["smoke"] is True
        assert zigbee.publish("zigbee2mqtt/kitchen_smoke", smoke) == SUCCESS
        wait_until(
            lambda: scalar(
                database,
                "SELECT count(*) FROM detections WHERE kind = 'fire' AND level = 'alarm'"
                " AND subject = 'care-1/kitchen' AND device_id = 'smoke-201'",
            ),
            30,
            f"a fire detection from the Zigbee smoke detector (hub log: {hub.log()[-1500:]})",
        )
        # Zigbee2MQTT subscribes to its whole base topic (commands, bridge requests)
        assert zigbee.subscribe("zigbee2mqtt/#") == 1
        assert chirpstack.subscribe("application/+/device/+/command/down") == 1

        # each bridge publishes only under its own topics, and a device under neither
        cleared = recorded("zigbee2mqtt/smoke_cleared.json", last_seen=iso(now - 1))
        fake_uplink = recorded("chirpstack/up_temperature.json", time=iso(now - 1))
        assert (
            zigbee.publish("ankang/v1/smoke-201/event", b'{"ts": 1, "seq": 1, "event": "test"}')
            == NOT_AUTHORIZED
        )
        assert zigbee.publish("ankang/v1/alerts/care-1/fire", b"{}") == NOT_AUTHORIZED
        assert zigbee.publish(f"{CLIMATE}/up", fake_uplink) == NOT_AUTHORIZED
        assert chirpstack.publish("zigbee2mqtt/kitchen_smoke", cleared) == NOT_AUTHORIZED
        assert chirpstack.publish("ankang/v1/climate-103/telemetry", telemetry(1, now_ms())) == NOT_AUTHORIZED
        assert chirpstack.publish(f"{CLIMATE.removesuffix('/event')}/command/down", b"{}") == NOT_AUTHORIZED
        assert sensor.publish("zigbee2mqtt/kitchen_smoke", cleared) == NOT_AUTHORIZED
        assert sensor.publish("zigbee2mqtt/bridge/request/permit_join", b'{"time": 254}') == NOT_AUTHORIZED
        assert sensor.publish(f"{CLIMATE}/up", fake_uplink) == NOT_AUTHORIZED
        assert sensor.publish("application/x/device/y/command/down", b"{}") == NOT_AUTHORIZED
        assert (
            sensor.publish("homeassistant/binary_sensor/ankang_care-1_fire/config", b"{}") == NOT_AUTHORIZED
        )
        assert sensor.publish("ankang/v1/ha/care-1/fire", b"OFF") == NOT_AUTHORIZED
        assert zigbee.connected and chirpstack.connected and sensor.connected

        # ChirpStack's uplink, last: once it is stored, the refused messages, had they reached
        # the hub, would have been stored or quarantined (each was refused before it was sent)
        uplink = recorded("chirpstack/up_temperature.json", time=iso(now - 1))
        assert chirpstack.publish(f"{CLIMATE}/up", uplink) == SUCCESS
        wait_until(
            lambda: scalar(database, "SELECT count(*) FROM readings WHERE device_id = 'climate-103'"),
            30,
            f"the LoRaWAN uplink (hub log: {hub.log()[-1500:]})",
        )
    finally:
        hub.stop()
    assert rows(database, "SELECT event FROM events WHERE device_id = 'smoke-201'") == [("smoke_alarm",)]
    assert (
        scalar(database, "SELECT count(*) FROM messages WHERE device_id NOT IN ('smoke-201', 'climate-103')")
        == 0
    )
    assert scalar(database, "SELECT count(*) FROM quarantine") == 0
    assert zigbee.received == []  # nobody else may publish under its base topic


def test_the_bridge_topics_follow_the_hubs_settings(secure_broker, pki, database, devices):
    """A changed base topic moves the bridge's and the hub's rules; broker-sync brings them back."""
    env = cli_env(database, secure_broker, pki) | {
        "ANKANG_ZIGBEE2MQTT_BASE_TOPIC": "z2m/east",
        "ANKANG_CHIRPSTACK_TOPIC": "cn470/application/+/device/+/event/+",
    }
    out = run_cli("devices", "service-account", "zigbee2mqtt", "--role", "zigbee2mqtt", env=env).stdout
    assert "publish    z2m/east/#" in out
    zigbee = devices(secure_broker, pki, "zigbee2mqtt", secret_of(out))
    out = run_cli("devices", "service-account", "ankang-hub", "--role", "hub", env=env).stdout
    assert "subscribe  ankang/v1/# z2m/east/# cn470/application/+/device/+/event/+" in out
    hub = devices(secure_broker, pki, "ankang-hub", secret_of(out))
    assert zigbee.connect() == SUCCESS
    assert hub.connect() == SUCCESS
    assert hub.subscribe("z2m/east/#") == 1
    assert hub.subscribe("cn470/application/+/device/+/event/+") == 1
    assert zigbee.publish("z2m/east/kitchen_smoke", b'{"smoke": false}') == SUCCESS
    wait_until(lambda: hub.received, 10, "the hub to receive the bridge's state")
    assert zigbee.publish("zigbee2mqtt/kitchen_smoke", b'{"smoke": false}') == NOT_AUTHORIZED

    # back to the defaults: the shared role's rules (dynsec) or the ACL file (passwd) follow
    assert run_cli("devices", "broker-sync", env=cli_env(database, secure_broker, pki)).returncode == 0
    wait_until(
        lambda: zigbee.publish("zigbee2mqtt/kitchen_smoke", b"{}") in (SUCCESS, NO_MATCHING_SUBSCRIBERS),
        10,
        "the default base topic to be allowed",
    )
    assert zigbee.publish("z2m/east/kitchen_smoke", b"{}") == NOT_AUTHORIZED
    assert zigbee.connected and hub.connected
    if secure_broker.auth == "passwd":
        assert "user zigbee2mqtt\ntopic write zigbee2mqtt/#\ntopic read zigbee2mqtt/#" in (
            secure_broker.acl_file.read_text()
        )


def test_home_assistant_reads_the_alert_services_entities_and_publishes_none(
    secure_broker, pki, database, devices
):
    alerts = provisioning(database, secure_broker, lambda p: p.service_account("ankang-alerts", "alerts"))
    ha = provisioning(database, secure_broker, lambda p: p.service_account("home-assistant", "homeassistant"))
    assert ha.subscribe == ("homeassistant/#", "ankang/v1/ha/#") and ha.publish == ("homeassistant/status",)
    publisher = devices(secure_broker, pki, "ankang-alerts", alerts.secret)
    assert publisher.connect() == SUCCESS
    config = "homeassistant/binary_sensor/ankang_fac-1_fire/config"
    state = "ankang/v1/ha/fac-1/fire"
    allowed = (SUCCESS, NO_MATCHING_SUBSCRIBERS)
    assert publisher.publish(config, b'{"state_topic": "ankang/v1/ha/fac-1/fire"}', retain=True) in allowed
    assert publisher.publish(state, b"ON", retain=True) in allowed
    assert publisher.publish("ankang/v1/alerts/fac-1/fire", b"{}") in allowed
    assert publisher.publish("zigbee2mqtt/kitchen_smoke", b'{"smoke": false}') == NOT_AUTHORIZED

    home = devices(secure_broker, pki, "home-assistant", ha.secret)
    assert home.connect() == SUCCESS
    assert home.subscribe("homeassistant/+/+/config") == 1  # what Home Assistant's discovery subscribes to
    assert home.subscribe(state) == 1
    wait_until(lambda: len(home.received) == 2, 10, "the retained config and state")
    assert sorted(home.received) == [state, config]
    assert home.publish("homeassistant/status", b"online") in allowed
    assert home.publish(state, b"OFF") == NOT_AUTHORIZED
    assert home.publish(config, b"{}") == NOT_AUTHORIZED
    assert home.publish("ankang/v1/alerts/fac-1/fire", b"{}") == NOT_AUTHORIZED
    assert home.subscribe("ankang/v1/alerts/#") in expected_suback(secure_broker)
    assert home.connected


def test_bridge_topics_may_not_overlap_anyone_elses():
    assert BridgeTopics().service_acls()["hub"][-2:] == (
        ("read", "zigbee2mqtt/#"),
        ("read", "application/+/device/+/event/+"),
    )
    for base, chirpstack in [
        ("ankang", "application/+/device/+/event/+"),  # it could publish as any device
        ("application", "application/+/device/+/event/+"),  # as ChirpStack
        ("homeassistant/zigbee", "application/+/device/+/event/+"),  # as the alert service
        ("zigbee2mqtt", "zigbee2mqtt/application/+/device/+/event/+"),
        ("zigbee2mqtt", "application/#"),
        ("$SYS", "application/+/device/+/event/+"),
    ]:
        with pytest.raises(ProvisioningError):
            BridgeTopics(base, chirpstack)


def test_client_ids_belong_to_accounts(secure_broker, pki, database, devices, hub):
    """A device with its own valid secret cannot connect as the hub, with a resumed or a
    clean session, nor as another device: dynsec refuses the connect, and a password-file
    broker gives it its own name as client id. Either way the hub keeps its session and
    subscription, nothing published meanwhile is lost, and the other device stays on."""
    creds = {d: provision(database, secure_broker, d) for d in ("smoke-a", "smoke-b")}
    b = devices(secure_broker, pki, "smoke-b", creds["smoke-b"].secret)
    assert b.connect() == SUCCESS
    t = now_ms() - 60_000
    for seq in range(1, 101):
        assert b.publish("ankang/v1/smoke-b/telemetry", telemetry(seq, t + seq * 100, temp_c=21.0)) == SUCCESS
    wait_until(lambda: scalar(database, "SELECT count(*) FROM messages") == 100, 30, "the first 100")

    intruders = [
        devices(secure_broker, pki, "smoke-a", creds["smoke-a"].secret, "ankang-hub", False),
        devices(secure_broker, pki, "smoke-a", creds["smoke-a"].secret, "ankang-hub", True),
        devices(secure_broker, pki, "smoke-a", creds["smoke-a"].secret, "smoke-b", True),
    ]
    for intruder in intruders:
        code = intruder.connect()
        if secure_broker.auth == "dynsec":
            assert code == NOT_AUTHORIZED
        else:
            assert code == SUCCESS  # as "smoke-a": the broker put its account name in
            assert intruder.subscribe("ankang/v1/+/telemetry") == 1  # granted, but read is checked
        for seq in range(1, 101):  # sent while the intruder tries its luck
            n = 100 * (intruders.index(intruder) + 1) + seq
            assert b.publish("ankang/v1/smoke-b/telemetry", telemetry(n, t + n * 100, temp_c=21.0)) == SUCCESS
    wait_until(
        lambda: scalar(database, "SELECT count(*) FROM messages") == 400,
        30,
        f"all 400 readings (hub log: {hub.log()[-1500:]})",
    )
    assert b.connected  # not evicted by a client that asked for its id
    assert all(i.received == [] for i in intruders)  # nobody else's telemetry
    assert hub.alive() and hub.health()["mqtt"]
    assert "lost the broker" not in hub.log()  # the hub was never thrown off
