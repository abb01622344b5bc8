"""The sweep's terminal summary (PASS/FAIL per prediction over seeds) and its figures."""

from __future__ import annotations

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
