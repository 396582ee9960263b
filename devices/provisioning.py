"""Device provisioning: broker accounts, their secrets, and what each account may touch.

A device gets a broker account named after its id, with a random secret that is shown once.
It may publish only under ``ankang/v1/{id}/#`` and subscribe only to its own command topic
``ankang/v1/{id}/command``. Services (the hub, the alert service, the API) and the bridges
(Zigbee2MQTT, ChirpStack v4) have accounts of their own with fixed rules per role
(``SERVICE_ACLS``). The bridges' topics follow the hub's settings (``BridgeTopics``), so that
the hub may read what it subscribes to, and a bridge may publish only there.

The table ``broker_accounts`` is the record, and it never holds a secret: only Mosquitto's
PBKDF2-SHA512 hash of it. ``Provisioner`` changes the table and brings the broker in step
through a ``BrokerAuth`` backend *inside the same transaction*, so a change that the broker
refuses is not recorded:

- ``NoBrokerAuth``: an anonymous broker (a demo); accounts are only recorded.
- ``PasswdFiles``: Mosquitto's ``password_file`` and ``acl_file``, rendered whole from the
  table, swapped in atomically, then SIGHUP. Mosquitto 2 re-reads both on SIGHUP and
  re-checks every connected client against them: clients whose account is unchanged stay
  connected, a client whose account is gone or whose password changed is disconnected.
- ``Dynsec``: Mosquitto 2's dynamic-security plugin, driven with JSON commands on
  ``$CONTROL/dynamic-security/v1``. Adding a client touches nobody else; deleting a client
  or changing its password disconnects it at once. Nothing is reloaded.

Either way a revocation ends the device's live connection, not only its next one.

Errors::

    DeviceError
    └── ProvisioningError       unknown device, already provisioned, reserved name, ...
        └── BrokerAuthError     the broker could not be reached or refused the change
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import ssl
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import AsyncConnection

from devices.contract import COMMAND_CHANNEL, RESERVED_DEVICE_IDS, TOPIC_PREFIX, is_valid_device_id
from devices.errors import DeviceError
from devices.mqtt import MqttEndpoint
from devices.registry import DeviceSpec, Registry

Role = Literal["device", "hub", "alerts", "api", "zigbee2mqtt", "chirpstack", "homeassistant"]
ServiceRole = Literal["hub", "alerts", "api", "zigbee2mqtt", "chirpstack", "homeassistant"]
SERVICE_ROLES: Final[tuple[ServiceRole, ...]] = get_args(ServiceRole)
Access = Literal["read", "write", "deny"]
ACL = tuple[tuple[Access, str], ...]

# RESERVED_DEVICE_IDS (devices.contract): ankang/v1/alerts/... and ankang/v1/ha/... are the
# alert service's topics, so no device may be called "alerts" or "ha", or it could publish alarms.


class ProvisioningError(DeviceError):
    """A provisioning request cannot be carried out (unknown device, name taken, ...)."""


class BrokerAuthError(ProvisioningError):
    """The broker could not be reached, or refused the change; nothing was recorded."""


# ChirpStack v4's MQTT integration: events out, downlinks in (its default event_topic and
# command_topic; "down" is the only command of v4).
CHIRPSTACK_EVENTS: Final = "application/+/device/+/event/+"
CHIRPSTACK_DOWNLINKS: Final = "application/+/device/+/command/down"
# Home Assistant's default discovery prefix, its birth and last-will topic, and the states of
# ankang's entities (alerts/hadiscovery.py)
HA_DISCOVERY: Final = "homeassistant/#"
HA_STATUS: Final = "homeassistant/status"
HA_STATES: Final = f"{TOPIC_PREFIX}ha/#"


@dataclass(frozen=True, slots=True)
class BridgeTopics:
    """Where the bridges publish: ``ANKANG_ZIGBEE2MQTT_BASE_TOPIC`` and ``ANKANG_CHIRPSTACK_TOPIC``.

    The hub subscribes to ``{zigbee2mqtt}/#`` and to ``chirpstack``; its role may read exactly
    that, and each bridge's role may publish only there. Give ``ankang devices`` the same
    settings as the hub, or the hub subscribes to topics it may not read and receives nothing.
    """

    zigbee2mqtt: str = "zigbee2mqtt"
    chirpstack: str = CHIRPSTACK_EVENTS

    def __post_init__(self) -> None:
        base = self.zigbee2mqtt
        if not base or set(base) & set("+#\x00") or base.startswith(("/", "$")) or base.endswith("/"):
            raise ProvisioningError(f"not a Zigbee2MQTT base topic: {base!r}")
        prefix = self.chirpstack.removesuffix(CHIRPSTACK_EVENTS)
        if (
            prefix == self.chirpstack
            or set(prefix) & set("+#\x00")
            or prefix.startswith(("/", "$"))
            or (prefix and not prefix.endswith("/"))
        ):
            raise ProvisioningError(f"not a ChirpStack event topic: {self.chirpstack!r}")
        # A bridge may publish anything under its root: no root may hold another's topics,
        # or the bridge could publish as a device, as the alert service or as the other bridge.
        roots = {
            "the Zigbee2MQTT base topic": base,
            "ChirpStack's topics": f"{prefix}application",
            "ankang's topics": TOPIC_PREFIX.split("/")[0],
            "Home Assistant's discovery topics": HA_DISCOVERY.removesuffix("/#"),
        }
        names = list(roots)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                x, y = roots[a], roots[b]
                if x == y or x.startswith(f"{y}/") or y.startswith(f"{x}/"):
                    raise ProvisioningError(f"{a} ({x}/...) and {b} ({y}/...) overlap")

    @property
    def chirpstack_downlinks(self) -> str:
        """The command topic ChirpStack subscribes to, under the same prefix as its events."""
        return self.chirpstack.removesuffix(CHIRPSTACK_EVENTS) + CHIRPSTACK_DOWNLINKS

    def service_acls(self) -> dict[ServiceRole, ACL]:
        """Each service role's rules, with these bridge topics."""
        zigbee = f"{self.zigbee2mqtt}/#"
        return {
            # the hub reads every device's stream (it subscribes to ankang/v1/+/+), but not the
            # commands sent to devices, which it would only quarantine as an unknown channel;
            # and the bridges' topics, which its adapters map (devices/adapters/)
            "hub": (
                ("deny", f"{TOPIC_PREFIX}+/{COMMAND_CHANNEL}"),
                ("read", f"{TOPIC_PREFIX}#"),
                ("read", zigbee),
                ("read", self.chirpstack),
            ),
            # the alert service publishes alarm changes (alerts/publish.py), and Home
            # Assistant's discovery configs and states (alerts/hadiscovery.py)
            "alerts": (("write", f"{TOPIC_PREFIX}alerts/#"), ("write", HA_DISCOVERY), ("write", HA_STATES)),
            # the API follows alarms and may send devices commands (never retained)
            "api": (("read", f"{TOPIC_PREFIX}alerts/#"), ("write", f"{TOPIC_PREFIX}+/{COMMAND_CHANNEL}")),
            # Zigbee2MQTT publishes everything under its base topic (state, availability,
            # bridge/...) and subscribes to all of it: it takes {name}/set, {name}/get,
            # {name}/{endpoint}/set/{attribute} and bridge/request/... from there and skips its
            # own messages. Friendly names may contain "/", so no wildcard narrows that down;
            # nobody else may publish under the base topic, so it reads only its own.
            "zigbee2mqtt": (("write", zigbee), ("read", zigbee)),
            # ChirpStack publishes device events and takes downlinks (application_id, dev_eui)
            "chirpstack": (("write", self.chirpstack), ("read", self.chirpstack_downlinks)),
            # Home Assistant reads the discovery configs and ankang's states, and announces
            # itself (birth and last will); it may not publish configs or states
            "homeassistant": (("read", HA_DISCOVERY), ("read", HA_STATES), ("write", HA_STATUS)),
        }


