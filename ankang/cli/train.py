"""``ankang train``: train detector models (lab/) into a file of the user's, never the package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train detector models.", no_args_is_help=True)


@app.command("fall")
def train_fall(
    seed: Annotated[int, typer.Option(help="Seed of the training data and the fit.")] = 7,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Model file to write, with its .json beside it (default: models/fall.npz in the state "
            "directory: $XDG_STATE_HOME/ankang, /var/lib/ankang as root, else ~/.local/state/ankang)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train the fall classifier on simulated falls and real daily living (UCI HAPT)."""
    import orjson

    from ankang.paths import state_dir
    from lab.falls import DatasetError, Recipe, progress_printer, train

    # never the shipped model inside the installed package: the hub loads a new one only when told
    out = out or state_dir("models") / "fall.npz"
    try:
        summary = train(out, Recipe(seed=seed), progress=progress_printer())
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
    typer.echo(
        f"to use it: ANKANG_FALL_MODEL={out.resolve()} for the hub; ankang eval fall --model {out} scores it",
        err=True,
    )
