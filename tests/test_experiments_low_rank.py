"""The low-rank-bound experiments rank-sweep, depth-sweep and bound-tracking, run at a few
seconds' size: outcome structure, and their numbers against ground truth computed here
independently (the closed forms of the bounds by hand, SVDs of the saved trained weights,
Kendall's tau from scipy, the generalisation gap from the raw records)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tiny_configs
import torch
from scipy.stats import kendalltau

from reluscope.errors import InputError
from reluscope.experiments import experiments, run_experiment
from reluscope.experiments.local_complexity.common import load_splits
from reluscope.experiments.low_rank_bounds import common
from reluscope.experiments.low_rank_bounds.bound_tracking import STABLE, noisy_labels
from reluscope.lowrank import LowRankLinear
from reluscope.nets.trace import trace

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("rank-sweep", "depth-sweep", "bound-tracking")
SMALL = {name: tiny_configs.TINY[name] for name in NAMES}


@pytest.fixture(scope="module")
def outcomes(run_small):
    """Each experiment run once at its small size, on one thread: name -> RunSummary."""
    return run_small({name: SMALL[name] for name in NAMES})


def data_norm(n_train: int, n_test: int) -> float:
    """||X||_F of the experiments' digits training subset."""
    train, _ = load_splits("digits", n_train, n_test, None, 0)
    return float(train.x.double().reshape(len(train), -1).norm())


def test_the_experiments_are_registered_in_order():
    mine = {e.name: e.order for e in experiments() if e.paper == "low_rank_bounds"}
    assert {k: mine[k] for k in NAMES} == {"rank-sweep": 1, "depth-sweep": 2, "bound-tracking": 4}


@pytest.mark.parametrize("name", NAMES)
def test_outcome_structure(outcomes, name):
    summary = outcomes[name]
    out = summary.outcome
    assert {"metric", "value"} <= set(out.records.columns) and len(out.records) > 50
    assert np.isfinite(out.records["value"].astype(float)).all()
    for figure in out.figures:
        path = summary.run_dir / figure.file
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(figure.caption) > 80
    assert out.figures and out.summary
    assert out.numbers and all(math.isfinite(v) for v in out.numbers.values())
    assert len(out.predictions) >= 1 and len(out.predictions) + len(out.sanity_checks) >= 3
    for p in out.predictions + out.sanity_checks:
        assert isinstance(p.passed, bool) and p.claim and p.measured and p.source and p.url
        assert p.threshold and (p.passed or p.explanation)
    assert (summary.run_dir / "outcome.json").exists()
    assert (summary.run_dir / "records.parquet").exists()


def test_rank_sweep_a_priori_is_the_closed_form_with_slope_one_half(outcomes):
    summary = outcomes["rank-sweep"]
    c, records = summary.config, summary.outcome.records
    widths = [64, *c.hidden, 10]
    depth = len(widths) - 1
    norm = data_norm(c.n_train, c.n_test)
    shape = math.sqrt(widths[1]) + 3 * sum(math.sqrt(d) for d in widths[2:])  # C1 = C2 = 1
    rows = records[
        (records["part"] == "a priori") & (records["metric"] == "log10_gaussian_complexity")
    ]
    for r, value in zip(rows["rank"], rows["value"], strict=True):
        hand = norm * c.max_norm**depth * math.sqrt(r) * shape
        assert value == pytest.approx(math.log10(hand), abs=1e-12)
    assert summary.outcome.numbers["slope_a_priori"] == pytest.approx(0.5, abs=1e-12)
    # the rank-substituted GRS term: prod_l sqrt(r) = r^(L/2)
    assert summary.outcome.numbers["slope_a_priori_grs_substituted"] == pytest.approx(
        depth / 2, abs=1e-12
    )
    assert summary.outcome.sanity_checks[0].passed


def test_rank_sweep_trained_networks_lie_in_the_class(outcomes):
    """The saved weights, multiplied out and decomposed by numpy: rank <= r, ||W||_2 <= B, and
    the records report those same numbers."""
    summary = outcomes["rank-sweep"]
    c, records = summary.config, summary.outcome.records
    widths = [64, *c.hidden, 10]
    for r in c.ranks:
        model = common.bias_free_mlp(widths, r, c.seed)
        state = torch.load(summary.run_dir / f"rank_{r}" / "model.pt", weights_only=True)
        model.load_state_dict(state)
        layers = [m for m in model if isinstance(m, LowRankLinear)]
        # records name a layer by the site it feeds (the last one "output")
        names = [s.name for s in trace(model, (widths[0],)).sites] + ["output"]
        for name, layer in zip(names, layers, strict=True):
            w = (layer.u.weight.detach().double() @ layer.v.weight.detach().double()).numpy()
            s = np.linalg.svd(w, compute_uv=False)
            assert np.linalg.matrix_rank(w) <= r
            assert s[0] <= c.max_norm * (1 + 1e-6)
            got = records[
                (records["part"] == "trained") & (records["rank"] == r) & (records["layer"] == name)
            ].set_index("metric")["value"]
            assert got["spectral_norm"] == pytest.approx(s[0], rel=1e-6)
            assert got["stable_rank"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-5)


