"""The ``neural-collapse`` experiment at tiny overrides: structure of the outcome, the recorded
NC metrics, ranks and bounds against the library recomputed on the final model, verdicts that
follow their thresholds, and bad configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tiny_configs
import torch

from reluscope import bounds as B
from reluscope.bounds.collapse import collapse_aware
from reluscope.errors import InputError
from reluscope.experiments import get_experiment, run_experiment
from reluscope.experiments.low_rank_bounds import neural_collapse as nc_exp
from reluscope.measures.neural_collapse import neural_collapse
from reluscope.nets.trace import trace
from reluscope.train.probe import RECORD_COLUMNS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {**tiny_configs.TINY["neural-collapse"], "seeds": 1}


@pytest.fixture(scope="module")
def tiny_run(run_small):
    return run_small({"neural-collapse": TINY})["neural-collapse"]


def _final(summary):
    """The final model (from the trainer's checkpoint) and the training points."""
    config = summary.config
    train, test, classes = nc_exp.prepare_data(config)
    model = nc_exp.build_model(config, train.x[0].numel(), classes)
    state = torch.load(summary.run_dir / "train" / "checkpoint.pt", weights_only=True)
    model.load_state_dict(state["model"])
    assert state["step"] == config.train.steps
    return model.double().eval(), train, test


def _last(frame, metric, layer=None, split="train"):
    rows = frame[(frame["metric"] == metric) & (frame["step"] == frame["step"].max())]
    rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    rows = rows[rows["split"] == split]
    assert len(rows) == 1, (metric, layer, split)
    return float(rows["value"].iloc[0])


def test_registered():
    experiment = get_experiment("neural-collapse")
    assert experiment.paper == "low_rank_bounds" and experiment.order == 3


def test_outcome_structure(tiny_run):
    out = tiny_run.outcome
    assert tuple(c for c in out.records.columns if c != "seed") == RECORD_COLUMNS
    assert {"nc1", "nc4", "numerical_rank", "log10_bound_plain", "accuracy"} <= set(
        out.records["metric"]
    )
    steps = sorted(out.records["step"].unique())
    assert steps[0] == 0 and steps[-1] == TINY["train.steps"]
    assert [f.file for f in out.figures] == ["nc_metrics.png", "weight_ranks.png", "bounds.png"]
    for figure in out.figures:
        data = (tiny_run.run_dir / figure.file).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert len(figure.caption) > 100
    assert out.numbers["classes"] == 10
    for key in ("nc1_end", "nc4_end", "log10_bound_plain_end"):
        assert math.isfinite(out.numbers[key]), key
    assert len(out.predictions) == 4
    assert all(isinstance(p.passed, bool) and p.measured for p in out.predictions)
    assert all(p.url and p.threshold and (p.passed or p.explanation) for p in out.predictions)
    assert out.summary


def test_last_records_match_the_final_model(tiny_run):
    frame, config = tiny_run.outcome.records, tiny_run.config
    model, train, test = _final(tiny_run)
    x, y = train.x.double(), train.y
    result = neural_collapse(model, x, labels=y)
    for layer, values in result.values.items():
        for metric in ("nc1", "nc1_trace", "cdnv", "nc2_etf", "nc4"):
            assert _last(frame, metric, layer) == pytest.approx(values[metric], rel=1e-9, abs=1e-12)
    assert _last(frame, "nc3", result.penultimate) == pytest.approx(result.value("nc3"), rel=1e-9)
    # numerical ranks against numpy (same tolerance), tail shares from numpy's SVD; a weight
    # is named by the site it feeds ("output" for the last), as in every record
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    names = [s.name for s in trace(model, train.input_shape).sites] + ["output"]
    for name, module in zip(names, linears, strict=True):
        w = module.weight.detach().numpy()
        s = np.linalg.svd(w, compute_uv=False)
        rank = int((s > config.rank_rtol * s[0]).sum())
        assert _last(frame, "numerical_rank", name) == rank
        tail = (s[10:] ** 2).sum() / (s**2).sum()
        assert _last(frame, "tail_share", name) == pytest.approx(tail, abs=1e-12)
        assert _last(frame, "spectral_norm", name) == pytest.approx(s[0], rel=1e-12)
    # accuracy from the model itself
    with torch.no_grad():
        hits = (model(x).argmax(dim=1) == y).double().mean().item()
    assert _last(frame, "accuracy") == pytest.approx(hits)
    # the bounds: the plain one against compare (a peer implementation), the collapse-aware
    # one against collapse_aware on the final model, at the recorded margin
    gamma = _last(frame, "margin")
    with torch.no_grad():
        assert gamma == pytest.approx(B.default_margin(model(x), y, config.margin_quantile))
    peer = B.compare(model, x, y, margin=gamma, delta=config.delta, bounds=["low-rank-post-hoc"])
    assert _last(frame, "log10_bound_plain") == pytest.approx(
        peer["low-rank-post-hoc"].log10_value, rel=1e-9
    )
    ca = collapse_aware(model, x, y, margin=gamma, delta=config.delta, rtol=config.rank_rtol)
    # only hidden layers count as collapsed: splits 0..L-2; none qualifying gives NaN
    hidden = range(ca.depth - 1)
    if ca.rank_split in hidden:
        assert _last(frame, "collapse_split") == ca.rank_split
        assert _last(frame, "log10_bound_collapse") == pytest.approx(
            ca.by_split[ca.rank_split].log10_value, rel=1e-9
        )
    else:
        assert math.isnan(_last(frame, "log10_bound_collapse"))
    best = min(ca.by_split[k].log10_value for k in hidden)
    assert _last(frame, "log10_bound_best") == pytest.approx(best, rel=1e-9)


def test_verdicts_follow_their_thresholds(tiny_run):
    n, (p1, p2, p3, p4) = tiny_run.outcome.numbers, tiny_run.outcome.predictions
    assert p1.passed == (n["nc1_drop"] >= nc_exp.NC1_DROP)
    # the top hidden weight is layer 2 (hidden [16, 12]: layers 1 and 2, then 3, the output)
    assert p2.passed == (n["numerical_rank_end.layer2"] <= n["classes"])
    assert p3.passed == (n["nc4_end"] <= nc_exp.NC4_TOLERANCE)
    collapse = n["log10_bound_collapse_end"]
    assert p4.passed == (not math.isnan(collapse) and collapse < n["log10_bound_plain_end"])
    assert n["nc1_drop"] == pytest.approx(n["nc1_interpolation"] / n["nc1_end"])


def test_layer_numbers_are_named_as_in_the_figures(tiny_run):
    """Key numbers of a weight layer say "layer1".."layer3" (the figures' "layer 1" ..
    "layer 3 (output)", input first), never the module index of the site it feeds."""
    frame, n = tiny_run.outcome.records, tiny_run.outcome.numbers
    names = [s.name for s in trace(_final(tiny_run)[0], (64,)).sites] + ["output"]
    labels = nc_exp._layer_labels(names)
    assert list(labels.values()) == ["layer 1", "layer 2", "layer 3 (output)"]
    ranked = sorted(k for k in n if k.startswith("numerical_rank_end"))
    assert ranked == [f"numerical_rank_end.layer{i}" for i in (1, 2, 3)]
    for i, name in enumerate(names, 1):
        assert n[f"numerical_rank_end.layer{i}"] == _last(frame, "numerical_rank", name)
        assert n[f"stable_rank_end.layer{i}"] == _last(frame, "stable_rank", name)
        assert n[f"tail_share_end.layer{i}"] == _last(frame, "tail_share", name)
    ranks = tiny_run.outcome.predictions[1].measured
    assert "layer 1: " in ranks and "layer 3 (output): " in ranks


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"hidden": []}, "hidden"),
        ({"hidden": [8, 0]}, "hidden"),
        ({"train.lr": -1.0}, "lr"),
        ({"train.schedule": "step"}, "schedule"),
        ({"points": 2}, "points"),
        ({"margin_quantile": 1.0}, "margin_quantile"),
        ({"delta": 0.0}, "delta"),
        ({"rank_rtol": 0}, "rank_rtol"),
        ({"unknown": 1}, "unknown"),
        ({"data": "uniform:n=50"}, "no labels"),
        ({"data": "mnist"}, "MNIST"),
    ],
)
def test_bad_configs(tmp_path, overrides, match):
    with pytest.raises(InputError, match=match):
        run_experiment("neural-collapse", "quick", overrides, tmp_path / "run", progress=False)
