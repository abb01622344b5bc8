"""The ``reluscope`` command line: one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from reluscope.cli.bounds import bounds
from reluscope.cli.common import set_debug
from reluscope.cli.experiments import list_experiments, reproduce, run
from reluscope.cli.measure import measure
from reluscope.cli.regions import regions_app
from reluscope.cli.sweep import sweep

app = typer.Typer(help="Look inside piecewise-linear (ReLU) networks.", no_args_is_help=True)


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an internal error.")
    ] = False,
) -> None:
    """Look inside piecewise-linear (ReLU) networks."""
    set_debug(debug)


app.add_typer(regions_app, name="regions")
app.command("measure")(measure)
app.command("bounds")(bounds)
app.command("experiments")(list_experiments)
app.command("run")(run)
app.command("reproduce")(reproduce)
app.command("sweep")(sweep)


def main() -> None:
    app()
