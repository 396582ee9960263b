"""``ankang eval``: score the detectors (lab/); reports go where the user says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ankang.cli.common import load_settings, setup_logging

app = typer.Typer(help="Detector evaluations (figures for docs/detection.md).", no_args_is_help=True)

DOCS_HELP = (
    "Markdown file whose {region} region is rewritten (scripts/refresh-docs passes docs/detection.md)."
)
REPORT_HELP = "Write the report as a Markdown file of its own."
PLOT_HELP = "Chart to write (default: img/{region}.png beside --docs, else REPORT.png beside --report)."
WRITE_HELP = "Write what --docs, --report and --plot name (--no-write-docs: only print the results)."


def _say_written(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(f"wrote {path}", err=True)


@app.command("fire")
def eval_fire(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per simulated scenario.")] = 3,
    cfast: Annotated[
        bool, typer.Option(help="Also run NIST CFAST bedroom fires (needs the cfast binary).")
    ] = True,
    docs: Annotated[Path | None, typer.Option(help=DOCS_HELP.format(region="fire-eval"))] = None,
    report: Annotated[Path | None, typer.Option(help=REPORT_HELP)] = None,
    plot: Annotated[Path | None, typer.Option(help=PLOT_HELP.format(region="fire-eval"))] = None,
    write_docs: Annotated[bool, typer.Option(help=WRITE_HELP)] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score the room fire detector on simulated and CFAST fires, and on cooking and steam."""
    import orjson

    from lab.docregion import publish
    from lab.fire_eval import DOCS_REGION, evaluate
    from lab.fire_eval import plot as draw
    from lab.fire_eval import report as render

    evaluation = evaluate(seeds, use_cfast=cfast, progress=lambda msg: typer.echo(msg, err=True))
    summary = evaluation.summary()
    if write_docs:
        command = (
            "ankang eval fire"
            + (f" --seeds {seeds}" if seeds != 3 else "")
            + ("" if cfast else " --no-cfast")
        )
        written = publish(
            DOCS_REGION,
            lambda image: render(evaluation, summary, image or "", command),
            docs=docs,
            report=report,
            chart=plot,
            draw=lambda path: draw(evaluation, path),
        )
        _say_written(written)
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


@app.command("scenario")
def eval_scenario(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML.")] = Path("scenarios/demo.yaml"),
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 1.0,
    external: Annotated[
        bool, typer.Option(help="Use ANKANG_MQTT_URL/ANKANG_DATABASE_URL instead of fresh services.")
    ] = False,
    docs: Annotated[Path | None, typer.Option(help=DOCS_HELP.format(region="scenario-eval"))] = None,
    report: Annotated[Path | None, typer.Option(help=REPORT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a scenario through broker, hub and database, and score the detections against its truth."""
    setup_logging()
    import tempfile

    import orjson
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from lab.docregion import publish
    from lab.scenario_eval import report as render
    from lab.scenario_eval import run_scenario_eval
    from simulators.scenario import load_scenario

    settings = load_settings() if external else None
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
    markdown = render(result, scenario.name, command)
    _say_written(publish("scenario-eval", lambda _image: markdown, docs=docs, report=report))
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


@app.command("fall")
def eval_fall(
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped one).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out simulated clips.")] = 11,
    falls: Annotated[
        int, typer.Option(min=1, help="Falls per kind x placement x rate (5 x 3 x 4 cells).")
    ] = 20,
    adl: Annotated[int, typer.Option(min=1, help="Daily-living clips per placement x rate.")] = 25,
    docs: Annotated[Path | None, typer.Option(help=DOCS_HELP.format(region="fall-eval"))] = None,
    report: Annotated[Path | None, typer.Option(help=REPORT_HELP)] = None,
    plot: Annotated[Path | None, typer.Option(help=PLOT_HELP.format(region="fall-eval"))] = None,
    write_docs: Annotated[bool, typer.Option(help=WRITE_HELP)] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score the fall detector on held-out simulated falls and daily living, and on UCI HAPT."""
    import orjson

    from lab.docregion import publish
    from lab.falls import DOCS_REGION, DatasetError, evaluate, plot_report, progress_printer, report_markdown

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
        written = publish(
            DOCS_REGION,
            lambda image: report_markdown(summary, command, image),
            docs=docs,
            report=report,
            chart=plot,
            draw=lambda path: plot_report(summary, outcomes, path),
        )
        _say_written(written)
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