def test_rank_sweep_monte_carlo_looseness_is_bound_over_estimate(outcomes):
    records = outcomes["rank-sweep"].outcome.records
    mc = records[records["part"] == "monte carlo"].pivot_table(
        index="rank", columns="metric", values="value"
    )
    ratio = mc["gaussian_complexity_bound"] / mc["gaussian_complexity_mc"]
    np.testing.assert_allclose(mc["looseness"], ratio, rtol=1e-12)
    assert (mc["gaussian_complexity_mc"] > 0).all()


def chain_factor(widths, rank, C1, C2):
    """C1^(L-1) sqrt(r d_1) + (2 C2 + 1) sum_{l>=2} C1^(L-l) sqrt(r d_l), by a plain loop."""
    depth = len(widths) - 1
    total = C1 ** (depth - 1) * math.sqrt(rank * widths[1])
    for layer in range(2, depth + 1):
        total += (2 * C2 + 1) * C1 ** (depth - layer) * math.sqrt(rank * widths[layer])
    return total


def test_depth_sweep_sum_and_product_against_hand_values(outcomes):
    summary = outcomes["depth-sweep"]
    c, records, numbers = summary.config, summary.outcome.records, summary.outcome.numbers
    a_priori = records[(records["part"] == "a priori") & (records["metric"] == "log10_rank_factor")]
    low = a_priori[a_priori["bound"] == "low-rank"].set_index("depth")["value"]
    grs = a_priori[a_priori["bound"] == "grs"].set_index("depth")["value"]
    for depth in c.depths:
        # d = 16 hidden, r = 2: sqrt(2*16) + 3 ((L - 2) sqrt(2*16) + sqrt(2*10))
        hand = math.sqrt(32) + 3 * ((depth - 2) * math.sqrt(32) + math.sqrt(20))
        assert 10 ** low[depth] == pytest.approx(hand, rel=1e-12)
        assert grs[depth] == pytest.approx(depth / 2 * math.log10(2), abs=1e-12)
    assert numbers["increment_low_rank_a_priori"] == pytest.approx(3 * math.sqrt(32), rel=1e-12)
    assert numbers["log_increment_grs_a_priori"] == pytest.approx(0.5 * math.log10(2), rel=1e-12)
    # the GRS complexity term in ranks: (4C/gamma)(1 + sqrt(2 ln2 L)) ||X||_F / n B^L r^(L/2)
    norm = data_norm(c.n_train, c.n_test)
    main = records[
        (records["part"] == "a priori")
        & (records["metric"] == "log10_main")
        & (records["bound"] == "grs")
    ].set_index("depth")["value"]
    for depth in c.depths:
        hand = (
            40
            / c.margin
            * (1 + math.sqrt(2 * math.log(2) * depth))
            * norm
            / c.n_train
            * c.max_norm**depth
            * 2 ** (depth / 2)
        )
        assert main[depth] == pytest.approx(math.log10(hand), abs=1e-12)
    assert summary.outcome.sanity_checks[0].passed and summary.outcome.sanity_checks[1].passed


def test_depth_sweep_with_c1_above_one_is_no_longer_additive(tmp_path):
    """With C1 = 1.5 the chain-rule factor carries C1^(L-l) weights: its increments grow, so
    the additivity identity (stated for C1 = 1) no longer holds, and the recorded factors
    follow the general formula."""
    over = dict(SMALL["depth-sweep"], C1=1.5, C2=0.5, seeds=1) | {"train.steps": 1}
    summary = run_experiment("depth-sweep", "quick", over, tmp_path, progress=False)
    records = summary.outcome.records
    low = records[
        (records["part"] == "a priori")
        & (records["metric"] == "log10_rank_factor")
        & (records["bound"] == "low-rank")
    ].set_index("depth")["value"]
    for depth in over["depths"]:
        widths = [64, *[16] * (depth - 1), 10]
        assert 10 ** low[depth] == pytest.approx(chain_factor(widths, 2, 1.5, 0.5), rel=1e-12)
    assert not summary.outcome.sanity_checks[0].passed


