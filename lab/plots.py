"""Charts of benchmark results, for docs/benchmarks.md and for people who would rather look than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only; no display
import matplotlib.pyplot as plt

PROCESSES = ("consumer", "mosquitto", "postgres", "load generator")
COLOURS = {"consumer": "#1f77b4", "mosquitto": "#ff7f0e", "postgres": "#2ca02c", "load generator": "#9467bd"}


def plot_ingest(summary: dict[str, Any], path: Path) -> Path:
    """Three panels: throughput per phase, ingest lag per live phase, CPU seconds by process."""
    phases: dict[str, dict[str, Any]] = summary["phases"]
    names = list(phases)
    fig, (rate_ax, lag_ax, cpu_ax) = plt.subplots(1, 3, figsize=(15, 4.5))

    rates = [phases[n]["rate"] for n in names]
    rate_ax.bar(names, rates, color=["#7f7f7f" if n == "bare-drain" else "#1f77b4" for n in names])
    for i, n in enumerate(names):
        target = phases[n]["target_rate"]
        if target:
            rate_ax.plot([i - 0.4, i + 0.4], [target, target], color="#d62728", linewidth=2)
    rate_ax.axhline(5000, color="#d62728", linestyle=":", linewidth=1)
    rate_ax.set_title("messages/s stored (red: target rate)")
    rate_ax.tick_params(axis="x", rotation=20)

    live = [n for n in names if phases[n]["target_rate"]]
    for k, stat in enumerate(("p50_lag_s", "p99_lag_s", "max_lag_s")):
        values = [phases[n][stat] or 0.0 for n in live]
        lag_ax.bar(
            [i + (k - 1) * 0.27 for i in range(len(live))], values, width=0.27, label=stat.split("_")[0]
        )
    lag_ax.set_xticks(range(len(live)), [f"{n}\n@{phases[n]['target_rate']:.0f}/s" for n in live])
    lag_ax.axhline(1.0, color="#d62728", linestyle=":", linewidth=1)
    lag_ax.set_yscale("log")
    lag_ax.set_title("publish → commit lag, s (red: 1 s target)")
    lag_ax.legend()

    bottom = [0.0] * len(names)
    for proc in PROCESSES:
        per_msg = [1e6 * phases[n]["cpu_s"].get(proc, 0.0) / max(phases[n]["stored"], 1) for n in names]
        cpu_ax.bar(names, per_msg, bottom=bottom, label=proc, color=COLOURS[proc])
        bottom = [b + v for b, v in zip(bottom, per_msg, strict=True)]
    cpu_ax.set_title("CPU µs per message, by process")
    cpu_ax.tick_params(axis="x", rotation=20)
    cpu_ax.legend()

    fig.suptitle(
        f"ankang bench ingest: hub {summary['msgs_per_s']:.0f} msg/s, "
        f"bare pipe {summary['bare_msgs_per_s'] or 0:.0f} msg/s, ratio {summary['ratio']}; "
        f"lost {summary['lost']}, duplicated {summary['duplicated']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
