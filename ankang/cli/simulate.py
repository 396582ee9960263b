"""``ankang simulate``: a simulated fleet over MQTT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ankang.cli.common import load_settings, setup_logging
from ankang.cli.devices import on_registry


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
    setup_logging()
    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from simulators.engine import run_scenario
    from simulators.fleet import build_fleet
    from simulators.scenario import Scenario, ScenarioError, load_scenario, parse_offset, with_prefix

    settings = load_settings()
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
        on_registry(lambda reg: reg.apply(fleet.facility_file))
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
