"""Evaluations write their report where they are told, and nowhere else."""

from __future__ import annotations

from pathlib import Path

from lab.docregion import publish


def _draw(path: Path) -> None:
    path.write_bytes(b"png")


def test_nothing_is_written_unless_asked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert publish("x-eval", lambda image: f"figures {image}", draw=_draw) == []
    assert list(tmp_path.iterdir()) == []


def test_a_report_of_its_own_gets_its_chart_beside_it(tmp_path: Path) -> None:
    report = tmp_path / "out" / "fall.md"
    written = publish("fall-eval", lambda image: f"![chart]({image})", report=report, draw=_draw)
    assert written == [report.with_suffix(".png"), report]
    assert report.read_text() == "![chart](fall.png)\n"


def test_a_docs_region_is_rewritten_and_the_prose_kept(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "detection.md"
    docs.parent.mkdir()
    docs.write_text("intro\n\n<!-- fire-eval:start -->\nold\n<!-- fire-eval:end -->\n\noutro\n")
    publish("fire-eval", lambda image: f"new ![c]({image})", docs=docs, draw=_draw)
    assert docs.read_text() == (
        "intro\n\n<!-- fire-eval:start -->\nnew ![c](img/fire-eval.png)\n<!-- fire-eval:end -->\n\noutro\n"
    )
    assert (docs.parent / "img" / "fire-eval.png").exists()
