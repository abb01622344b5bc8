"""The `reluscope bounds` command, run through typer's test runner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from reluscope import bounds as B
from reluscope.cli import app
from reluscope.data import load_data
from reluscope.nets.spec import load_model

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
MODEL, DATA, SEED = "mlp:3-8-8-2", "gaussian:n=40,d=3", 2


def _bounds(*args: str):
    return runner.invoke(app, ["bounds", "--model", MODEL, "--data", DATA, *args])


def _api(**options) -> B.BoundTable:
    module, _ = load_model(MODEL, seed=SEED)
    dataset = load_data(DATA, seed=SEED)
    return B.compare(module, dataset.x, dataset.y, **options)


def test_bounds_writes_the_api_table(tmp_path: Path):
    out = tmp_path / "b.parquet"
    args = ["--margin", "0.2", "--delta", "0.1", "--seed", str(SEED), "--out", str(out)]
    result = _bounds(*args)
    assert result.exit_code == 0, result.output
    expected = _api(margin=0.2, delta=0.1).summary(model=MODEL, data=DATA, seed=SEED)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    for name in B.BOUNDS:
        assert name in result.output
    assert "wrote 6 records" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["b.parquet"]


def test_default_margin_ranks_and_estimate(tmp_path: Path):
    out = tmp_path / "b.csv"
    args = ["--bounds", "low-rank,grs", "--ranks", "2,2,2", "--mc-draws", "2", "--out", str(out)]
    result = _bounds(*args, "--seed", str(SEED))
    assert result.exit_code == 0, result.output
    module, _ = load_model(MODEL, seed=SEED)
    dataset = load_data(DATA, seed=SEED)
    gamma = B.default_margin(B.mlp_weights(module, (3,))(dataset.x), dataset.y)
    frame = pd.read_csv(out)
    assert list(frame["bound"]) == ["low-rank", "grs"]
    assert frame["margin"].iloc[0] == pytest.approx(gamma)
    expected = _api(margin=gamma, bounds=["low-rank", "grs"], ranks=[2, 2, 2])
    assert frame["log10_bound"].tolist() == pytest.approx(
        expected.summary()["log10_bound"].tolist()
    )
    assert "Monte Carlo" in result.output and "looseness" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--delta", "1.5"], "delta"),
        (["--margin=-1"], "margin"),
        (["--bounds", "grs,pac"], "bounds must be a non-empty list of bound names"),
        (["--ranks", "two"], "--ranks"),
        (["--ranks", "9,9,9"], "exceeds"),
        (["--out", "table.txt"], ".parquet"),
        (["--biases", "drop"], "biases"),
    ],
)
def test_bad_options_exit_2_with_a_message(args, message):
    result = _bounds("--margin", "0.2", *args) if "--margin=-1" not in args else _bounds(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_unlabelled_data_and_unsupported_models():
    result = runner.invoke(app, ["bounds", "--model", MODEL, "--data", "uniform:n=10,d=3"])
    assert result.exit_code == 2 and "no labels" in result.output
    args = ["bounds", "--model", "cnn:image_size=8", "--data", "digits:flatten=false"]
    result = runner.invoke(app, args + ["--margin", "1"])
    assert result.exit_code == 2 and "unsupported layer" in result.output
