"""The alert benchmark's latency distributions as a chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lab.alertbench.pieces import KINDS


def plot_alerts(summary: dict[str, Any] | Sequence[dict[str, Any]], path: Path) -> Path:
    """One panel per kind: the latency CDF of each run, with the target where there is one."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    runs = [summary] if isinstance(summary, dict) else list(summary)
    fig, axes = plt.subplots(1, len(KINDS), figsize=(5.5 * len(KINDS), 4.0 + 0.25 * len(runs)))
    for ax, kind in zip(np.atleast_1d(axes), KINDS, strict=True):
        target = None
        for run in runs:
            row = run["kinds"][kind]
            target = row.get("target") or target
            values = np.sort(np.asarray(row["latencies_s"], dtype=float))
            bg = run["background"]
            label = (
                f"{bg['rate_msgs_per_s']:.0f} msg/s: n={row['seen']}/{row['injected']}, "
                f"p50 {_ms(row['p50_s'])}, p99 {_ms(row['p99_s'])}"
            )
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=label)
        if target:
            ax.axvline(
                target["seconds"], color="#d62728", linestyle=":", label=f"target ({target['statistic']})"
            )
        start = {"fire": "publish", "fall": "impact", "offline": "deadline"}[kind]
        ax.set_title(kind)
        ax.set_xlabel(f"{start} → alarm on the stream, s")
        ax.set_xscale("log")  # tens of ms for a fire, seconds for a fall, minutes when overloaded
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small", frameon=False)
    np.atleast_1d(axes)[0].set_ylabel("fraction of alarms")
    if len(runs) == 1:
        run = runs[0]
        fig.suptitle(
            f"ankang bench alerts: background {run['background']['rate_msgs_per_s']:.0f} msg/s "
            f"({run['load_fraction']:.0%} of {run['max_rate_msgs_per_s']:.0f}), "
            f"hub lag p99 {_ms(run['background']['p99_lag_s'])}"
        )
    else:
        fig.suptitle("ankang bench alerts: latency to the console at several background loads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{1000 * value:.0f} ms" if value < 10 else f"{value:.0f} s"
