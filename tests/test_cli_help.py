"""The command line's help, version, choices and suggestions."""

from __future__ import annotations

import re
from importlib import metadata

from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.experiments import experiments, get_experiment
from reluscope.experiments.registry import declared_names

cli = CliRunner()


def test_version_and_short_help():
    result = cli.invoke(app, ["--version"])
    assert (
        result.exit_code == 0
        and result.output.strip() == f"reluscope {metadata.version('reluscope')}"
    )
    for args in (["-h"], ["run", "-h"], ["regions", "plane", "-h"]):
        assert cli.invoke(app, args).exit_code == 0


def test_declared_names_are_the_registered_experiments():
    assert declared_names() == sorted(e.name for e in experiments())


def test_help_lists_choices_and_no_docstring_line_breaks(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    run_help = cli.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    for name in declared_names():
        assert name in run_help
    assert "quick|paper" in run_help
    measure_help = cli.invoke(app, ["measure", "--help"], env={"COLUMNS": "200"}).output
    assert "theory|paper_code" in measure_help and "exact|sketch" in measure_help
    top = cli.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    # at 200 columns each command's one-line summary fits on its own line
    assert re.search(r"│ sweep +Run an experiment once per combination[^\n]*\n│ report", top)


def test_mistyped_names_get_a_suggestion(tmp_path):
    result = cli.invoke(app, ["run", "weight-dacay", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "did you mean 'weight-decay'?" in result.output
    result = cli.invoke(
        app, ["run", "toy_experiment:EXPERIMENT", "--set", "mena=1", "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 2 and "did you mean 'mena' -> 'mean'?" in result.output


def test_experiments_name_shows_every_key_with_quick_and_paper_values():
    result = cli.invoke(app, ["experiments", "weight-decay"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    config = get_experiment("weight-decay").config
    quick = config.build("quick").to_json()
    paper = config.build("paper").to_json()
    for key, value in quick["train"].items():
        if key in ("seed", "device"):
            continue
        line = next(row for row in result.output.splitlines() if f"│ train.{key} " in row)
        cells = [c.strip() for c in line.split("│")[1:-1]]
        assert cells[2] == re.sub(r"\s", "", __import__("json").dumps(value)) or cells[2]
        expected = (
            "same"
            if paper["train"][key] == value
            else __import__("json").dumps(paper["train"][key])
        )
        assert cells[3] == expected
