"""The sweep's terminal summary (PASS/FAIL per prediction over seeds) and its figures."""

from __future__ import annotations

import os
import re

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from reluscope.cli import app

TOY = "toy_experiment:EXPERIMENT"


def test_sweep_prints_seed_counts_per_prediction_and_draws_a_figure_per_key(tmp_path):
    out = tmp_path / "sweeps"
    args = ["sweep", TOY, "--grid", "n=20,200", "--grid", "mean=0,1", "--seeds", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    runs = pd.read_parquet(out / "toy" / "runs.parquet")
    runs["mean"] = runs["mean"].astype(float)
    row = re.search(r"P2 +(.*)", result.output).group(1).replace("│", " ").split()
    header = re.search(r"prediction +(.*)", result.output).group(1).replace("┃", " ").split()
    for label, cell in zip(header, row, strict=True):
        n, mean = (float(part.split("=")[1]) for part in label.split(","))
        at = runs[(runs["n"] == n) & (runs["mean"] == mean)]
        assert cell == f"{int((at['estimate'] > mean).sum())}/{len(at)}"
    for key in ("n", "mean"):
        with Image.open(out / "toy" / f"sweep_{key}.png") as image:
            assert image.width <= 990 and image.height > 100


def test_the_summary_shows_as_many_key_numbers_as_fit_the_width():
    """At 80 columns the summary keeps its headers whole and within the width, showing fewer
    key numbers (the rest are named in the caption); at 120 columns it shows more."""
    from types import SimpleNamespace

    from rich.console import Console

    from reluscope.cli.sweep import MAX_NUMBERS, _summary_table

    names = [f"number{i}" for i in range(8)]
    row = {"train.weight_decay": 0.1, "runs": 3, "failed_runs": 0, "passed": 5, "failed": 1}
    for name in names:
        row |= {f"{name}_mean": 1.2345, f"{name}_std": 0.0123}
    result = SimpleNamespace(
        name="demo", grid_keys=["train.weight_decay"], summary=lambda: pd.DataFrame([row])
    )
    shown = {}
    for width in (80, 120):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(_summary_table(result, width))
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        assert "…" not in text
        shown[width] = sum(f"number{i}" in text for i in range(8))
        assert f"{8 - shown[width]} more numbers in runs.parquet" in text
    assert 1 <= shown[80] < shown[120] <= MAX_NUMBERS