def test_depth_sweep_sum_against_product_is_a_closed_form_at_every_c1(outcomes, tmp_path):
    """The norms, margin and data norm multiply both terms, so the chain-rule minus GRS log10
    increment on trained networks is the hand closed form of (r, d, L, C1, C2): the same after
    one step and after training, hence sanity checks (one per C1), not predictions."""

    def closed(c1: float, depth: int) -> float:
        grow = math.log10(
            chain_factor([64, *[16] * depth, 10], 2, c1, 1.0)
            / chain_factor([64, *[16] * (depth - 1), 10], 2, c1, 1.0)
        )
        grs_depth = (1 + math.sqrt(2 * math.log(2) * (depth + 1))) / (
            1 + math.sqrt(2 * math.log(2) * depth)
        )
        return grow - 0.5 * math.log10(2) - math.log10(grs_depth)

    one_step = run_experiment(
        "depth-sweep",
        "quick",
        dict(SMALL["depth-sweep"], seeds=1) | {"train.steps": 1},
        tmp_path,
        progress=False,
    )
    for summary in (outcomes["depth-sweep"], one_step):
        n = summary.outcome.numbers
        for c1 in (1.0, math.sqrt(2), 4.0):
            gap = n[f"main_log_increment_low_rank_last.C1_{c1:g}"]
            gap -= n["main_log_increment_grs_substituted_last"]
            assert gap == pytest.approx(closed(c1, 3), abs=1e-12)
        checks = [p for p in summary.outcome.sanity_checks if "adding a layer" in p.claim]
        assert len(checks) == 3 and all(p.passed for p in checks)
        assert not any("C1 = 4" in p.claim for p in summary.outcome.predictions)
    # the expected direction: below break-even (C1 = 1 < sqrt 2) the sum grows slower
    assert closed(1.0, 3) < 0 < closed(4.0, 3)


def test_kendall_tau_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 40):
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert common.kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
        xi, yi = rng.integers(0, 3, size=n), rng.integers(0, 4, size=n)  # with ties
        expected = kendalltau(xi, yi).statistic
        got = common.kendall_tau(xi, yi)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
    assert common.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(common.kendall_tau([1, 1, 1], [1, 2, 3]))


def test_bound_tracking_taus_and_gaps_from_the_raw_records(outcomes):
    """Rebuild the gap and every tau from the trainer's raw records with pandas and scipy."""
    summary = outcomes["bound-tracking"]
    c, records, numbers = summary.config, summary.outcome.records, summary.outcome.numbers
    acc = records[records["metric"] == "accuracy"]
    gap = (
        (
            acc[acc["split"] == "train"].set_index(["run", "step"])["value"]
            - acc[acc["split"] == "test"].set_index(["run", "step"])["value"]
        )
        .rename("gap")
        .round(12)
    )
    bound = records[(records["metric"] == "log10_bound") & (records["bound"] == "low-rank")]
    both = pd.concat([bound.set_index(["run", "step"])["value"], gap], axis=1, join="inner")
    # over steps: only after training stabilised (step > 0, train error near its final value)
    train_error = 1 - acc[acc["split"] == "train"].set_index(["run", "step"])["value"]
    final_error = train_error.groupby(level="run").transform("last")
    steps = both.index.get_level_values("step")
    stable = both[
        (steps > 0)
        & (train_error.reindex(both.index) <= final_error.reindex(both.index) + STABLE).to_numpy()
    ]
    assert numbers["tau_all.low-rank"] == pytest.approx(
        kendalltau(stable["value"], stable["gap"]).statistic, abs=1e-12
    )
    final = both.xs(c.train.steps, level="step")
    assert numbers["tau_final.low-rank"] == pytest.approx(
        kendalltau(final["value"], final["gap"]).statistic, abs=1e-12
    )
    for run, row in final.iterrows():
        assert numbers[f"gap.{run}"] == pytest.approx(row["gap"], abs=1e-12)
    risk = records[(records["metric"] == "margin_risk") & (records["bound"] == "low-rank")]
    assert (risk["value"].between(0, 1)).all()


def test_noisy_labels_moves_the_stated_fraction_to_other_classes():
    train, _ = load_splits("digits", 300, 100, None, 0)
    noisy = noisy_labels(train, 0.3, 10, seed=1)
    changed = noisy.y != train.y
    assert int(changed.sum()) == 90
    assert noisy.y.min() >= 0 and noisy.y.max() < 10
    assert torch.equal(noisy_labels(train, 0.0, 10, seed=1).y, train.y)


@pytest.mark.parametrize(
    ("name", "override", "words"),
    [
        ("rank-sweep", {"ranks": [2, 2]}, "distinct"),
        ("rank-sweep", {"ranks": [1]}, "ranks"),
        ("rank-sweep", {"max_norm": 0}, "max_norm"),
        ("depth-sweep", {"depths": [1, 2, 3]}, "depths"),
        ("depth-sweep", {"rank": 0}, "rank"),
        ("bound-tracking", {"noise_levels": [0.0, 1.0]}, "noise"),
        ("bound-tracking", {"variants": ["sparse"]}, "variants"),
        ("bound-tracking", {"margin_quantile": 1.5}, "margin_quantile"),
        ("bound-tracking", {"no_such_key": 1}, "no_such_key"),
    ],
)
def test_invalid_config_is_an_input_error(tmp_path, name, override, words):
    with pytest.raises(InputError, match=words):
        run_experiment(name, "quick", override, tmp_path, progress=False)


def test_ranks_above_the_smallest_width_are_refused(tmp_path):
    with pytest.raises(InputError, match="smallest width"):
        run_experiment("rank-sweep", "quick", {"ranks": [1, 12]}, tmp_path, progress=False)
    with pytest.raises(InputError, match="classes"):
        run_experiment("depth-sweep", "quick", {"rank": 11}, tmp_path / "d", progress=False)
