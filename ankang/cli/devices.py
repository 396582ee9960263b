"""``ankang devices``: the device registry, and the devices' broker accounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ankang.cli.common import ErrorExit, load_settings, with_database

if TYPE_CHECKING:
    from devices import DeviceSpec, Registry
    from devices.provisioning import Credentials, Provisioner

T = TypeVar("T")

app = typer.Typer(help="Manage the device registry.", no_args_is_help=True)


def on_registry(action: Callable[[Registry], Awaitable[T]], errors: Sequence[ErrorExit] = ()) -> T:
    """Run ``action`` on the device registry in the database (see ``with_database``)."""
    from devices import Registry

    return with_database(lambda conn: action(Registry(conn)), errors)


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

    fields = {
        "id": device_id,
        "kind": kind,
        "facility": facility,
        "room": room,
        "bed": bed,
        "resident": resident,
        "heartbeat_s": heartbeat_s,
        "placement": placement,
    }
    try:
        return DeviceSpec.model_validate(fields)
    except ValidationError as exc:
        typer.echo("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), err=True)
        raise typer.Exit(2) from None


@app.command("add")
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
    on_registry(lambda reg: reg.add(spec), errors=[(RegistryError, 1, "")])
    typer.echo(f"registered {device_id}")


@app.command("list")
def devices_list() -> None:
    """List registered devices."""
    devices = on_registry(lambda reg: reg.devices())
    typer.echo(f"{'id':<24} {'kind':<15} {'facility':<16} {'room':<8} {'bed':<8} {'resident':<10} hb_s")
    for d in devices:
        typer.echo(
            f"{d.id:<24} {d.kind:<15} {d.facility_id:<16} {d.room_id or '-':<8} {d.bed_id or '-':<8} "
            f"{d.resident_id or '-':<10} {d.heartbeat_s}"
        )


@app.command("import")
def devices_import(path: Annotated[Path, typer.Argument(metavar="FILE")]) -> None:
    """Import a facility file (YAML) or a device CSV. Nothing is written if any entry is invalid."""
    import psycopg

    from devices import load_facility_file
    from devices.errors import RegistryError

    try:
        spec = load_facility_file(path)
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    count = on_registry(
        lambda reg: reg.apply(spec),
        errors=[(RegistryError, 1, ""), (psycopg.Error, 1, "the registry refused the file: ")],
    )
    typer.echo(f"imported {len(spec.facilities)} facilities and {count} devices")


# -- devices provision | rotate | revoke: broker accounts (devices/provisioning.py) ----------


def _with_provisioner(action: Callable[[Provisioner], Awaitable[T]]) -> T:
    """Run ``action`` with a Provisioner wired to the broker named by ``ANKANG_BROKER_*``."""
    import psycopg

    from devices.provisioning import (
        BridgeTopics,
        BrokerAuth,
        Dynsec,
        NoBrokerAuth,
        PasswdFiles,
        Provisioner,
        ProvisioningError,
    )

    settings = load_settings()
    try:
        # the hub's subscriptions, which the hub and bridge roles' rules follow
        bridges = BridgeTopics(settings.zigbee2mqtt_base_topic, settings.chirpstack_topic)
    except ProvisioningError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    # the settings have checked that the mode has what it needs (hub.settings)
    chosen = settings.broker
    broker: BrokerAuth
    if chosen.mode == "passwd" and chosen.files is not None:
        broker = PasswdFiles(chosen.files.password_file, chosen.files.acl_file, chosen.files.pid_file)
    elif chosen.mode == "dynsec" and chosen.admin is not None:
        try:
            broker = Dynsec(chosen.admin)
        except ProvisioningError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    else:
        broker = NoBrokerAuth()
    public_url = chosen.public_url

    return with_database(
        lambda conn: action(Provisioner(conn, broker, public_url, bridges)),
        errors=[(ProvisioningError, 1, ""), (psycopg.Error, 1, "database error: ")],
        database_url=settings.database_url,
    )


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


@app.command("provision")
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
    _print_credentials(creds, load_settings().broker_auth)


@app.command("rotate")
def devices_rotate(username: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Give a device (or service account) a new secret; the old one stops working at once."""
    creds = _with_provisioner(lambda p: p.rotate(username))
    _print_credentials(creds, load_settings().broker_auth)


@app.command("revoke")
def devices_revoke(username: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """End a device's (or service account's) broker access, closing its live connection."""
    _with_provisioner(lambda p: p.revoke(username))
    typer.echo(f"revoked {username}")


@app.command("service-account")
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
    _print_credentials(creds, load_settings().broker_auth)


@app.command("accounts")
def devices_accounts() -> None:
    """List broker accounts: provisioned, rotated and revoked times (never secrets)."""
    rows = _with_provisioner(lambda p: p.accounts())
    typer.echo(f"{'username':<24} {'role':<13} {'provisioned':<20} {'rotated':<20} revoked")

    def fmt(value: object) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"

    for username, role, provisioned, rotated, revoked in rows:
        typer.echo(f"{username:<24} {role:<13} {fmt(provisioned):<20} {fmt(rotated):<20} {fmt(revoked)}")


@app.command("broker-sync")
def devices_broker_sync() -> None:
    """Bring the broker's accounts in step with the database (after a restore or a failed change)."""
    problems = _with_provisioner(lambda p: p.sync())
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo("broker in step" if not problems else f"{len(problems)} accounts need attention")
    if problems:
        raise typer.Exit(1)
