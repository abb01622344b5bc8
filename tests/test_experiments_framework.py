"""Experiment configs, the registry, the resumable runner, the HTML report and the
`run` / `reproduce` / `experiments` commands, on a cheap toy experiment."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.errors import InputError
from reluscope.experiments import (
    ExperimentConfig,
    experiments,
    get_experiment,
    run_experiment,
)
from reluscope.experiments.outcome import Outcome
from reluscope.report.html import render_report, write_report
from reluscope.report.rundirs import FailedRun, RunSet, read_run
from reluscope.values import parse_assignments

TOY = "toy_experiment:EXPERIMENT"
cli = CliRunner()


def toy_config():
    return get_experiment(TOY).config


def test_build_uses_quick_defaults_paper_values_and_overrides():
    cfg = toy_config()
    assert cfg.build("quick").n == 100
    assert cfg.build("paper").n == 10_000
    assert cfg.build("paper", {"n": 7}).n == 7
    assert cfg.build("quick", {"mean": "2.5"}).mean == 2.5


@pytest.mark.parametrize(
    ("scale", "overrides", "message"),
    [
        ("quick", {"bogus": 1}, "unknown config key(s) bogus"),
        ("quick", {"n": 1}, "n: Input should be greater than or equal to 2"),
        ("quick", {"n": "many"}, "got 'many'"),
        ("huge", {}, "scale must be one of ['quick', 'paper']; got 'huge'"),
        ("quick", {"device": "gpu"}, "expected cpu, cuda, cuda:N or mps"),
        ("quick", {"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ],
)
def test_build_refuses_bad_values(scale, overrides, message):
    with pytest.raises(InputError, match=re.escape(message)):
        toy_config().build(scale, overrides)


def test_unknown_key_error_lists_valid_keys():
    with pytest.raises(InputError, match="valid keys: seed, seeds, device, n, mean, fail, counter"):
        toy_config().build("quick", {"nn": 3})


def test_set_values_follow_the_value_grammar():
    got = parse_assignments(["lr=1e-3", "widths=[64, 32]", "name=abc", "flag=true", "x=a=b"])
    assert got == {"lr": 1e-3, "widths": [64, 32], "name": "abc", "flag": True, "x": "a=b"}
    with pytest.raises(InputError, match="key=value"):
        parse_assignments(["lr"])


def test_registered_experiments_have_unique_names_and_valid_quick_configs():
    registered = experiments()
    assert len({e.name for e in registered}) == len(registered)
    for e in registered:
        assert issubclass(e.config, ExperimentConfig)
        assert get_experiment(e.name) is e
        e.config.build("quick")


def test_unknown_experiment_lists_the_registered_ones():
    with pytest.raises(InputError, match="unknown experiment 'nope'; registered:"):
        get_experiment("nope")
    with pytest.raises(InputError, match="cannot import"):
        get_experiment("no_such_module_xyz:EXPERIMENT")
    with pytest.raises(InputError, match="is not an Experiment"):
        get_experiment("toy_experiment:ToyConfig")


def test_run_writes_records_outcome_and_figure(tmp_path):
    summary = run_experiment(TOY, "quick", {"seed": 3}, tmp_path / "run", progress=False)
    sample = np.random.default_rng(3).normal(0.0, 1.0, 100)
    assert summary.outcome.numbers["estimate"] == pytest.approx(sample.mean(), abs=1e-15)
    records = pd.read_parquet(tmp_path / "run" / "records.parquet")
    assert records["value"].iloc[0] == pytest.approx(sample.mean(), abs=1e-15)
    saved = json.loads((tmp_path / "run" / "outcome.json").read_text())
    assert saved["config"]["seed"] == 3 and saved["scale"] == "quick"
    assert [p["passed"] for p in saved["predictions"]] == [
        p.passed for p in summary.outcome.predictions
    ]
    assert (tmp_path / "run" / "hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded, _ = Outcome.load(tmp_path / "run")
    assert loaded.predictions == summary.outcome.predictions
    assert loaded.figures == summary.outcome.figures


def test_finished_run_is_reused_and_rerun_recomputes(tmp_path):
    counter = tmp_path / "count.txt"
    overrides = {"counter": str(counter)}
    first = run_experiment(TOY, "quick", overrides, tmp_path / "run", progress=False)
    again = run_experiment(TOY, "quick", overrides, tmp_path / "run", progress=False)
    assert not first.reused and again.reused
    assert again.outcome.numbers == first.outcome.numbers
    assert len(counter.read_text().splitlines()) == 1
    run_experiment(TOY, "quick", overrides, tmp_path / "run", rerun=True, progress=False)
    assert len(counter.read_text().splitlines()) == 2


def test_run_dir_of_another_config_is_refused_and_kept(tmp_path):
    run_experiment(TOY, "quick", {"n": 10}, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "records.parquet").read_bytes()
    with pytest.raises(InputError, match="n: 10 there, 20 now"):
        run_experiment(TOY, "quick", {"n": 20}, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "records.parquet").read_bytes() == before


def test_unwritable_run_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create run directory"):
        run_experiment(TOY, "quick", {}, blocker / "run", progress=False)


def test_report_embeds_figures_and_verdicts(tmp_path):
    summary = run_experiment(TOY, "quick", {}, tmp_path / "run", progress=False)
    runs = RunSet([read_run(summary.run_dir)], [FailedRun("broken", None, "RuntimeError: <boom>")])
    html = render_report(runs)
    png = (tmp_path / "run" / "hist.png").read_bytes()
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(embedded) == png
    verdicts = re.findall(
        r'<td><span class="badge (pass|fail)" title="[^"]*">(PASS|FAIL)</span>', html
    )
    expected = [
        ("pass", "PASS") if p.passed else ("fail", "FAIL") for p in summary.outcome.predictions
    ]
    assert verdicts == expected
    assert "Histogram of the &lt;sample&gt; &amp; its mean." in html
    assert "RuntimeError: &lt;boom&gt;" in html
    passed = sum(p.passed for p in summary.outcome.predictions)
    assert f"{passed} / 2</span>" in html
    path = write_report(runs, tmp_path / "index.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_run_and_bad_overrides(tmp_path):
    result = cli.invoke(app, ["run", TOY, "--set", "n=50", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "estimate" in result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["n"] == 50
    bad = cli.invoke(app, ["run", TOY, "--set", "bogus=1", "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2
    assert "unknown config key(s) bogus" in bad.output
    unknown = cli.invoke(app, ["run", "no-such-experiment"])
    assert unknown.exit_code == 2 and "registered:" in unknown.output


def test_cli_reproduce_writes_report_and_keeps_results_when_one_fails(tmp_path, monkeypatch):
    import reluscope.experiments.runner as runner

    real = runner.get_experiment

    def fake(name):
        if name == "failing":
            e = real(TOY)
            return type(e)(**{**e.__dict__, "name": "failing", "run": _boom})
        return real(name)

    monkeypatch.setattr(runner, "get_experiment", fake)
    monkeypatch.setattr("reluscope.reproduce.get_experiment", fake)
    out = tmp_path / "report"
    result = cli.invoke(app, ["reproduce", "--only", f"{TOY},failing", "--out", str(out)])
    assert result.exit_code == 1, result.output
    html = (out / "index.html").read_text()
    assert "ValueError: broken on purpose" in html and "Toy mean" in html
    assert (out / "toy" / "records.parquet").exists()


def _boom(config, ctx):
    raise ValueError("broken on purpose")


def test_cli_interrupt_exits_cleanly(tmp_path, monkeypatch):
    import reluscope.experiments as package

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(package, "run_experiment", interrupted)
    result = cli.invoke(app, ["run", TOY, "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "run the same command again" in result.output


def test_cli_lists_experiments():
    result = cli.invoke(app, ["experiments"])
    assert result.exit_code == 0
    for e in experiments():
        assert e.name in result.output


def test_reproduce_in_worker_processes_equals_in_process(tmp_path):
    from reluscope.reproduce import reproduce

    seen = []
    serial = reproduce([TOY], "quick", tmp_path / "serial", overrides=lambda e: {"seed": 5})
    parallel = reproduce(
        [TOY],
        "quick",
        tmp_path / "parallel",
        overrides=lambda e: {"seed": 5},
        workers=2,
        on_result=lambda name, result: seen.append(name),
    )
    assert seen == ["toy"] and not parallel.failures
    assert parallel.runs[0].outcome.numbers == serial.runs[0].outcome.numbers
    pd.testing.assert_frame_equal(parallel.runs[0].outcome.records, serial.runs[0].outcome.records)
    assert (tmp_path / "parallel" / "index.html").exists()
    with pytest.raises(InputError, match="unknown config key"):
        reproduce([TOY], "quick", tmp_path / "bad", overrides=lambda e: {"nope": 1})
    assert not (tmp_path / "bad" / "toy").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_refused_before_the_run_dir_exists(tmp_path):
    with pytest.raises(InputError, match="CUDA is not available"):
        run_experiment(TOY, "quick", {"device": "cuda"}, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
