"""Project-owned Mosquitto and PostgreSQL/TimescaleDB instances on their own ports.

``scripts/services up``, the test fixtures and ``ankang bench`` all start their brokers and
databases through this module, so that there is one way to configure them. Each instance
lives in its own directory and can be stopped, restarted and paused, which is how the
tests cut the hub off from its services mid-stream.

PostgreSQL refuses to run as root, so as root the cluster is owned and run by the
``postgres`` system user (``runuser``), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from devices.contract import MAX_PAYLOAD_BYTES
from hub.errors import ServiceError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MOSQUITTO_BIN = Path("/usr/sbin/mosquitto")
MOSQUITTO_CTRL_BIN = Path("/usr/bin/mosquitto_ctrl")
_DYNSEC_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"  # Debian ships it with mosquitto


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise ServiceError(f"timed out after {timeout:g} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (possibly owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class MosquittoServer:
    """A Mosquitto 2 broker with a persistent store sized for a restarting hub.

    ``auth`` chooses who may connect (docs/deployment.md): ``none`` lets anyone in;
    ``passwd`` uses the password and ACL files in ``directory`` (empty at first, written by
    ``devices.provisioning.PasswdFiles``, reloaded with ``reload()``); ``dynsec`` loads the
    dynamic-security plugin with an admin account (``admin_url``). With ``tls_port`` and the
    three PEM files, a TLS listener is added next to the plain one.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    # Mosquitto keeps only 1,000 messages per offline persistent session by default; a hub
    # that restarts under load would lose the rest. Size it for minutes of full-rate traffic.
    max_queued_messages: int = 2_000_000
    extra_config: str = ""
    # A site with a Zigbee2MQTT bridge needs room for its bridge/devices inventory
    # (docs/deployment.md).
    max_packet_size: int = MAX_PAYLOAD_BYTES + 4096
    auth: Literal["none", "passwd", "dynsec"] = "none"
    admin_username: str = "ankang-admin"  # dynsec's admin; its secret is kept in ``directory``
    tls_port: int | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if self.tls_port is not None and None in (self.tls_ca, self.tls_cert, self.tls_key):
            raise ServiceError("a TLS listener needs tls_ca, tls_cert and tls_key")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise ServiceError("this broker has no TLS listener")
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def password_file(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.directory / "acl"

    @property
    def dynsec_file(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def admin_password(self) -> str:
        """The dynsec admin's secret, made once and kept (mode 0600) with the broker's data."""
        path = self.directory / "admin.secret"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    @property
    def admin_url(self) -> str:
        """The dynsec admin's address, credentials included, on the plain listener."""
        return f"mqtt://{self.admin_username}:{self.admin_password}@127.0.0.1:{self.port}"

    def _auth_config(self) -> list[str]:
        if self.auth == "none":
            return ["allow_anonymous true"]
        if self.auth == "passwd":
            for path in (self.password_file, self.acl_file):
                if not path.exists():
                    path.touch(mode=0o600)
            return [
                "allow_anonymous false",
                f"password_file {self.password_file}",
                f"acl_file {self.acl_file}",
            ]
        plugins = sorted(glob.glob(_DYNSEC_PLUGIN_GLOB))
        if not plugins:
            raise ServiceError("mosquitto_dynamic_security.so not found; install Debian's mosquitto")
        if not self.dynsec_file.exists():
            subprocess.run(  # noqa: S603 - fixed binary; writes the plugin's first configuration
                [
                    str(MOSQUITTO_CTRL_BIN),
                    "dynsec",
                    "init",
                    str(self.dynsec_file),
                    self.admin_username,
                    self.admin_password,
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        return [
            "allow_anonymous false",
            f"plugin {plugins[0]}",
            f"plugin_opt_config_file {self.dynsec_file}",
        ]

    def _tls_listener(self) -> list[str]:
        if self.tls_port is None:
            return []
        return [
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.tls_ca}",
            f"certfile {self.tls_cert}",
            f"keyfile {self.tls_key}",
            "tls_version tlsv1.2",
            *self._listener_auth(),
        ]

    def _listener_auth(self) -> list[str]:
        """Per listener (Mosquitto 2 applies it to the listener above it): with password
        files, an account's client id is its name, so that no device can take over the hub's
        session or another device's. dynsec pins the client id per account instead."""
        return ["use_username_as_clientid true"] if self.auth == "passwd" else []

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        user = pwd.getpwuid(os.getuid()).pw_name
        conf.write_text(
            "\n".join(
                [
                    f"pid_file {self.pid_file}",
                    f"user {user}",
                    "persistence true",
                    f"persistence_location {self.directory}/",
                    "autosave_interval 30",
                    f"max_queued_messages {self.max_queued_messages}",
                    "max_queued_bytes 0",
                    "max_inflight_messages 0",
                    # The contract's largest message (devices.MAX_PAYLOAD_BYTES) with room for
                    # its topic and properties; a client that sends a larger packet is
                    # disconnected (Mosquitto 2 prefers this to message_size_limit).
                    f"max_packet_size {self.max_packet_size}",
                    "persistent_client_expiration 7d",
                    f"log_dest file {self.directory}/mosquitto.log",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "connection_messages true",
                    # global, for every listener (per_listener_settings is false)
                    *self._auth_config(),
                    f"listener {self.port} 127.0.0.1",
                    *self._listener_auth(),
                    *self._tls_listener(),
                    self.extra_config,
                    "",
                ]
            )
        )
        return conf

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, timeout: float = 15.0) -> None:
        if self.pid() is not None and _port_open(self.port):
            return
        if not MOSQUITTO_BIN.exists():
            raise ServiceError("mosquitto is not installed; run scripts/bootstrap")
        conf = self.write_config()
        subprocess.run(  # noqa: S603 - fixed binary, our own config file
            [str(MOSQUITTO_BIN), "-c", str(conf), "-d"], check=True, capture_output=True, timeout=timeout
        )
        _wait(lambda: _port_open(self.port), timeout, f"mosquitto on port {self.port}")
        if self.tls_port is not None:
            tls_port = self.tls_port
            _wait(lambda: _port_open(tls_port), timeout, f"mosquitto's TLS listener on port {tls_port}")

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files; connected clients stay."""
        pid = self.pid()
        if pid is None:
            raise ServiceError("mosquitto is not running")
        os.kill(pid, signal.SIGHUP)

    def stop(self, timeout: float = 15.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # Mosquitto writes its persistent store on SIGTERM
        _wait(lambda: not pid_alive(pid), timeout, "mosquitto to stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class PostgresServer:
    """A PostgreSQL 15 cluster with TimescaleDB preloaded, owned by this project."""

    directory: Path
    port: int = field(default_factory=free_port)
    timescaledb: bool = True
    database: str = "ankang"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.database):
            raise ServiceError(f"database name {self.database!r} must be a plain lower-case identifier")

    @property
    def url(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def _user(self) -> str:
        return "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name

    @property
    def _data(self) -> Path:
        return self.directory / "data"

    def _run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        if os.getuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise ServiceError(
                f"{Path(args[0]).name if os.getuid() else args[3]} failed: {proc.stderr.strip()}"
            )
        return proc

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            pg = pwd.getpwnam("postgres")
            # Every ancestor must be traversable by the postgres user.
            for parent in [self.directory, *self.directory.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
            os.chown(self.directory, pg.pw_uid, pg.pw_gid)

    def init(self) -> None:
        if (self._data / "PG_VERSION").exists():
            return
        self._prepare_directory()
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self._data),
                "-U",
                self._user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            timeout=120,
        )
        settings = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.directory}'",
            "max_connections = 200",
            "shared_buffers = 256MB",
            "synchronous_commit = on",
            # Waveform ingest writes WAL fast. With the default 1 GB, a 1,000 msg/s benchmark
            # phase right after a 5,000 msg/s one had a p99 lag of 3.7 s; with 8 GB, 0.05 s.
            "max_wal_size = '8GB'",
            "checkpoint_timeout = '15min'",
            "timezone = 'UTC'",
            "log_min_messages = warning",
            "timescaledb.telemetry_level = off" if self.timescaledb else "",
            "shared_preload_libraries = 'timescaledb'" if self.timescaledb else "",
        ]
        conf = self._data / "postgresql.auto.conf"
        with conf.open("a") as fh:
            fh.write("\n".join(s for s in settings if s) + "\n")

    def running(self) -> bool:
        pidfile = self._data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        return pid_alive(pid)

    def start(self, timeout: float = 60.0) -> None:
        self.init()
        if not self.running():
            self._run(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self._data),
                    "-l",
                    str(self.directory / "postgres.log"),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ],
                timeout=timeout + 5,
            )
        self._create_database()

    def _create_database(self) -> None:
        psql = [
            str(PG_BIN / "psql"),
            "-h",
            str(self.directory),
            "-p",
            str(self.port),
            "-U",
            self._user,
            "-d",
            "postgres",
            "-Atqc",
        ]
        # the name is checked against a plain identifier pattern in __post_init__
        exists = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"])  # noqa: S608
        if exists.stdout.strip() != "1":
            self._run([*psql, f'CREATE DATABASE "{self.database}"'])

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        if not self.running():
            return
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self._data),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            timeout=timeout + 5,
        )

    def destroy(self) -> None:
        with contextlib.suppress(ServiceError):
            self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
