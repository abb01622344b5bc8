"""The `reluscope measure` command, run through typer's test runner."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import reluscope as rs
from reluscope.cli import app
from reluscope.data import load_data, subsample
from reluscope.nets import mlp
from reluscope.records import frame

runner = CliRunner()
MODEL, DATA, SEED = "mlp:3-8-8-2", "gaussian:n=40,d=3", 2


def _measure(*args: str) -> object:
    return runner.invoke(app, ["measure", "--model", MODEL, "--data", DATA, *args])


def _api_records(x: torch.Tensor) -> list[dict]:
    """What the Python API gives for the CLI call with every measure, --radius 0.1, --n-vertices 6, --seed 2."""
    model, f64 = mlp([3, 8, 8, 2], seed=SEED), torch.float64
    results = [
        rs.local_complexity(model, x, sigma=0.01, seed=SEED, dtype=f64),
        rs.neighborhood_complexity(model, x, radius=0.1, n_vertices=6, seed=SEED, dtype=f64),
        rs.local_rank(model, x, atol=0.01, dtype=f64),
        rs.total_variation(model, x, output="logits", sigma=0.01, dtype=f64),
    ]
    return [row for r in results for row in r.to_records(model=MODEL, data=DATA, seed=SEED)]


def test_measure_writes_the_api_records_to_parquet(tmp_path: Path):
    out = tmp_path / "r.parquet"
    all_four = [
        "--measures",
        "lc,neighborhood,local-rank,tv",
        "--radius",
        "0.1",
        "--n-vertices",
        "6",
    ]
    result = _measure(*all_four, "--seed", str(SEED), "--out", str(out))
    assert result.exit_code == 0, result.output
    expected = frame(_api_records(load_data(DATA, seed=SEED).x))
    buffer = io.BytesIO()  # the same records through Parquet (None in a bool column -> NaN)
    expected.to_parquet(buffer, index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(buffer))
    for name in expected["metric"]:
        assert name in result.output
    assert f"wrote {len(expected)} records" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]  # no temporary file left


def test_measure_csv_with_a_subsample(tmp_path: Path):
    out = tmp_path / "r.csv"
    args = ["--measures", "local-rank,tv", "--n", "10", "--seed", str(SEED), "--out", str(out)]
    result = _measure(*args)
    assert result.exit_code == 0, result.output
    x = subsample(load_data(DATA, seed=SEED), 10, SEED).x
    model, f64 = mlp([3, 8, 8, 2], seed=SEED), torch.float64
    tags = dict(model=MODEL, data=DATA, seed=SEED)
    expected = rs.local_rank(model, x, dtype=f64).to_records(**tags)
    expected += rs.total_variation(model, x, dtype=f64).to_records(**tags)
    frame = pd.read_csv(out)
    assert list(frame["metric"]) == [r["metric"] for r in expected]
    assert frame["value"].tolist() == pytest.approx([r["value"] for r in expected], rel=1e-12)


def test_failed_write_keeps_the_existing_file(tmp_path: Path, monkeypatch):
    out = tmp_path / "r.parquet"
    out.write_bytes(b"old results")

    def disk_full(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    result = _measure("--measures", "local-rank", "--out", str(out))
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert out.read_bytes() == b"old results"
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--measures", "lc,foo"], "valid: lc, neighborhood, local-rank, tv"),
        (["--measures", "neighborhood"], "needs --radius"),
        (
            ["--data", "gaussian:d=4"],
            "shape (4,), but model 'mlp:3-8-8-2' expects inputs of shape (3,)",
        ),
        (["--model", "mlp:64-4-1", "--data", "digits:flatten=false"], "try flatten=true"),
        (["--data", "gaussian:dim=3"], "unknown option(s) ['dim'] for data set 'gaussian'"),
        (["--data", "imagenet"], "unknown data set 'imagenet'"),
        (["--data", "nothere.npz"], "'nothere.npz' does not exist"),
        (["--data", "mnist", "--data-dir", "nowhere"], "data directory 'nowhere' for mnist"),
        (["--n", "41"], "n=41"),
        (["--sigma", "-1"], "sigma"),
        (["--atol", "-1", "--measures", "local-rank"], "atol"),
        (["--output", "5", "--measures", "tv"], "output=5"),
        (["--output", "bogus", "--measures", "tv"], "'bogus'"),
        (["--radius", "0", "--measures", "neighborhood"], "radius"),
        (["--dtype", "float16"], "'float16'"),
        (["--model", "mlp:3"], "bad mlp widths"),
        (["--out", "r.txt"], "must end in .parquet or .csv"),
        (["--out", "no/such/dir/r.parquet", "--data", "bad"], "no/such/dir does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, fragment):
    args = ["--model", MODEL, "--data", DATA, *args]
    result = runner.invoke(app, ["measure", *args])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())


def test_cuda_asked_for_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = _measure("--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available" in result.output
