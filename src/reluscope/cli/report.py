"""``reluscope report RUN_DIR...``: the HTML report rebuilt from run directories alone."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from reluscope.cli.common import _check_output_file, _run, console


def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Directories written by reluscope run, reproduce or sweep (runs are found up "
            "to 3 levels below each).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="HTML file to write (default: RUN_DIR/index.html for one directory, "
            "else reluscope-report.html here)."
        ),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the report in the web browser.")
    ] = False,
) -> None:
    """Build the self-contained HTML report of finished runs from their directories alone:
    the outcomes, figures and provenance the runs saved (no experiment is run or imported)."""

    def go() -> None:
        from reluscope.report.html import report_directories

        if out is not None:
            _check_output_file(out, (".html",))
        target = out or (
            run_dirs[0] / "index.html" if len(run_dirs) == 1 else Path("reluscope-report.html")
        )
        path = report_directories(run_dirs, target)
        show_report(path, open_)

    _run(go)


def show_report(path: Path, open_in_browser: bool) -> None:
    """Print the report's absolute file:// address, and open it in the browser if asked."""
    url = path.resolve().as_uri()
    console.print(f"report: [link={url}]{url}[/link]")
    if open_in_browser:
        webbrowser.open(url)
