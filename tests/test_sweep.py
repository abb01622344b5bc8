"""Sweeps: grid expansion, the local and Ray backends against direct runs of each config,
skipping finished runs, failed runs, and errors before anything runs. The experiment swept is
tests/sweep_fixture_experiment.py, whose records are a closed form of its config and seed."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.errors import InputError
from reluscope.experiments import Outcome, run_experiment
from reluscope.sweep import SweepResult, SweepRun, expand_grid, parse_grid, run_id, run_sweep
from reluscope.values import parse_assignments

FIXTURE = "sweep_fixture_experiment:EXPERIMENT"
GRID = {"a": [-1.0, 0.5, 2.0], "mode": ["x", "y"]}  # a < 0 makes the fixture raise
FIXED = {"widths": [1, 2]}
SEEDS = 2
POINTS = expand_grid(GRID, SEEDS, FIXED)
GOOD = [p for p in POINTS if p.values["a"] >= 0]


def closed_form(a: float, mode: str, seed: int, n: int = 3, widths=(1, 2)) -> list[float]:
    """The fixture's values at steps 0..n-1."""
    return [a * s * s + seed + (sum(widths) if mode == "y" else 0) for s in range(n)]


def cli_sweep(out: Path, a_values: str):
    """``reluscope sweep`` of the fixture over a = ``a_values`` and both modes, with SEEDS seeds
    and the FIXED widths, into ``out``: the CliRunner result."""
    args = ["sweep", FIXTURE, "--grid", f"a={a_values}", "--grid", "mode=x,y"]
    args += ["--seeds", str(SEEDS), "--set", "widths=[1,2]", "--out", str(out)]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The sweep on the local backend with 2 workers: 12 runs, 4 of which fail."""
    out = tmp_path_factory.mktemp("local")
    result = run_sweep(FIXTURE, GRID, SEEDS, "quick", FIXED, out, workers=2, progress=False)
    return out, result


def test_parse_grid_reads_each_value_like_a_set_value():
    pairs = ["lr=1e-3, 0.5", "mode=x,y", "widths=[64,64],[128]", 'name="a,b",c', "flag=true,false"]
    grid = parse_grid(pairs)
    assert grid == {
        "lr": [0.001, 0.5],
        "mode": ["x", "y"],
        "widths": [[64, 64], [128]],
        "name": ["a,b", "c"],
        "flag": [True, False],
    }
    for key, text in [("lr", "0.5"), ("widths", "[128]"), ("name", '"a,b"'), ("mode", "y")]:
        assert parse_assignments([f"{key}={text}"])[key] in grid[key]


@pytest.mark.parametrize("pair", ["lr", "=1,2", "lr=", "lr=1,,2", "lr=1,"])
def test_parse_grid_refuses_malformed_pairs(pair):
    with pytest.raises(InputError, match="--grid"):
        parse_grid([pair])


def test_parse_grid_refuses_a_key_given_twice():
    with pytest.raises(InputError, match="given twice"):
        parse_grid(["lr=1", "lr=2"])


def test_expand_grid_is_the_product_times_seeds_in_order():
    grid = {"lr": [0.1, 0.01], "wd": [0, 1e-4, 1e-2], "mode": ["x"]}
    points = expand_grid(grid, 2, {"steps": 5})
    expected = [
        {"lr": lr, "wd": wd, "mode": mode, "seed": seed}
        for lr in grid["lr"]
        for wd in grid["wd"]
        for mode in grid["mode"]
        for seed in range(2)
    ]
    assert len(points) == 2 * 3 * 1 * 2
    assert [p.values for p in points] == expected
    assert all(p.overrides == {"steps": 5, **p.values} for p in points)
    assert points[3].run_id == "lr=0.1,wd=0.0001,mode=x,seed=1"
    assert len({p.run_id for p in points}) == len(points)


def test_run_ids_are_safe_unique_and_hashed_when_long():
    lists = [run_id({"widths": w, "seed": 0}) for w in ([64, 64], [6, 464], [64, 6, 4])]
    assert len(set(lists)) == 3
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789._=,+-_") for i in lists)
    assert run_id({"path": "a/b", "seed": 0}) != run_id({"path": "a_b", "seed": 0})
    assert "/" not in run_id({"path": "a/b", "seed": 0})
    long = run_id({"widths": list(range(60)), "seed": 0})
    assert long.startswith("run-") and len(long) == 16
    assert long != run_id({"widths": list(range(61)), "seed": 0})


@pytest.mark.parametrize(
    "grid, seeds, fixed, match",
    [
        ({"seed": [1, 2]}, 1, {}, "--seeds"),
        ({"a": [1]}, 1, {"seed": 3}, "--seeds"),
        ({"a": [1]}, 0, {}, "seeds must be an integer >= 1"),
        ({"a": [1]}, True, {}, "seeds must be an integer >= 1"),
        ({"a": [1]}, 1, {"a": 2}, "both a grid key and a fixed override"),
        ({"a": []}, 1, {}, "non-empty list"),
        ({"a": [1, 2, 1]}, 1, {}, "repeats the value"),
        ({"a": [1, "1"]}, 1, {}, "same run directory"),
    ],
)
def test_expand_grid_refuses_bad_grids(grid, seeds, fixed, match):
    with pytest.raises(InputError, match=match):
        expand_grid(grid, seeds, fixed)


@pytest.mark.parametrize(
    "grid, options, match",
    [
        ({"a": [1.0], "nope": [1]}, {}, "unknown config key.*nope.*valid keys"),
        ({"n": [3, 1]}, {}, r"run n=1,seed=0 .*n: Input should be greater than or equal to 2"),
        ({"mode": ["x", "z"]}, {}, "run mode=z,seed=0"),
        (
            {"a": [1.0]},
            {"backend": "dask"},
            r"backend must be one of \['local', 'ray'\]; got 'dask'",
        ),
        ({"a": [1.0]}, {"workers": 0}, "workers must be an integer >= 1; got 0"),
        ({"a": [1.0]}, {"address": "auto"}, "only used by the Ray backend"),
    ],
)
def test_bad_sweeps_fail_before_anything_runs(tmp_path: Path, grid, options, match):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match):
        run_sweep(FIXTURE, grid, 1, out_dir=out, progress=False, **options)
    assert not out.exists()


def test_local_backend_gives_the_records_of_direct_runs(local_sweep, tmp_path: Path):
    out, result = local_sweep
    assert [r.run_id for r in result.runs] == [p.run_id for p in POINTS]
    assert [r.status for r in result.runs] == [
        "failed" if r.point not in GOOD else "ran" for r in result.runs
    ]
    direct = []
    for point in GOOD:
        summary = run_experiment(FIXTURE, "quick", point.overrides, tmp_path / point.run_id)
        frame = summary.outcome.records
        for column in ("seed", "mode", "a", "run_id"):
            frame.insert(0, column, point.run_id if column == "run_id" else point.values[column])
        direct.append(frame)
    pd.testing.assert_frame_equal(result.records, pd.concat(direct, ignore_index=True))
    for (a, mode, seed), rows in result.records.groupby(["a", "mode", "seed"]):
        assert rows["value"].tolist() == closed_form(a, mode, seed)
    saved = pd.read_parquet(out / "sweep-fixture" / "sweep.parquet")
    pd.testing.assert_frame_equal(saved, result.records)


def test_failed_runs_are_reported_with_their_config_and_error(local_sweep):
    _, result = local_sweep
    failed = [p for p in POINTS if p not in GOOD]
    assert [r.point for r in result.failures] == failed
    for run in result.failures:
        assert run.config["a"] == -1.0 and run.outcome is None
        assert run.error == "RuntimeError: asked to fail (a=-1.0)"
        assert "asked to fail" in (run.run_dir / "error.txt").read_text()
    table = pd.read_parquet(result.directory / "runs.parquet")
    assert (table["status"] == "failed").tolist() == [p not in GOOD for p in POINTS]
    assert set(table.loc[table["status"] == "failed", "error"]) == {
        "RuntimeError: asked to fail (a=-1.0)"
    }


def test_summary_counts_predictions_and_averages_numbers_over_seeds(local_sweep):
    _, result = local_sweep
    summary = result.summary().set_index(["a", "mode"])
    assert list(summary.index) == list(itertools.product(*GRID.values()))
    for a, mode in itertools.product(*GRID.values()):
        row = summary.loc[(a, mode)]
        if a < 0:
            assert (row["runs"], row["failed_runs"], row["passed"], row["failed"]) == (2, 2, 0, 0)
            assert np.isnan(row["total_mean"])
            continue
        totals = [sum(closed_form(a, mode, seed)) for seed in range(SEEDS)]
        assert (row["runs"], row["failed_runs"]) == (SEEDS, 0)
        assert (row["passed"], row["failed"]) == ((SEEDS, 0) if a >= 1 else (0, SEEDS))
        assert row["total_mean"] == pytest.approx(np.mean(totals))
        assert row["total_std"] == pytest.approx(np.std(totals, ddof=1))
    table = pd.read_parquet(result.directory / "runs.parquet")
    lasts = [closed_form(p.values["a"], p.values["mode"], p.values["seed"])[-1] for p in GOOD]
    assert table.loc[table["status"] == "ran", "last"].tolist() == lasts


def test_rerun_skips_finished_runs(local_sweep):
    out, first = local_sweep
    outcome = {r.run_id: r.run_dir / "outcome.json" for r in first.runs if r.outcome}
    stamps = {run_id: path.stat().st_mtime_ns for run_id, path in outcome.items()}
    again = run_sweep(FIXTURE, {"a": [0.5, 2], "mode": ["x", "y"]}, SEEDS, "quick", FIXED, out)
    assert [r.status for r in again.runs] == ["reused"] * len(GOOD)
    assert [r.run_id for r in again.runs] == [p.run_id for p in GOOD]
    for run in again.runs:
        assert (run.run_dir / "calls.txt").read_text().count("run") == 1
    assert {k: p.stat().st_mtime_ns for k, p in outcome.items()} == stamps
    pd.testing.assert_frame_equal(again.records, first.records)


@pytest.mark.slow  # starts worker processes again: ~5 s idle, ~15 s on a busy machine
def test_cli_rerun_retries_failed_runs_and_exits_1(local_sweep):
    out, first = local_sweep
    cli = cli_sweep(out, "-1,0.5,2")
    assert cli.exit_code == 1, cli.output
    assert "12 runs (0 ran, 8 reused, 4 failed)" in cli.output
    assert "FAILED a=-1.0,mode=y,seed=1: RuntimeError: asked to fail (a=-1.0)" in cli.output
    for run in first.runs:
        assert (run.run_dir / "calls.txt").read_text().count("run") == (1 if run.outcome else 2)
    saved = pd.read_parquet(out / "sweep-fixture" / "sweep.parquet")
    pd.testing.assert_frame_equal(saved, first.records)


def test_cli_prints_per_config_counts_and_mean_std_over_seeds(local_sweep):
    out, _ = local_sweep
    cli = cli_sweep(out, "0.5,2")
    assert cli.exit_code == 0, cli.output
    assert "8 runs (0 ran, 8 reused, 0 failed)" in cli.output
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in cli.output.splitlines()
        if line.startswith("│")
    ]
    # the predictions table: seeds bearing the prediction out, per grid point
    assert rows.pop() == ["P1", "0/2", "0/2", "2/2", "2/2"]
    expected = []
    for a, mode in itertools.product([0.5, 2.0], ["x", "y"]):
        seeds = [closed_form(a, mode, seed) for seed in range(SEEDS)]
        totals, lasts = [sum(v) for v in seeds], [v[-1] for v in seeds]
        row = [str(a), mode, "2/2", *(("2", "0") if a >= 1 else ("0", "2"))]
        for values in (totals, lasts):
            row.append(f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}")
        expected.append(row)
    assert rows == expected


def test_cli_refuses_a_bad_grid_key_before_running(tmp_path: Path):
    bad = CliRunner().invoke(app, ["sweep", FIXTURE, "--grid", "nope=1", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown config key(s) nope" in bad.output
    assert not any(tmp_path.iterdir())


def test_ray_backend_gives_the_records_of_the_local_backend(local_sweep, tmp_path: Path):
    pytest.importorskip("ray")
    _, local = local_sweep
    result = run_sweep(
        FIXTURE, GRID, SEEDS, "quick", FIXED, tmp_path, backend="ray", workers=2, progress=False
    )
    assert [r.status for r in result.runs] == [r.status for r in local.runs]
    assert [r.error for r in result.runs] == [r.error for r in local.runs]
    pd.testing.assert_frame_equal(result.records, local.records)
    pd.testing.assert_frame_equal(result.summary(), local.summary())


def test_missing_ray_is_a_clear_error(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r'pip install "reluscope\[ray\]"'):
        run_sweep(FIXTURE, {"a": [1.0]}, 1, out_dir=tmp_path / "out", backend="ray")
    assert not (tmp_path / "out").exists()


def test_run_ids_use_the_validated_values(tmp_path: Path):
    with pytest.raises(InputError, match="grid key a repeats the value"):
        run_sweep(FIXTURE, {"a": [1, 1.0]}, 1, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_seeds_only_sweep_is_summarised_over_seeds_and_clashing_columns_renamed(tmp_path):
    points = expand_grid({}, 3, {"n": 2})
    assert [p.run_id for p in points] == ["seed=0", "seed=1", "seed=2"]
    runs = []
    for point in points:
        seed = point.values["seed"]
        records = pd.DataFrame({"seed": [99], "value": [10.0 * seed]})
        outcome = Outcome(records, numbers={"x": float(seed**2)}, predictions=[])
        config = {"seed": seed, "n": 2}
        runs.append(SweepRun(point, config, tmp_path / point.run_id, "ran", 0.1, outcome))
    result = SweepResult.collect("demo", tmp_path, (), runs)
    assert result.records.columns.tolist() == ["run_id", "sweep_seed", "seed", "value"]
    assert result.records["sweep_seed"].tolist() == [0, 1, 2]
    assert result.records["seed"].tolist() == [99, 99, 99]
    (row,) = result.summary().to_dict("records")
    assert (row["runs"], row["failed_runs"]) == (3, 0)
    assert row["x_mean"] == pytest.approx(np.mean([0, 1, 4]))
    assert row["x_std"] == pytest.approx(np.std([0, 1, 4], ddof=1))


def test_cli_missing_ray_says_how_to_install_it(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["sweep", FIXTURE, "--grid", "a=1", "--backend", "ray", "--out", str(tmp_path)]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 2
    assert 'pip install "reluscope[ray]"' in cli.output
    assert not any(tmp_path.iterdir())
