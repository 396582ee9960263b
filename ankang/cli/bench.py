"""``ankang bench``: the benchmarks of lab/ (figures for docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ankang.cli.common import load_settings

app = typer.Typer(
    help="Benchmarks (figures for docs/benchmarks.md, never timed tests).", no_args_is_help=True
)


@app.command("ingest")
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

    from lab.bench import BenchConfig, IngestBench

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
        settings = load_settings()
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
        from lab.plots import plot_ingest

        console.print(f"chart written to {plot_ingest(summary, plot)}")
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    _print_bench(console, summary)


@app.command("devices")
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

    from lab.bench import run_devices_bench

    mqtt_url = database_url = None
    if use_configured:
        settings = load_settings()
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


@app.command("alerts")
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

    from lab.alertbench import AlertBench, AlertBenchConfig, plot_alerts

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
        settings = load_settings()
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


@app.command("detectors")
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

    from lab.detectbench import run_detector_bench

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


@app.command("fanout")
def bench_fanout(
    streams: Annotated[int, typer.Option(min=1, help="Live streams open at once.")] = 1000,
    alarms: Annotated[int, typer.Option(min=1, help="Alarms raised, each for another resident.")] = 20,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between alarms.")] = 1.0,
    mix: Annotated[
        str, typer.Option(help="Shares of the streams by kind: centre, ward, regulator, family.")
    ] = "centre=0.5,ward=0.2,regulator=0.05,family=0.25",
    readers: Annotated[int, typer.Option(min=1, help="Client processes reading the streams.")] = 1,
    profile: Annotated[
        Path | None, typer.Option(help="Sample the API with py-spy while the alarms go out (raw stacks).")
    ] = None,
    use_configured: Annotated[
        bool, typer.Option(help="Use ANKANG_DATABASE_URL instead of a fresh database.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Latency from an alarm's commit to its arrival on each of many live streams, and scope."""
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from lab.alertbench.fanout import FanoutBench, FanoutConfig

    try:
        pairs = (part.split("=") for part in mix.split(",") if part.strip())
        shares = {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        typer.echo("--mix is KIND=SHARE,... (centre, ward, regulator, family)", err=True)
        raise typer.Exit(2) from None
    cfg = FanoutConfig(
        streams=streams, alarms=alarms, interval_s=interval, mix=shares, readers=readers, profile=profile
    )
    if use_configured:
        cfg.database_url = load_settings().database_url
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    with Progress(
        TextColumn("[bold]{task.fields[phase]:<9}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, done: float, total: float, info: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None, phase=phase, info="")
            bar.update(tasks[phase], completed=done, total=total or None, info=info)  # type: ignore[arg-type]

        try:
            with FanoutBench(cfg, progress) as bench:
                summary = bench.run()
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
        return
    console.print(
        f"{summary['streams_ready']}/{summary['streams']} streams {summary['streams_by_kind']}; "
        f"{summary['alarms']} alarms, each to {summary['streams_per_alarm']['min']}"
        f"-{summary['streams_per_alarm']['max']} streams"
    )
    console.print(
        f"delivered {summary['delivered']}/{summary['expected']}, wrong scope {summary['wrong_scope']}, "
        f"duplicates {summary['duplicates']}, resyncs {summary['resyncs']}, degraded {summary['degraded']}"
    )
    for name in ("pair", "first_stream", "last_stream", "commit_call"):
        s = summary[name]
        console.print(f"{name:<13} p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
    met = {True: "yes", False: "no", None: "-"}[summary["met"]]
    console.print(f"target: last stream p99 ≤ {summary['target']['ms']:.0f} ms: {met}")
    console.print(f"API CPU while raising {summary['api']['cpu_s_while_raising']} s")