# What each service role may touch, with the bridges' default topics.
SERVICE_ACLS: Final[Mapping[ServiceRole, ACL]] = BridgeTopics().service_acls()

# Mosquitto's own default (mosquitto_passwd, dynsec). The secrets are 256 random bits, so
# key stretching adds nothing against guessing, while the broker pays it at every connect.
HASH_ITERATIONS: Final = 101
_SALT_BYTES: Final = 12  # as mosquitto_passwd

_USERNAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def command_topic(device_id: str) -> str:
    """``ankang/v1/{id}/command``: the one topic a device may subscribe to."""
    return f"{TOPIC_PREFIX}{device_id}/{COMMAND_CHANNEL}"


def device_acl(device_id: str) -> ACL:
    return (("write", f"{TOPIC_PREFIX}{device_id}/#"), ("read", command_topic(device_id)))


def acl_of(username: str, role: Role, bridges: BridgeTopics | None = None) -> ACL:
    if role == "device":
        return device_acl(username)
    return (bridges or BridgeTopics()).service_acls()[role]


def new_secret() -> str:
    """256 random bits, URL-safe, so that it fits in ``mqtts://user:secret@host`` unquoted."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(secret: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """Mosquitto 2's password-file hash: ``$7$iterations$base64(salt)$base64(PBKDF2-SHA512)``."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_hash(secret: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, got)


