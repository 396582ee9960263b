"""``ankang replay``: the fall detector over recorded acceleration (lab/replay.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ankang.cli.common import load_settings


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
    from lab.replay import ReplayError, replay_device, replay_files

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
        url = database_url or load_settings().database_url
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
