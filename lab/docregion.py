"""Generated regions in the docs: ``<!-- NAME:start -->`` … ``<!-- NAME:end -->``.

Evaluations rewrite their own region of a Markdown file that the user names and leave the
prose around it alone, so figures in the docs always come from a command that was run
(``scripts/refresh-docs`` runs them for the repository's docs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_region(doc: Path, name: str, body: str) -> None:
    """Put ``body`` between the region's markers (appending the region if it is missing)."""
    start_marker, end_marker = markers(name)
    region = f"{start_marker}\n{body.strip()}\n{end_marker}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    start, end = text.find(start_marker), text.find(end_marker)
    if start != -1 and end > start:
        text = text[:start] + region + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + region + "\n"
    doc.write_text(text, encoding="utf-8")


def publish(
    name: str,
    markdown: Callable[[str | None], str],
    *,
    docs: Path | None = None,
    report: Path | None = None,
    chart: Path | None = None,
    draw: Callable[[Path], object] | None = None,
) -> list[Path]:
    """Write an evaluation where the user asked, and nowhere else; returns what was written.

    ``markdown(image)`` renders the report, with ``image`` the chart's path relative to the
    Markdown file (None without a chart). ``docs``: a Markdown file whose region ``name`` is
    rewritten (``scripts/refresh-docs`` passes the repository's). ``report``: a Markdown file
    of its own. The chart goes to ``chart``, else ``img/NAME.png`` beside ``docs``, else
    beside ``report``.
    """
    if chart is None and draw is not None:
        if docs is not None:
            chart = docs.parent / "img" / f"{name}.png"
        elif report is not None:
            chart = report.with_suffix(".png")
    written = []
    if chart is not None and draw is not None:
        chart.parent.mkdir(parents=True, exist_ok=True)
        draw(chart)
        written.append(chart)
    for target, region in ((docs, True), (report, False)):
        if target is None:
            continue
        image = os.path.relpath(chart, target.parent) if chart is not None else None
        body = markdown(image)
        if region:
            replace_region(target, name, body)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body.strip() + "\n", encoding="utf-8")
        written.append(target)
    return written
