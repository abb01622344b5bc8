"""The ``reluscope`` command line: one module per command group."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

import typer

from reluscope.cli.bounds import bounds
from reluscope.cli.common import set_debug
from reluscope.cli.experiments import list_experiments, reproduce, run
from reluscope.cli.measure import measure
from reluscope.cli.regions import regions_app
from reluscope.cli.report import report
from reluscope.cli.sweep import sweep

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    help="Look inside piecewise-linear (ReLU) networks.",
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
)


def _version(show: bool) -> None:
    if show:
        from reluscope.experiments.provenance import package_version

        typer.echo(f"reluscope {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an internal error.")
    ] = False,
) -> None:
    """Look inside piecewise-linear (ReLU) networks."""
    set_debug(debug)


def _command(name: str, function: Callable) -> None:
    """Register ``function`` as command ``name``, its docstring as one paragraph (the source's
    line breaks would otherwise show in the help)."""
    text = " ".join((function.__doc__ or "").split())
    first = re.split(r"(?<=[.;:])\s", text)[0].rstrip(".;:")
    app.command(name, help=text, short_help=first + ".")(function)


app.add_typer(regions_app, name="regions")
for _name, _function in (
    ("measure", measure),
    ("bounds", bounds),
    ("experiments", list_experiments),
    ("run", run),
    ("reproduce", reproduce),
    ("sweep", sweep),
    ("report", report),
):
    _command(_name, _function)


def main() -> None:
    app()
