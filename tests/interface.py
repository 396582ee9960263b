"""The project's outward interface as text: the command tree with its options, and the HTTP routes.

``tests/test_interface.py`` compares both with the snapshots in ``tests/data/``, so that moving
code cannot drop a command, an option or a route unnoticed. After an intended change, rewrite
the snapshots with ``python -m tests.interface --write`` and review the diff.
``python -m tests.interface --help-text FILE`` writes every command's full ``--help`` instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer.main import get_command

DATA = Path(__file__).resolve().parent / "data"
CLI_SNAPSHOT = DATA / "cli_tree.txt"
ROUTES_SNAPSHOT = DATA / "http_routes.txt"


def cli_app() -> typer.Typer:
    for name in ("ankang.cli", "api.cli"):  # the second: where the command line used to live
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        app = module.app
        assert isinstance(app, typer.Typer)
        return app
    raise RuntimeError("no command line found")


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name in sorted(getattr(cmd, "commands", {})):
        yield from _walk(cmd.commands[name], (*path, name))


def _param(p: Any) -> str:
    # typer (0.2x) carries its own copy of click: read the parameters by their attributes
    names = " ".join([*p.opts, *(f"/{o}" for o in p.secondary_opts)])
    annotation = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    type_name = getattr(annotation, "__name__", None) or str(annotation)
    parts = [f"  {p.param_type_name} {p.name}: {names}", f"type={type_name}"]
    for flag in ("required", "multiple", "is_flag", "hide_input", "confirmation_prompt"):
        if getattr(p, flag, False):
            parts.append(flag)
    for bound in ("min", "max"):
        if getattr(p, bound, None) is not None:
            parts.append(f"{bound}={getattr(p, bound)!r}")
    if not p.required and p.default is not None and not callable(p.default):
        parts.append(f"default={p.default!r}")
    return " ".join(parts)


def cli_tree(root: Any = None) -> str:
    """Every command, subcommand, argument and option, with types, defaults and flags."""
    root = root or get_command(cli_app())
    lines = []
    for path, cmd in _walk(root, ("ankang",)):
        lines.append(" ".join(path) + (" (group)" if hasattr(cmd, "commands") else ""))
        lines.extend(_param(p) for p in cmd.params if p.name != "help")
    return "\n".join(lines) + "\n"


def cli_help_text() -> str:
    """The ``--help`` of every command, as a user sees it."""
    from typer.testing import CliRunner

    app = cli_app()
    runner = CliRunner()
    out = []
    for path, _cmd in _walk(get_command(app), ("ankang",)):
        result = runner.invoke(app, [*path[1:], "--help"], prog_name="ankang", terminal_width=100)
        out.append(f"$ {' '.join(path)} --help\n{result.output}")
    return "\n".join(out)


def http_routes() -> str:
    """Every route of the app, pages and static files included: methods, path, in the schema or not."""
    from api.app import create_app
    from api.settings import ApiSettings

    app = create_app(ApiSettings(database_url="postgresql://unused@127.0.0.1:1/none"))
    lines = set()
    for route in app.routes:
        # FastAPI resolves included routers lazily: their routes are "effective route contexts"
        for r in route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]:
            methods = ",".join(sorted(getattr(r, "methods", None) or ["*"]))
            in_schema = getattr(r, "include_in_schema", False) and hasattr(r, "response_model")
            schema = "api" if in_schema else "page"
            lines.add(f"{methods:<12} {r.path} ({schema})")
    return "\n".join(sorted(lines)) + "\n"


def openapi_json() -> str:
    import json

    from api.app import create_app
    from api.settings import ApiSettings

    app = create_app(ApiSettings(database_url="postgresql://unused@127.0.0.1:1/none"))
    return json.dumps(app.openapi(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        DATA.mkdir(exist_ok=True)
        CLI_SNAPSHOT.write_text(cli_tree(), encoding="utf-8")
        ROUTES_SNAPSHOT.write_text(http_routes(), encoding="utf-8")
        return 0
    if len(argv) == 2 and argv[0] == "--help-text":
        Path(argv[1]).write_text(cli_help_text(), encoding="utf-8")
        return 0
    if len(argv) == 2 and argv[0] == "--openapi":
        Path(argv[1]).write_text(openapi_json(), encoding="utf-8")
        return 0
    print("usage: python -m tests.interface --write | --help-text FILE | --openapi FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
