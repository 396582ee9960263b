"""``ankang services``: the project-owned Mosquitto and PostgreSQL/TimescaleDB (a lab tool)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from lab.localservices import MosquittoServer, PostgresServer

app = typer.Typer(help="Project-owned Mosquitto and PostgreSQL/TimescaleDB.", no_args_is_help=True)


def _services_dir() -> Path:
    env = os.environ.get("ANKANG_SERVICES_DIR")
    if env:
        return Path(env)
    if os.getuid() == 0:
        return Path("/var/lib/ankang/services")
    return Path.home() / ".local/state/ankang/services"


def _services() -> tuple[MosquittoServer, PostgresServer]:
    from lab.localservices import MosquittoServer, PostgresServer

    base = _services_dir()
    mqtt_port = int(os.environ.get("ANKANG_SERVICES_MQTT_PORT", "18830"))
    pg_port = int(os.environ.get("ANKANG_SERVICES_PG_PORT", "55432"))
    return MosquittoServer(base / "mosquitto", port=mqtt_port), PostgresServer(
        base / "postgres", port=pg_port
    )


@app.command("up")
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


@app.command("down")
def services_down() -> None:
    """Stop the project-owned services (their data is kept)."""
    mqtt, pg = _services()
    mqtt.stop()
    pg.stop()
    typer.echo("services stopped")
