"""``ankang``: the one command line of the project, one module per command group.

Commands import their packages lazily, so that ``ankang --help`` is quick and a command pulls
in only what it uses; the lab's (``bench``, ``eval``, ``train``, ``replay``, ``services``)
import ``lab`` only when they run.
"""

from __future__ import annotations

import typer

from ankang.cli import accounts, alarms, bench, devices, replay, run, services, simulate, train
from ankang.cli import eval as eval_

app = typer.Typer(help="ankang (安康): IoT hub for elderly care and fire safety.", no_args_is_help=True)
app.command()(run.hub)
app.command("migrate")(run.migrate_cmd)
app.command()(run.alerts)
app.command("api")(run.api_cmd)
app.command()(run.demo)
app.command()(simulate.simulate)
app.command()(replay.replay)
app.add_typer(devices.app, name="devices")
app.add_typer(services.app, name="services")
app.add_typer(alarms.app, name="alarms")
app.add_typer(accounts.app, name="accounts")
app.add_typer(bench.app, name="bench")
app.add_typer(eval_.app, name="eval")
app.add_typer(train.app, name="train")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
