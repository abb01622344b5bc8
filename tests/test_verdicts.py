"""The verdict layer: deciding a prediction over seeds (k / n, worst seed, NaN = FAIL), the
LC phase detector on hand-made per-point curves, and -- the point of it all -- predictions
that can fail: each experiment run with a deliberately broken setting that removes the
paper's effect turns the prediction FAIL, and with the intended setting it PASSes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from reluscope.experiments import run_experiment, verdict
from reluscope.experiments.bias_free_relu.equivalence import worst_slope
from reluscope.experiments.local_complexity import common
from reluscope.experiments.local_complexity.region_migration import sign_test
from reluscope.measures.neighborhood import neighborhood_complexity
from reluscope.train import log_steps

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ deciding over seeds
def test_decide_counts_seeds_names_the_worst_and_explains_a_fail():
    checks = [
        verdict.check(True, "a", 0.5, margin=0.5),
        verdict.check(False, "b", 1.5, margin=-0.5, why="b is too big"),
        verdict.check(False, "c", 1.1, margin=-0.1, why="c is too big"),
    ]
    p = verdict.decide("claim", checks, source="Sec. 1", url="u", threshold="t", seeds=[4, 5, 6])
    assert not p.passed and (p.seeds_passed, p.seeds_total) == (1, 3)
    assert p.worst == "seed 5: b" and "2 of 3 seeds" in p.explanation
    assert "b is too big" in p.explanation and p.measured.startswith("seed 4: a;")
    assert verdict.decide("claim", checks, source="s", url="u", threshold="t", need=1).passed


def test_decide_passes_only_when_every_seed_holds():
    checks = [verdict.check(True, f"s{i}", 1.0, margin=m) for i, m in enumerate((0.3, 0.1, 0.2))]
    p = verdict.decide("claim", checks, source="s", url="u", threshold="t")
    assert p.passed and (p.seeds_passed, p.seeds_total) == (3, 3)
    assert p.worst == "seed 1: s1" and p.explanation == ""


def test_a_nan_in_any_compared_value_is_a_fail():
    checks = [verdict.check(True, "fine", 1.0), verdict.check(True, "nan here", 1.0, math.nan)]
    p = verdict.decide("claim", checks, source="s", url="u", threshold="t")
    assert not p.passed and p.seeds_passed == 1 and "NaN" in p.explanation


def test_worst_slope_does_not_hide_a_nan():
    assert worst_slope({0.0: 1.0, 0.5: 3.0})[0] == 0.5
    alpha, value = worst_slope({0.0: 1.0, 0.5: math.nan, 1.0: 3.0})
    assert alpha == 0.5 and math.isnan(value)  # max([1, nan, 3]) would give 3


def test_seed_configs_count_up_from_the_seed():
    from reluscope.experiments.bias_free_relu.depth_gap import DepthGapConfig

    configs = verdict.seed_configs(DepthGapConfig.build("quick", {"seed": 7, "seeds": 3}))
    assert [c.seed for c in configs] == [7, 8, 9]


def test_sign_test_is_the_binomial_tail():
    assert sign_test(10, 10) == pytest.approx(0.5**10)
    assert sign_test(9, 10) == pytest.approx(11 / 1024)
    assert sign_test(0, 0) == 1.0


def _grokking_run(weakest_z: float, t_train: float, t_test: float, gain: float) -> dict:
    """The numbers of one grokking run (phases at steps 0 -> 100 -> 1000 -> 10000)."""
    return dict(
        train_step=t_train,
        test_step=t_test,
        test_at_interp=0.0,
        test_gain=gain,
        test_gain_stderr=0.01,
        weakest_z=weakest_z,
        descent_start_step=0.0,
        descent_end_step=100.0,
        ascent_end_step=1000.0,
        second_descent_end_step=10000.0,
    )


@pytest.mark.parametrize(
    ("phases_z", "delayed", "expected"),
    [
        (5.0, (4.0, 100, 5000, 0.9), [True, True, True]),
        (1.0, (4.0, 100, 5000, 0.9), [True, False, False]),  # no phases: no grokking in them
        (5.0, (4.0, 100, 200, 0.9), [False, True, False]),  # generalises at once
        (5.0, (4.0, 100, 5000, 0.05), [False, True, False]),  # a gain of a few points only
        (5.0, (1.0, 100, 5000, 0.9), [True, True, False]),  # no phases in the delayed run
        (5.0, (4.0, 100, 500, 0.9), [True, True, False]),  # gain made before the LC peak
    ],
)
def test_grokking_during_the_second_descent_needs_both_other_predictions(
    phases_z, delayed, expected
):
    from reluscope.experiments.local_complexity.grokking import _predictions

    runs = {"phases": _grokking_run(phases_z, 100, 200, 0.02), "delayed": _grokking_run(*delayed)}
    assert [p.passed for p in _predictions([runs], [0], True)] == expected


# ------------------------------------------------------------------ the phase detector
def _points(curve: list[float], steps: list[int], n: int = 40, noise: float = 0.3):
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, n)  # per-point offsets shared by every step: pairing removes them
    values = np.array(curve)[:, None] + base[None] + rng.normal(0, noise, (len(curve), n))
    return pd.DataFrame(values, index=steps)


def test_lc_phases_survive_an_early_rise():
    # an early ~10-step rise before the real descent, ascent and second descent
    steps = [0, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    curve = [10.0, 11.5, 12.0, 9.0, 6.0, 8.5, 11.0, 7.0, 4.0]
    phases = common.lc_phases(_points(curve, steps))
    assert (phases["start"], phases["descent_end"]) == (10, 100)
    assert (phases["ascent_end"], phases["end"]) == (1000, 10000)
    assert phases["weakest_z"] > common.PHASE_Z
    assert phases["ascent"] == pytest.approx(5.0, abs=0.3)


def test_lc_phases_of_a_falling_curve_are_not_seen():
    steps = [0, 1, 10, 100, 1000, 10000]
    phases = common.lc_phases(_points([10.0, 9.0, 8.0, 7.0, 6.0, 5.0], steps))
    assert phases["weakest_z"] < common.PHASE_Z  # no ascent beyond noise
    assert math.isnan(common.lc_phases(_points([1.0, 2.0, 3.0], [0, 1, 2]))["weakest_z"])


def test_log_steps_has_no_duplicate_last_step():
    for total in (1200, 1000, 6000, 99, 40000):
        steps = sorted(log_steps(total, 10).steps)
        assert steps[-1] == total and total - 1 not in steps[-2:-1]


def test_neighbourhood_count_with_the_output_layer_by_brute_force():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
    x = torch.randn(30, 3, dtype=torch.float64)
    model = model.double()
    with_out = neighborhood_complexity(
        model, x, radius=0.7, n_vertices=4, seed=1, include_output=True
    )
    without = neighborhood_complexity(model, x, radius=0.7, n_vertices=4, seed=1)
    assert with_out.per_layer["output"] + without.value == pytest.approx(with_out.value)
    from reluscope.measures.neighborhood import cross_polytope, orthonormal_frame

    frame = orthonormal_frame(3, 2, 1, torch.float64)
    vertices = cross_polytope(x, frame, 0.7, False)  # (points, vertices, 3)
    with torch.no_grad():
        signs = torch.sign(model(vertices.reshape(-1, 3))).reshape(30, 4, 4)
    crossed = (signs != signs[:, :1]).any(dim=1).sum(dim=1).double().mean()
    assert with_out.per_layer["output"] == pytest.approx(float(crossed))


# ------------------------------------------------------------------ predictions can fail
def _run(tmp_path_factory, name: str, overrides: dict) -> list:
    root = tmp_path_factory.mktemp(name)
    summary = run_experiment(name, "quick", {"seeds": 1, **overrides}, root, progress=False)
    return summary.outcome.predictions


def _verdict(predictions, fragment: str) -> bool:
    matching = [p for p in predictions if fragment in p.claim]
    assert len(matching) == 1, f"{fragment!r} matches {[p.claim for p in predictions]}"
    return matching[0].passed


EQUIVALENCE = {"alphas": [0.0, 0.5, 1.0], "n": 50, "d": 5, "hidden": 40, "steps": 1200}
DEPTH_GAP = {"snapshots": 4, "test_points": 2000}
DEEP: dict = {}
BREAKING = {"n": 40, "d": 4, "hidden": 30, "lr": 0.05, "steps": 1500}

TRACKING = {"hidden": [32, 32], "n_probes": 6, "train.steps": 300}
INIT_SCALE = {
    "widths": [32, 512],
    "param_scales": [0.5, 2.0, 4.0],
    "train.steps": 500,
    "n_points": 128,
}
RANK_SWEEP = {
    "n_train": 300,
    "n_test": 100,
    "hidden": [32, 32],
    "ranks": [1, 2, 4],
    "train.steps": 300,
    "mc_points": 32,
    "mc_draws": 2,
    "mc_steps": 5,
}
DEPTH_SWEEP = {"depths": [2, 3, 4], "train.steps": 600}
# the delayed-generalisation run of grokking a little smaller than quick, the phases run tiny
GROKKING_DELAYED = {
    "hidden": [8],
    "train.steps": 10,
    "n_points": 8,
    "n_vertices": 4,
    "delayed_hidden": [128],
    "delayed_train.steps": 6000,
}
BOUND_TRACKING = {
    "n_train": 300,
    "n_test": 500,
    "hidden": [128],
    "train.steps": 1000,
    "n_checkpoints": 5,
}
# strong weight decay with cross-entropy: the top hidden layer falls below rank C (the quick
# configuration, MSE with weight decay 1e-4, keeps rank ~62 and fails these two)
COLLAPSE_RANK = {
    "points": 200,
    "hidden": [32, 32],
    "probes": 8,
    "train.loss": "ce",
    "train.steps": 2000,
    "train.weight_decay": 0.1,
}

# (experiment, intended setting, broken setting, fragments of the claims the broken setting
# turns FAIL while the intended one PASSes)
CASES = [
    pytest.param(
        "bias-free-equivalence",
        EQUIVALENCE,
        {**EQUIVALENCE, "augment": False},
        ["equivalent linear network", "even part dies out", "linear-regression floor"],
        id="equivalence-asymmetric-data",
    ),
    pytest.param(
        "bias-free-equivalence",
        EQUIVALENCE,
        {**EQUIVALENCE, "substeps": 1, "lr": 0.05, "steps": 240},
        ["closed-form loss curve", "half-way time is within"],
        id="equivalence-plain-gd-large-steps",
    ),
    pytest.param(
        "bias-free-equivalence",
        EQUIVALENCE,
        {**EQUIVALENCE, "init_std": 0.3},
        ["twice as late", "half-way time is within", "equivalent linear network"],
        id="equivalence-large-start",
    ),
    pytest.param(
        "depth-gap",
        DEPTH_GAP,
        {**DEPTH_GAP, "lr": 0.002},
        ["reaches the linear-regression floor", "below 0.5 x", "clearly nonlinear"],
        id="depth-gap-lr-tiny",
    ),
    pytest.param(
        "deep-low-rank",
        DEEP,
        {**DEEP, "alpha": 1.0},
        ["first plateau", "equally strong directions", "linear-like stage", "nonlinear stage"],
        id="deep-low-rank-linear-instead-of-relu",
    ),
    pytest.param(
        "deep-low-rank",
        DEEP,
        {**DEEP, "steps": 100},
        ["deep linear network ends"],
        id="deep-low-rank-too-few-steps",
    ),
    pytest.param(
        "breaking-symmetry",
        BREAKING,
        {**BREAKING, "steps": 30},
        [
            "Symmetric control",
            "even target",
            "shifted",
            "not augmented",
            "biases break",
            "single ReLU unit",
        ],
        id="breaking-untrained",
    ),
    pytest.param(
        "breaking-symmetry",
        BREAKING,
        {**BREAKING, "narrow": 20},
        ["hidden layer cannot cancel"],
        id="breaking-narrow-is-wide",
    ),
    pytest.param(
        "lc-dynamics",
        {},
        {"train.weight_decay": 0.0},
        ["LC falls late", "local-rank collapse", "Delayed robustness"],
        id="lc-dynamics-no-weight-decay",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "lc-dynamics",
        {**TRACKING, "n_train": 400, "n_test": 200, "n_points": 150},
        {**TRACKING, "n_train": 20, "n_test": 200, "n_points": 20},
        ["Train and test LC track"],
        id="lc-dynamics-memorised-tiny-training-set",
    ),
    pytest.param(
        "init-scale",
        INIT_SCALE,
        {**INIT_SCALE, "train.lr": 1e-6},
        ["Lazy training changes LC less"],
        id="init-scale-untrained",
    ),
    pytest.param(
        "init-scale",
        {},
        {"train.lr": 1e-6},
        ["Lazy training changes LC less", "LC moves as far as the parameters"],
        id="init-scale-quick-untrained",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "grokking",
        {},
        {"train.weight_decay": 0.0},
        ["descent, ascent and a second", "Grokking happens during"],
        id="grokking-no-weight-decay",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "grokking",
        GROKKING_DELAYED,
        {**GROKKING_DELAYED, "delayed_train.weight_decay": 0.0},
        ["Delayed generalisation"],
        id="grokking-delayed-run-no-weight-decay",
    ),
    pytest.param(
        "rank-sweep",
        RANK_SWEEP,
        {**RANK_SWEEP, "train.weight_decay": 1.0},
        ["Frobenius bound (GRS"],
        id="rank-sweep-weights-decayed-to-rank-one",
    ),
    pytest.param(
        "depth-sweep",
        DEPTH_SWEEP,
        {**DEPTH_SWEEP, "max_norm": 1000.0},
        ["falls with every layer"],
        id="depth-sweep-no-spectral-clip",
    ),
    pytest.param(
        "weight-decay",
        {},
        {"train.lr": 1e-5},
        ["slope of LC", "roughly linear"],
        id="weight-decay-lr-tiny",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "bound-tracking",
        {},
        {"max_norm": None},
        ["Low rank helps the bound"],
        id="bound-tracking-no-common-clip",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "bound-tracking",
        BOUND_TRACKING,
        {**BOUND_TRACKING, "train.lr": 1e-6},
        ["ranks the final networks", "ranks the probed steps"],
        id="bound-tracking-kendall-untrained",
    ),
    pytest.param(
        "neural-collapse",
        {},
        {"train.lr": 1e-4},
        ["NC1 = Tr", "NC4"],
        id="neural-collapse-lr-tiny",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "neural-collapse",
        COLLAPSE_RANK,
        {**COLLAPSE_RANK, "train.weight_decay": 0.0},
        ["top hidden weight layer", "collapsed hidden layers exist"],
        id="neural-collapse-rank-no-weight-decay",
    ),
]


@pytest.mark.parametrize(("name", "intended", "broken", "fragments"), CASES)
def test_prediction_fails_when_the_effect_is_removed(
    tmp_path_factory, name, intended, broken, fragments
):
    good = _run(tmp_path_factory, name, intended)
    bad = _run(tmp_path_factory, name, broken)
    for fragment in fragments:
        assert _verdict(good, fragment), f"{name}: {fragment!r} should PASS as intended"
        assert not _verdict(bad, fragment), f"{name}: {fragment!r} should FAIL when broken"
    for p in bad:
        assert p.passed or p.explanation  # every FAIL says what the numbers show
        assert p.source and p.url.startswith("https://arxiv.org/abs/") and p.threshold


# ------------------------------------------------------------------ sanity, not predictions
def _sanity(tmp_path_factory, name: str, overrides: dict, fragment: str):
    root = tmp_path_factory.mktemp(name)
    outcome = run_experiment(name, "quick", {"seeds": 1, **overrides}, root, progress=False).outcome
    matching = [p for p in outcome.sanity_checks if fragment in p.claim]
    assert len(matching) == 1 and not any(fragment in p.claim for p in outcome.predictions)
    return matching[0], outcome


def test_rank_sweep_slope_one_half_holds_untrained_so_it_is_a_sanity_check(tmp_path_factory):
    check, outcome = _sanity(
        tmp_path_factory, "rank-sweep", {**RANK_SWEEP, "train.lr": 1e-7}, "own norms and exact"
    )
    assert check.passed and outcome.numbers["slope_trained_low_rank"] == pytest.approx(
        0.5, abs=1e-3
    )


def test_region_migration_boundary_cross_check_holds_untrained_so_it_is_a_sanity_check(
    tmp_path_factory,
):
    small = {"hidden": [32, 32], "n_probes": 10, "n_points": 64, "train.steps": 300}
    check, outcome = _sanity(
        tmp_path_factory, "region-migration", {**small, "n_planes": 3, "train.lr": 1e-6}, "Cross"
    )
    assert check.passed
    n = outcome.numbers
    assert n["lc_boundary_points"] > n["lc_train_points"] and n["boundary_points"] > 0
    # one plane with no decision boundary in view: NaN statistics and a failed check, no crash
    check, outcome = _sanity(
        tmp_path_factory, "region-migration", {**small, "n_planes": 1, "train.lr": 1e-6}, "Cross"
    )
    assert not check.passed and math.isnan(outcome.numbers["near_boundary_density_ratio_end"])
