"""SQL lives with the data's owner: route handlers call query functions and write no SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A statement keyword (upper case, as this code writes SQL) opening a string, or a call that runs one.
_SQL = re.compile(r"""(["']\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s)|\.execute(many)?\(|\bcursor\(""")


@pytest.mark.parametrize("path", [*sorted((ROOT / "api" / "routes").glob("*.py")), ROOT / "api" / "views.py"])
def test_route_handlers_hold_no_sql(path: Path) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SQL.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_check_sees_sql() -> None:
    assert _SQL.search('    "SELECT id FROM alarms"')
    assert _SQL.search("await conn.execute(query)")
    assert not _SQL.search('"""Select the caller\'s alarms."""')
