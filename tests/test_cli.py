"""The `reluscope regions` commands, run through typer's test runner."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import reluscope as rs
from reluscope.cli import app
from reluscope.nets import cnn, mlp

runner = CliRunner()


def _count(output: str, word: str) -> int:
    match = re.search(rf"(\d+)\s+linear {word}", output)
    assert match, output
    return int(match.group(1))


def test_plane_writes_png_and_prints_the_api_count(tmp_path: Path):
    out = tmp_path / "r.png"
    result = runner.invoke(
        app, ["regions", "plane", "--model", "mlp:2-16-16-1", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _count(result.output, "regions") == rs.plane(mlp([2, 16, 16, 1], seed=3)).num_regions


def test_plane_with_extent_and_weights_file(tmp_path: Path):
    model = mlp([2, 12, 12, 1], seed=7)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    args = [
        "regions",
        "plane",
        "--model",
        "mlp:2-12-12-1",
        "--seed",
        "0",
        "--weights",
        str(weights),
    ]
    args += ["--extent", "-2,2,-1,3", "--out", str(tmp_path / "r.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _count(result.output, "regions") == rs.plane(model, extent=(-2, 2, -1, 3)).num_regions


def test_plane_through_points_file_on_a_cnn(tmp_path: Path):
    model = cnn(in_channels=1, image_size=6, channels=(2,), num_classes=3, seed=1)
    pts = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.save(tmp_path / "pts.npy", pts.numpy())
    args = [
        "regions",
        "plane",
        "--model",
        "cnn:in_channels=1,image_size=6,channels=2,num_classes=3",
    ]
    args += [
        "--seed",
        "1",
        "--through",
        str(tmp_path / "pts.npy"),
        "--out",
        str(tmp_path / "c.png"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _count(result.output, "regions") == rs.plane_through(model, pts).num_regions


def test_line_prints_piece_count(tmp_path: Path):
    out = tmp_path / "l.png"
    args = [
        "regions",
        "line",
        "--model",
        "mlp:2-16-16-3",
        "--start=-1,-1",
        "--end",
        "1,0.5",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists()
    expected = rs.line(mlp([2, 16, 16, 3], seed=0), [-1.0, -1.0], [1.0, 0.5]).num_pieces
    assert _count(result.output, "pieces") == expected


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--extent", "1,0,0,1"], "empty extent"),
        (["--extent", "a,b"], "comma-separated numbers"),
        (["--weights", "/nonexistent/w.pt"], "does not exist"),
        (["--dtype", "float16"], "float16"),
        (["--u", "1,0", "--v", "2,0"], "parallel"),
        (["--origin", "1,2,3"], "origin has 3 values"),
    ],
)
def test_plane_bad_input_is_a_clear_error(tmp_path: Path, args, needle):
    base = ["regions", "plane", "--model", "mlp:2-8-1", "--out", str(tmp_path / "x.png")]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_unknown_model_and_corrupt_weights(tmp_path: Path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["regions", "plane", "--model", "mlp:2-8-1", "--weights", str(bad)])
    assert result.exit_code == 2 and "bad.pt" in result.output
    result = runner.invoke(app, ["regions", "plane", "--model", "transformer:2-8"])
    assert result.exit_code == 2 and "transformer" in result.output


def test_output_directory_missing_keeps_nothing_half_written(tmp_path: Path):
    out = tmp_path / "missing" / "r.png"
    result = runner.invoke(app, ["regions", "plane", "--model", "mlp:2-8-1", "--out", str(out)])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not out.parent.exists()
