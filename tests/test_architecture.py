"""Imports flow one way: the contracts in pyproject.toml ([tool.importlinter]), checked by import-linter.

ankang > lab > api > alerts > hub > devices; simulators build on devices only; the product
(devices, hub, alerts, api) never imports simulators, lab, ankang or the lab's libraries; no
import cycles inside a package. ``scripts/test`` runs ``lint-imports`` itself; this test makes a
plain ``pytest`` run check the same contracts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