@dataclass(frozen=True, slots=True)
class Account:
    """An active broker account as recorded: no secret, only its hash."""

    username: str
    role: Role
    secret_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Change:
    """One account to create or update (``secret`` set) or remove (``secret`` None)."""

    username: str
    role: Role
    secret: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a device or service is told once: its account, secret and topics."""

    username: str
    secret: str = field(repr=False)
    role: Role
    broker_url: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


class BrokerAuth(Protocol):
    """How account changes reach the broker."""

    async def apply(self, change: Change, accounts: Sequence[Account], bridges: BridgeTopics) -> None:
        """Make ``change`` effective; ``accounts`` is every active account, the change included."""

    async def sync(
        self, accounts: Sequence[Account], revoked: Sequence[str], bridges: BridgeTopics
    ) -> list[str]:
        """Bring the broker in step with the record (service roles' rules included); returns
        what could not be repaired."""


class NoBrokerAuth:
    """An anonymous broker: accounts are recorded, and the broker lets anyone in."""

    async def apply(self, change: Change, accounts: Sequence[Account], bridges: BridgeTopics) -> None:
        return None

    async def sync(
        self, accounts: Sequence[Account], revoked: Sequence[str], bridges: BridgeTopics
    ) -> list[str]:
        return []


# -- Mosquitto password and ACL files ---------------------------------------------------


def render_password_file(accounts: Sequence[Account]) -> str:
    return "".join(f"{a.username}:{a.secret_hash}\n" for a in sorted(accounts, key=lambda a: a.username))


def render_acl_file(accounts: Sequence[Account], bridges: BridgeTopics | None = None) -> str:
    """Mosquitto ``acl_file``: one ``pattern`` pair for every device, ``user`` blocks for services.

    ``%u`` is the authenticated username, which for a device is its id (Mosquitto 2
    substitutes it in ``pattern`` lines only). Service accounts never collide with device ids
    (``Provisioner`` refuses), so the patterns grant them nothing another device could use.
    """
    rules = (bridges or BridgeTopics()).service_acls()
    lines = [
        "# Written by ankang (devices/provisioning.py) from its broker_accounts table on every",
        "# change: edit accounts with `ankang devices provision|rotate|revoke|service-account`.",
        "",
        "# Devices: publish only under their own id, read only their own command topic.",
        *(
            f"pattern {access} {TOPIC_PREFIX}%u/{rest}"
            for access, rest in (("write", "#"), ("read", COMMAND_CHANNEL))
        ),
    ]
    for account in sorted(accounts, key=lambda a: a.username):
        if account.role == "device":
            continue
        lines += ["", f"user {account.username}"]
        lines += [f"topic {access} {topic}" for access, topic in rules[account.role]]
    return "\n".join(lines) + "\n"


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's mode and group.

    The broker may read the file at any moment (a SIGHUP from another source), so it must
    never see half of it: write a sibling, fsync, rename over.
    """
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st else 0o640)
        if st is not None:
            with contextlib.suppress(PermissionError):  # only root may hand a file to another group
                os.chown(tmp, -1, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True, slots=True)
