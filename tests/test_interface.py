"""Nothing of the outward interface goes missing: every command and option, every route and page.

The snapshots in tests/data/ are rewritten with ``python -m tests.interface --write``; review the
diff before committing it.
"""

from __future__ import annotations

from tests.interface import CLI_SNAPSHOT, ROUTES_SNAPSHOT, cli_tree, http_routes


def test_command_tree_matches_snapshot():
    assert cli_tree() == CLI_SNAPSHOT.read_text(encoding="utf-8")


def test_http_routes_match_snapshot():
    assert http_routes() == ROUTES_SNAPSHOT.read_text(encoding="utf-8")
