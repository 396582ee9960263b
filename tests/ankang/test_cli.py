"""The command line's shared pieces: one database wrapper, and files written only where told."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ankang.cli import app
from hub.detectors.fall import MODEL_PATH


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [["alarms", "list"], ["accounts", "list"], ["devices", "list"]])
def test_an_unreachable_database_ends_every_group_with_exit_1(command: list[str], monkeypatch) -> None:
    monkeypatch.setenv("ANKANG_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{_closed_port()}/none")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "cannot connect to the database" in result.output


def test_train_fall_writes_into_the_state_directory_not_the_package(tmp_path: Path, monkeypatch) -> None:
    import lab.falls

    written: list[Path] = []

    def fake_train(out: Path, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"model")
        written.append(out)
        return {
            "model": str(out),
            "model_bytes": 5,
            "rows": 1,
            "positives": 1,
            "seconds": {"features": 0.0, "fit_and_cv": 0.0},
        }

    monkeypatch.setattr(lab.falls, "train", fake_train)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    shipped = MODEL_PATH.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["train", "fall"])
    assert result.exit_code == 0, result.output
    assert written == [tmp_path / "state" / "ankang" / "models" / "fall.npz"]
    assert "ANKANG_FALL_MODEL=" in result.output
    assert MODEL_PATH.stat().st_mtime_ns == shipped

    result = CliRunner().invoke(app, ["train", "fall", "--out", str(tmp_path / "mine.npz")])
    assert result.exit_code == 0, result.output
    assert written[-1] == tmp_path / "mine.npz"
