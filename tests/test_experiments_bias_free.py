"""The bias-free ReLU experiments (spec bias_free_relu.md), run at a few seconds' size: outcome
structure, and their numbers against ground truth computed here independently (least-squares
floors, the single-unit optimum, exact identities, the depth-gap example's linear residual)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tiny_configs

from reluscope.dynamics import cubic_teacher
from reluscope.errors import InputError
from reluscope.experiments import experiments, get_experiment, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("bias-free-equivalence", "breaking-symmetry", "depth-gap", "deep-low-rank")
SMALL = {name: tiny_configs.TINY[name] for name in NAMES}


@pytest.fixture(scope="module")
def outcomes(run_small):
    """Each experiment run once at its small size, on one thread: name -> RunSummary."""
    return run_small(SMALL)


def floor_of(x, y) -> float:
    """The least-squares linear floor 1/2 <(y - x b)^2>, by numpy."""
    x, y = np.asarray(x), np.asarray(y)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    return 0.5 * float(((y - x @ beta) ** 2).sum(1).mean())


def small_teacher(name: str):
    """The symmetric cubic-teacher data (x, y) that experiment ``name`` trains on at its SMALL
    size (default target and seed)."""
    return cubic_teacher(SMALL[name]["n"], SMALL[name]["d"])


def test_the_four_experiments_are_registered_in_order():
    mine = [e for e in experiments() if e.paper == "bias_free_relu"]
    assert [e.name for e in mine] == list(NAMES)
    assert [e.order for e in mine] == [1, 2, 3, 4]


@pytest.mark.parametrize("name", NAMES)
def test_outcome_structure(outcomes, name):
    summary = outcomes[name]
    out = summary.outcome
    assert {"step", "metric", "value"} <= set(out.records.columns) and len(out.records) > 100
    assert np.isfinite(out.records["value"]).all()
    for figure in out.figures:
        path = summary.run_dir / figure.file
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(figure.caption) > 80
    assert len(out.figures) == 2 and out.summary
    assert out.numbers and all(math.isfinite(v) for v in out.numbers.values())
    assert len(out.predictions) >= 3
    for p in out.predictions + out.sanity_checks:
        assert isinstance(p.passed, bool) and p.claim and p.measured and p.source and p.url
        assert p.threshold and (p.passed or p.explanation)
    assert (summary.run_dir / "outcome.json").exists()
    assert (summary.run_dir / "records.parquet").exists()


def test_equivalence_numbers(outcomes):
    config = SMALL["bias-free-equivalence"]
    out = outcomes["bias-free-equivalence"].outcome
    n = out.numbers
    floor = floor_of(*small_teacher("bias-free-equivalence"))
    assert n["linear_floor"] == pytest.approx(floor, rel=1e-12)
    assert n["paired_max_rel_error"] <= 1e-12  # spec prediction 2: exact
    assert n["max_rel_error_vs_linear_a1"] == 0.0  # alpha = 1 is its own equivalent
    for a in ("0", "0.5", "1"):
        assert n[f"max_rel_error_vs_linear_a{a}"] < 0.01  # spec prediction 3
        assert abs(n[f"final_loss_minus_floor_a{a}"]) < 1e-4  # spec prediction 5
        # the closed form against the independent simulation (spec 2.5; lr 0.01)
        assert n[f"half_way_step_a{a}"] == pytest.approx(
            n[f"half_way_step_closed_form_a{a}"], rel=0.02
        )
        assert n[f"max_rel_error_vs_closed_form_a{a}"] < 0.05
    assert n["relu_to_linear_half_way"] == pytest.approx(2.1, abs=0.1)
    curves = out.records.query("metric == 'loss' and run == 'simulation'")
    final = curves[curves.step == config["steps"]].set_index("alpha")["value"]
    np.testing.assert_allclose(final.to_numpy(), floor, atol=1e-4)
    assert all(p.passed for p in out.predictions if "paired" in p.claim or "floor" in p.claim)


def test_breaking_symmetry_numbers(outcomes):
    config = SMALL["breaking-symmetry"]
    out = outcomes["breaking-symmetry"].outcome
    n = out.numbers
    x, y = small_teacher("breaking-symmetry")
    floor = floor_of(x, y)
    half_mean_square = 0.5 * float((y**2).mean())
    assert n["linear_floor_symmetric"] == pytest.approx(floor, rel=1e-12)
    assert abs(n["final_loss_symmetric"] - floor) < 1e-4  # spec prediction 5
    # one ReLU unit on symmetric whitened data: 1/2 <y^2> - 1/4 ||Sigma_yx||^2
    assert n["final_loss_narrow"] == pytest.approx(0.5 * (half_mean_square + floor), rel=1e-6)
    xs, ys = cubic_teacher(config["n"], config["d"], shift=0.5, augment=False, whiten=False)
    assert n["linear_floor_shifted_inputs"] == pytest.approx(floor_of(xs, ys), rel=1e-12)
    for case in ("even_target", "shifted_inputs", "unaugmented", "biases"):
        assert n[f"final_loss_{case}"] < 0.95 * n[f"linear_floor_{case}"]  # spec prediction 6
    assert [n[f"data_symmetric_{c}"] for c in ("symmetric", "even_target", "unaugmented")] == [
        1.0,
        0.0,
        0.0,
    ]
    assert all(p.passed for p in out.predictions)


def test_depth_gap_numbers(outcomes):
    out = outcomes["depth-gap"].outcome
    n = out.numbers
    two = out.records.query("net == 'two_layer' and metric == 'nonlinearity'")["value"]
    assert len(two) == SMALL["depth-gap"]["snapshots"] and (two <= 1e-10).all()  # exact
    assert n["min_loss_two_layer"] >= n["linear_floor"] * (1 - 1e-9)  # odd part linear
    assert n["final_loss_three_layer"] < 0.9 * n["min_loss_two_layer"]
    assert n["final_nonlinearity_three_layer"] > 0.1
    # the example's residual after the best linear fit, by numpy on 400,000 fresh points
    z = np.random.default_rng(5).standard_normal((400_000, 2))
    side = np.abs(z[:, 1])
    f = np.maximum(z[:, 0] - side, 0) - np.maximum(-z[:, 0] - side, 0)
    residual = f - z @ np.linalg.lstsq(z, f, rcond=None)[0]
    assert n["example_nonlinearity"] == pytest.approx(
        np.linalg.norm(residual) / np.linalg.norm(f), abs=0.03
    )


def test_deep_low_rank_numbers(outcomes):
    config = SMALL["deep-low-rank"]
    out = outcomes["deep-low-rank"].outcome
    n = out.numbers
    floor = floor_of(*small_teacher("deep-low-rank"))
    assert n["final_loss_linear"] == pytest.approx(floor, rel=1e-8)
    assert max(n["final_ratio2_linear_layer1"], n["final_ratio2_linear_layer2"]) < 0.12
    # the reported ratios are those of the recorded singular values
    values = out.records.query("metric == 'singular_value' and net == 'relu'")
    at = values[values.step == n["stage_step"]]
    for layer in (1, 2):
        # record layers are labels (strings): the layer's 1-based number
        sigma = at[at.layer == str(layer)].sort_values("index")["value"].to_numpy()
        assert np.all(np.diff(sigma) <= 0) and len(sigma) == {1: config["d"], 2: 20}[layer]
        assert n[f"stage_ratio2_relu_layer{layer}"] == pytest.approx(sigma[1] / sigma[0], rel=1e-12)
    assert n["stage_ratio2_relu_layer1"] < 0.12 and n["stage_ratio2_relu_layer2"] > 0.8
    assert n["half_way_step_relu"] > 2 * n["half_way_step_linear"]


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("bias-free-equivalence", {"alphas": [0.0, 1.5]}, "alphas"),
        ("bias-free-equivalence", {"alphas": [-0.1]}, "alphas"),
        ("bias-free-equivalence", {"alphas": []}, "alphas"),
        ("bias-free-equivalence", {"hidden": 51}, "even"),
        ("bias-free-equivalence", {"n": 9, "d": 10}, "n >= d"),
        ("bias-free-equivalence", {"bogus": 1}, "unknown config key"),
        ("breaking-symmetry", {"narrow": 100, "hidden": 100}, "narrow"),
        ("breaking-symmetry", {"lr": 0}, "lr"),
        ("depth-gap", {"steps": 0}, "steps"),
        ("deep-low-rank", {"depth": 2}, "depth"),
        ("deep-low-rank", {"n": 5, "d": 6}, "n >= d"),
    ],
)
def test_invalid_configs_are_input_errors(tmp_path, name, overrides, match):
    with pytest.raises(InputError, match=match):
        run_experiment(name, "quick", overrides, tmp_path / "run", progress=False)
    with pytest.raises(InputError, match=match):
        get_experiment(name).config.build("quick", overrides)


def test_paper_scale_uses_the_spec_sizes():
    equivalence = get_experiment("bias-free-equivalence").config.build("paper")
    assert (equivalence.d, 2 * equivalence.n, equivalence.hidden, equivalence.lr) == (
        20,
        1000,
        100,
        0.01,
    )
    assert equivalence.init_std == 1e-3 and equivalence.steps == 6000
    breaking = get_experiment("breaking-symmetry").config.build("paper")
    assert (breaking.d, 2 * breaking.n, breaking.hidden, breaking.lr, breaking.steps) == (
        20,
        1000,
        100,
        0.01,
        20000,
    )
    assert breaking.lr * breaking.shifted_lr == 0.005  # spec case (b)
    deep = get_experiment("deep-low-rank").config.build("paper")
    assert (deep.depth, deep.hidden, deep.init_std, deep.lr, deep.steps) == (
        3,
        50,
        0.01,
        0.01,
        6000,
    )
    gap = get_experiment("depth-gap").config.build("paper")
    assert 2 * gap.n == 10000 and gap.hidden == 50