class PasswdFiles:
    """Mosquitto ``password_file`` + ``acl_file``, reloaded with SIGHUP to the broker's pid."""

    password_file: Path
    acl_file: Path
    pid_file: Path

    async def apply(self, change: Change, accounts: Sequence[Account], bridges: BridgeTopics) -> None:
        await asyncio.to_thread(self._write_and_reload, accounts, bridges)

    async def sync(
        self, accounts: Sequence[Account], revoked: Sequence[str], bridges: BridgeTopics
    ) -> list[str]:
        await asyncio.to_thread(self._write_and_reload, accounts, bridges)
        return []

    def _write_and_reload(self, accounts: Sequence[Account], bridges: BridgeTopics) -> None:
        pid = self._broker_pid()  # before writing: a broker we cannot signal changes nothing
        try:
            _replace_file(self.acl_file, render_acl_file(accounts, bridges))
            _replace_file(self.password_file, render_password_file(accounts))
        except OSError as exc:
            raise BrokerAuthError(f"cannot write the broker's password or ACL file: {exc}") from exc
        try:
            # Mosquitto 2 reloads password_file and acl_file on SIGHUP without dropping
            # clients, and disconnects the ones whose credentials no longer hold.
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise BrokerAuthError(f"cannot signal the broker (pid {pid}): {exc}") from exc

    def _broker_pid(self) -> int:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise BrokerAuthError(f"cannot read the broker's pid from {self.pid_file}: {exc}") from exc


# -- Mosquitto dynamic-security plugin --------------------------------------------------

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"
_DYNSEC_ACL: Final[Mapping[Access, tuple[tuple[str, bool], ...]]] = {
    # dynsec's ACL types: publishClientSend is what a client may publish, subscribePattern
    # what it may subscribe to, publishClientReceive what the broker may deliver to it.
    "write": (("publishClientSend", True),),
    "read": (("subscribePattern", True), ("publishClientReceive", True)),
    "deny": (("publishClientSend", False), ("publishClientReceive", False)),
}


def dynsec_role(username: str, role: Role) -> str:
    """A role per device (dynsec in Mosquitto 2.0 substitutes no ``%u``), one per service."""
    return f"ankang-device-{username}" if role == "device" else f"ankang-{role}"


def dynsec_acls(username: str, role: Role, bridges: BridgeTopics | None = None) -> list[dict[str, Any]]:
    # a higher priority is checked first: a denial wins over a broader grant, as in acl_file
    return [
        {"acltype": kind, "topic": topic, "allow": allow, "priority": 0 if allow else 1}
        for access, topic in acl_of(username, role, bridges)
        for kind, allow in _DYNSEC_ACL[access]
    ]


