"""Generated regions in the docs: ``<!-- NAME:start -->`` … ``<!-- NAME:end -->``.

Evaluations and benchmarks rewrite their own region of a Markdown file and leave the
prose around it alone, so figures in the docs always come from a command that was run.
"""

from __future__ import annotations

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