class Dynsec:
    """Accounts kept in Mosquitto's dynamic-security plugin, through an admin account."""

    def __init__(self, admin: MqttEndpoint, *, timeout_s: float = 10.0) -> None:
        if admin.username is None:
            raise ProvisioningError("the dynamic-security admin URL needs a username and password")
        self._admin = admin
        self._timeout_s = timeout_s

    async def apply(self, change: Change, accounts: Sequence[Account], bridges: BridgeTopics) -> None:
        await asyncio.to_thread(self._apply, change, bridges)

    async def sync(
        self, accounts: Sequence[Account], revoked: Sequence[str], bridges: BridgeTopics
    ) -> list[str]:
        return await asyncio.to_thread(self._sync, accounts, revoked, bridges)

    def _apply(self, change: Change, bridges: BridgeTopics) -> None:
        rolename = dynsec_role(change.username, change.role)
        if change.secret is None:
            # deleteClient disconnects the client at once if it is connected
            commands = [{"command": "deleteClient", "username": change.username}]
            if change.role == "device":  # services share their role
                commands.append({"command": "deleteRole", "rolename": rolename})
            self.control(commands, ok={"Client not found", "Role not found"})
            return
        acls = dynsec_acls(change.username, change.role, bridges)
        create_role = {"command": "createRole", "rolename": rolename, "acls": acls}
        # The account may connect only with its own name as client id: otherwise a device
        # could take over the hub's session, or another device's (the broker refuses it).
        create_client = {
            "command": "createClient",
            "username": change.username,
            "password": change.secret,
            "clientid": change.username,
            "roles": [{"rolename": rolename}],
        }
        answers = self.control(
            [create_role, create_client], ok={"Role already exists", "Client already exists"}
        )
        if change.role != "device" and answers[0].get("error") == "Role already exists":
            # a service role is shared, and its rules follow the settings (BridgeTopics)
            self._set_role_acls(rolename, acls)
        if answers[1].get("error") == "Client already exists":
            # A new secret for an existing client: modifyClient disconnects it, so a rotated
            # or re-provisioned device must come back with the new secret.
            self.control(
                [
                    {
                        "command": "modifyClient",
                        "username": change.username,
                        "password": change.secret,
                        "roles": [{"rolename": rolename}],
                    },
                    {"command": "setClientId", "username": change.username, "clientid": change.username},
                    {"command": "enableClient", "username": change.username},
                ]
            )

    def _set_role_acls(self, rolename: str, acls: Sequence[Mapping[str, Any]]) -> None:
        """Make an existing role's rules exactly ``acls`` (Mosquitto 2.0's modifyRole keeps them)."""
        answer = self.control([{"command": "getRole", "rolename": rolename}])[0]
        have = {(a["acltype"], a["topic"]): a for a in answer.get("data", {}).get("role", {}).get("acls", [])}
        want = {(a["acltype"], a["topic"]): a for a in acls}

        def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
            return (bool(a.get("allow")), a.get("priority", 0)) == (
                bool(b.get("allow")),
                b.get("priority", 0),
            )

        stale = [key for key, acl in have.items() if key not in want or not same(acl, want[key])]
        missing = [key for key, acl in want.items() if key not in have or not same(have[key], acl)]
        commands = [
            {"command": "removeRoleACL", "rolename": rolename, "acltype": kind, "topic": topic}
            for kind, topic in stale
        ] + [{"command": "addRoleACL", "rolename": rolename, **want[key]} for key in missing]
        if commands:
            self.control(commands)

    def _sync(self, accounts: Sequence[Account], revoked: Sequence[str], bridges: BridgeTopics) -> list[str]:
        listed = self.control([{"command": "listClients", "verbose": True, "count": -1, "offset": 0}])
        clients = {
            c["username"]: c.get("clientid")
            for c in listed[0].get("data", {}).get("clients", [])
            if "username" in c
        }
        present = set(clients)
        for username in sorted(present & set(revoked)):
            self.control([{"command": "deleteClient", "username": username}], ok={"Client not found"})
        for role in sorted({a.role for a in accounts if a.role != "device" and a.username in present}):
            self._set_role_acls(dynsec_role("", role), dynsec_acls("", role, bridges))
        # Accounts made before client ids were tied to them get theirs now (which ends their
        # connection: dynsec disconnects a client whose settings change).
        pinned = [
            {"command": "setClientId", "username": a.username, "clientid": a.username}
            for a in accounts
            if a.username in present and clients[a.username] != a.username
        ]
        for start in range(0, len(pinned), 100):
            self.control(pinned[start : start + 100])
        # dynsec keeps only its own hash of the secret: an account it lost cannot be rebuilt
        return [
            f"{a.username}: recorded as active but unknown to the broker; rotate its secret"
            for a in accounts
            if a.username not in present
        ]

    def control(
        self, commands: list[dict[str, Any]], *, ok: frozenset[str] | set[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """Send dynsec commands in one message; returns their responses, in order.

        A response with an ``error`` not in ``ok`` raises ``BrokerAuthError``.
        """
        tag = secrets.token_hex(8)
        tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        responses = self._exchange({"commands": tagged}, tag)
        by_tag = {r.get("correlationData"): r for r in responses}
        ordered = []
        for i, command in enumerate(tagged):
            response = by_tag.get(f"{tag}-{i}")
            if response is None:
                raise BrokerAuthError(f"the broker did not answer {command['command']}")
            error = response.get("error")
            if error and error not in ok:
                raise BrokerAuthError(f"the broker refused {command['command']}: {error}")
            ordered.append(response)
        return ordered

    def _exchange(self, request: dict[str, Any], tag: str) -> list[dict[str, Any]]:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"ankang-provision-{tag}", protocol=paho.MQTTv5
        )
        self._admin.configure(client)
        ready = threading.Event()
        answered = threading.Event()
        problems: list[str] = []
        responses: list[dict[str, Any]] = []

        def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                problems.append(f"the broker refused the admin account: {reason}")
                ready.set()
                return
            c.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(_c: paho.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
            if any(r.is_failure for r in reasons):
                problems.append("the admin account may not read dynamic-security responses")
            ready.set()

        def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
            # other admins' answers arrive on the same topic; ours carry our tag
            with contextlib.suppress(ValueError, AttributeError):
                found = json.loads(msg.payload).get("responses", [])
                if any(str(r.get("correlationData", "")).startswith(tag) for r in found):
                    responses.extend(found)
                    answered.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self._admin.host, self._admin.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerAuthError(f"cannot reach the broker at {self._admin.url}: {exc}") from exc
        client.loop_start()
        try:
            if not ready.wait(self._timeout_s):
                raise BrokerAuthError(f"no answer from the broker at {self._admin.url}")
            if problems:
                raise BrokerAuthError(problems[0])
            client.publish(CONTROL_TOPIC, json.dumps(request), qos=1)
            if not answered.wait(self._timeout_s):
                raise BrokerAuthError(
                    "the dynamic-security plugin did not answer: is it loaded, and is the account its admin?"
                )
        finally:
            client.disconnect()
            client.loop_stop()
        return responses


# -- the record -------------------------------------------------------------------------

_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('ankang.broker_accounts'))"
_ACTIVE: Final = """
    SELECT username, role, secret_hash FROM broker_accounts WHERE revoked_at IS NULL ORDER BY username
"""


class Provisioner:
    """Provision, rotate and revoke broker accounts over one connection (in autocommit mode).

    Each operation is one transaction, serialised with an advisory lock (so two
    provisioners never interleave file writes), and the broker is changed before the
    commit: if the broker refuses, nothing is recorded.
    """

    def __init__(
        self,
        conn: AsyncConnection[Any],
        broker: BrokerAuth,
        broker_url: str,
        bridges: BridgeTopics | None = None,
    ) -> None:
        self._conn = conn
        self._broker = broker
        self._broker_url = broker_url
        self._bridges = bridges or BridgeTopics()

    async def provision(self, device_id: str, spec: DeviceSpec | None = None) -> Credentials:
        """Give a device its account, registering it first when ``spec`` is given.

        A device that already has an active account is refused (use ``rotate``); a revoked
        one gets a new account.
        """
        if not is_valid_device_id(device_id):
            raise ProvisioningError("device id must match [A-Za-z0-9_-]{1,64}")
        if device_id in RESERVED_DEVICE_IDS:
            raise ProvisioningError(f"{device_id!r} is reserved (ankang/v1/{device_id}/ is a service topic)")
        if spec is not None and spec.id != device_id:
            raise ProvisioningError("the device spec names another device")
        secret = new_secret()
        async with self._transaction():
            if spec is not None:
                await Registry(self._conn).add(spec)
            row = await self._account(device_id)
            if row is not None and row[0] != "device":
                raise ProvisioningError(f"{device_id!r} is the name of a {row[0]} service account")
            if row is not None and row[1] is None:
                raise ProvisioningError(f"{device_id} is already provisioned; rotate or revoke it")
            cur = await self._conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,))
            if await cur.fetchone() is None:
                raise ProvisioningError(
                    f"unknown device {device_id}: register it, or give its kind and facility"
                )
            await self._conn.execute(
                """
                INSERT INTO broker_accounts (username, role, device_id, secret_hash)
                VALUES (%s, 'device', %s, %s)
                ON CONFLICT (username) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,
                    provisioned_at = now(), rotated_at = NULL, revoked_at = NULL
                """,
                (device_id, device_id, mosquitto_hash(secret)),
            )
            await self._push(Change(device_id, "device", secret))
        return self._credentials(device_id, "device", secret)

    async def service_account(self, username: str, role: ServiceRole) -> Credentials:
        """Create the account of a service or a bridge (``SERVICE_ROLES``); see ``BridgeTopics``."""
        if role not in SERVICE_ROLES:
            raise ProvisioningError(
                f"unknown service role {role!r}; expected one of {', '.join(SERVICE_ROLES)}"
            )
        if not 1 <= len(username) <= 64 or not set(username) <= _USERNAME_CHARS:
            raise ProvisioningError("a service account name must match [A-Za-z0-9_.-]{1,64}")
        secret = new_secret()
        async with self._transaction():
            cur = await self._conn.execute("SELECT 1 FROM devices WHERE id = %s", (username,))
            if await cur.fetchone() is not None:
                raise ProvisioningError(f"{username!r} is a device id; pick another account name")
            row = await self._account(username)
            if row is not None and row[0] != role:
                raise ProvisioningError(f"{username!r} is already a {row[0]} account")
            if row is not None and row[1] is None:
                raise ProvisioningError(f"{username} already exists; rotate or revoke it")
            await self._conn.execute(
                """
                INSERT INTO broker_accounts (username, role, secret_hash) VALUES (%s, %s, %s)
                ON CONFLICT (username) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,
                    provisioned_at = now(), rotated_at = NULL, revoked_at = NULL
                """,
                (username, role, mosquitto_hash(secret)),
            )
            await self._push(Change(username, role, secret))
        return self._credentials(username, role, secret)

    async def rotate(self, username: str) -> Credentials:
        """A new secret for an active account; the old one stops working at once."""
        secret = new_secret()
        async with self._transaction():
            role = await self._active_role(username)
            await self._conn.execute(
                "UPDATE broker_accounts SET secret_hash = %s, rotated_at = now() WHERE username = %s",
                (mosquitto_hash(secret), username),
            )
            await self._push(Change(username, role, secret))
        return self._credentials(username, role, secret)

    async def revoke(self, username: str) -> None:
        """End an account: refused at its next connect, and its live connection closed."""
        async with self._transaction():
            role = await self._active_role(username)
            await self._conn.execute(
                "UPDATE broker_accounts SET secret_hash = NULL, revoked_at = now() WHERE username = %s",
                (username,),
            )
            await self._push(Change(username, role, None))

    async def sync(self) -> list[str]:
        """Bring the broker in step with the record (after a restore, or a failed commit)."""
        async with self._transaction():
            accounts = await self._active()
            cur = await self._conn.execute(
                "SELECT username FROM broker_accounts WHERE revoked_at IS NOT NULL"
            )
            revoked = [str(r[0]) for r in await cur.fetchall()]
            return await self._broker.sync(accounts, revoked, self._bridges)

    async def accounts(self) -> list[tuple[str, str, Any, Any, Any]]:
        """(username, role, provisioned_at, rotated_at, revoked_at) of every account."""
        cur = await self._conn.execute(
            "SELECT username, role, provisioned_at, rotated_at, revoked_at"
            " FROM broker_accounts ORDER BY username"
        )
        return [(str(r[0]), str(r[1]), r[2], r[3], r[4]) for r in await cur.fetchall()]

    # -- helpers --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        try:
            async with self._conn.transaction():
                await self._conn.execute(_LOCK)
                yield
        except psycopg.errors.UndefinedTable as exc:
            raise ProvisioningError(
                "the database has no broker_accounts table: run `ankang migrate`"
            ) from exc

    async def _account(self, username: str) -> tuple[str, Any] | None:
        cur = await self._conn.execute(
            "SELECT role, revoked_at FROM broker_accounts WHERE username = %s FOR UPDATE", (username,)
        )
        row = await cur.fetchone()
        return None if row is None else (str(row[0]), row[1])

    async def _active_role(self, username: str) -> Role:
        row = await self._account(username)
        if row is None:
            raise ProvisioningError(f"{username} has never been provisioned")
        if row[1] is not None:
            raise ProvisioningError(f"{username} was revoked; provision it again")
        role: Role = row[0]  # type: ignore[assignment]  # the table's CHECK constraint
        return role

    async def _active(self) -> list[Account]:
        cur = await self._conn.execute(_ACTIVE)
        return [Account(str(r[0]), r[1], str(r[2])) for r in await cur.fetchall()]

    async def _push(self, change: Change) -> None:
        await self._broker.apply(change, await self._active(), self._bridges)

    def _credentials(self, username: str, role: Role, secret: str) -> Credentials:
        acl = acl_of(username, role, self._bridges)
        return Credentials(
            username=username,
            secret=secret,
            role=role,
            broker_url=self._broker_url,
            publish=tuple(t for a, t in acl if a == "write"),
            subscribe=tuple(t for a, t in acl if a == "read"),
        )
