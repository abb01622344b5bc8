"""Generalisation bounds: every formula against a hand computation with numpy on a tiny network,
the chain-rule bound's sanity limits, the Monte Carlo Gaussian complexity against closed forms,
and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reluscope import bounds as B
from reluscope.bounds.low_rank import integer_prior
from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.nets import mlp

pytestmark = pytest.mark.usefixtures("one_thread")

W1 = np.array([[0.9, -0.4, 0.3], [0.2, 0.7, -0.5], [-0.6, 0.1, 0.8], [0.4, 0.4, 0.4]])
W2 = np.array([[1.1, -0.3, 0.6, 0.2], [-0.7, 0.9, 0.1, -0.4]])


def _tiny(bias: bool = False) -> nn.Sequential:
    model = nn.Sequential(
        nn.Linear(3, 4, bias=bias), nn.ReLU(), nn.Linear(4, 2, bias=bias)
    ).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W1))
        model[2].weight.copy_(torch.tensor(W2))
        if bias:
            model[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
            model[2].bias.copy_(torch.tensor([0.05, -0.1]))
    return model


def _sample(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, 2, size=n)


def _hand(x: np.ndarray, y: np.ndarray, gamma: float) -> dict:
    """The tiny network's numbers, by hand."""
    out = np.maximum(x @ W1.T, 0) @ W2.T
    m = out[np.arange(len(y)), y] - out[np.arange(len(y)), 1 - y]
    return dict(
        n=len(x),
        margins=m,
        risk=np.mean(m <= gamma),
        xf=np.linalg.norm(x),
        bx=np.linalg.norm(x, axis=1).max(),
        s=[np.linalg.norm(W1, 2), np.linalg.norm(W2, 2)],
        f=[np.linalg.norm(W1), np.linalg.norm(W2)],
        l21=[np.linalg.norm(W1, axis=1).sum(), np.linalg.norm(W2, axis=1).sum()],
        r=[np.linalg.matrix_rank(W1), np.linalg.matrix_rank(W2)],
    )


@pytest.fixture(scope="module")
def table():
    x, y = _sample()
    h = _hand(x, y, 1.0)
    gamma = float(np.median(np.abs(h["margins"])))
    result = B.compare(
        _tiny(), torch.tensor(x), torch.tensor(y), margin=gamma, delta=0.1, C1=1.5, C2=0.7
    )
    return result, _hand(x, y, gamma), gamma


def test_low_rank_bound_by_hand(table):
    result, h, gamma = table
    n, delta, C1, C2 = h["n"], 0.1, 1.5, 0.7
    g = (
        h["xf"]
        * h["s"][0]
        * h["s"][1]
        * (C1 * math.sqrt(h["r"][0] * 4) + (2 * C2 + 1) * math.sqrt(h["r"][1] * 2))
    )
    bound = (
        h["risk"]
        + 2 * math.sqrt(math.pi) / (gamma * n) * g
        + math.sqrt(9 * math.log(2 / delta) / (2 * n))
    )
    r = result["low-rank"]
    assert r.value == pytest.approx(bound, rel=1e-10)
    assert r.margin_risk == h["risk"] and 0 < h["risk"] < 1
    assert r.params["log10_gaussian_complexity"] == pytest.approx(math.log10(g), rel=1e-12)
    assert 10**r.log10_norm_product == pytest.approx(h["s"][0] * h["s"][1], rel=1e-12)
    assert r.rank_form == "sum" and r.log10_rank_factor == r.log10_rank_factor_substituted


def test_low_rank_post_hoc_by_hand(table):
    result, h, gamma = table
    n, delta, C1, C2 = h["n"], 0.1, 1.5, 0.7

    def log_inv_prior(k: int) -> float:
        return math.log(1.5) + math.log(abs(k) + 1) + math.log(abs(k) + 2)

    ks = [math.ceil(math.log2(s)) for s in h["s"]]
    j = math.floor(math.log2(gamma))
    cost = log_inv_prior(j) + sum(log_inv_prior(k) for k in ks) + math.log(3) + math.log(2)
    g = (
        h["xf"]
        * 2 ** sum(ks)
        * (C1 * math.sqrt(h["r"][0] * 4) + (2 * C2 + 1) * math.sqrt(h["r"][1] * 2))
    )
    risk = np.mean(h["margins"] <= 2.0**j)
    bound = (
        risk
        + 2 * math.sqrt(math.pi) / (2.0**j * n) * g
        + math.sqrt(9 * (math.log(2 / delta) + cost) / (2 * n))
    )
    r = result["low-rank-post-hoc"]
    assert r.value == pytest.approx(bound, rel=1e-10)
    assert r.params["margin"] == 2.0**j <= gamma < 2.0 ** (j + 1)
    assert all(s <= 2.0**k < 2 * s for s, k in zip(h["s"], ks, strict=True))


def test_grs_and_nts_by_hand(table):
    result, h, gamma = table
    n, delta, classes, depth = h["n"], 0.1, 2, 2
    confidence = 3 * math.sqrt(math.log(2 / delta) / (2 * n))
    for name, depth_factor in (
        ("grs", 1 + math.sqrt(2 * math.log(2) * depth)),
        ("nts", 2.0**depth),
    ):
        main = 4 * classes / gamma * depth_factor * h["xf"] / n * h["f"][0] * h["f"][1]
        r = result[name]
        assert r.value == pytest.approx(h["risk"] + main + confidence, rel=1e-10), name
        assert 10**r.log10_main == pytest.approx(main, rel=1e-10)
        in_ranks = (
            main
            / (h["f"][0] * h["f"][1])
            * h["s"][0]
            * h["s"][1]
            * math.sqrt(h["r"][0] * h["r"][1])
        )
        assert 10**r.log10_main_substituted == pytest.approx(in_ranks, rel=1e-10)
        assert r.rank_form == "product"


def test_bft_by_hand(table):
    result, h, gamma = table
    n, delta = h["n"], 0.1
    spectral = h["s"][0] * h["s"][1]
    ra = spectral * sum((a / s) ** (2 / 3) for a, s in zip(h["l21"], h["s"], strict=True)) ** 1.5
    rad = 4 / n + 36 * h["xf"] * ra * math.log(n) * math.sqrt(math.log(2 * 12)) / (gamma * n)
    bound = h["risk"] + 2 * rad + 3 * math.sqrt(math.log(2 / delta) / (2 * n))
    r = result["bft"]
    assert r.value == pytest.approx(bound, rel=1e-10)
    in_ranks = spectral * ((4 * h["r"][0]) ** (1 / 3) + (2 * h["r"][1]) ** (1 / 3)) ** 1.5
    assert 10**r.log10_main_substituted == pytest.approx(
        2 * (rad - 4 / n) * in_ranks / ra, rel=1e-10
    )


def test_nbs_by_hand(table):
    result, h, gamma = table
    n, delta, depth, width = h["n"], 0.1, 2, 4
    stable = sum(f**2 / s**2 for f, s in zip(h["f"], h["s"], strict=True))
    kl = 42**2 * depth**2 * h["bx"] ** 2 * width * math.log(4 * width * depth)
    kl *= (h["s"][0] * h["s"][1]) ** 2 * stable / (2 * gamma**2)
    extra = math.log(6 * n / delta) + math.log(depth) + math.log(n) / (2 * depth)
    r = result["nbs"]
    assert r.value == pytest.approx(h["risk"] + 4 * math.sqrt((kl + extra) / (n - 1)), rel=1e-10)
    assert 10**r.log10_main == pytest.approx(4 * math.sqrt(kl / (n - 1)), rel=1e-10)
    assert 10**r.log10_rank_factor == pytest.approx(math.sqrt(stable), rel=1e-12)


def test_rank_substitution_never_lowers_a_prior_bound():
    torch.manual_seed(3)
    net = mlp([5, 12, 12, 3], bias=False, seed=3)
    x, y = torch.randn(30, 5), torch.arange(30) % 3
    result = B.compare(net, x, y, margin=0.5)
    for name in ("grs", "bft", "nbs", "nts"):
        r = result[name]
        assert r.log10_main_substituted >= r.log10_main - 1e-12, name


def test_one_layer_reduces_to_b_sqrt_r_dout_x():
    x = torch.randn(20, 5, dtype=torch.float64)
    layer = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(
            torch.randn(3, 2, dtype=torch.float64) @ torch.randn(2, 5, dtype=torch.float64)
        )
    b = float(torch.linalg.matrix_norm(layer.weight.detach(), 2))
    expected = b * math.sqrt(2 * 3) * float(x.norm())
    for c1, c2 in ((1.0, 1.0), (7.0, 3.0)):
        assert B.low_rank_complexity(
            (5, 3), [b], [2], float(x.norm()), C1=c1, C2=c2
        ) == pytest.approx(expected)
        result = B.compare(layer, x, torch.arange(20) % 3, margin=0.1, C1=c1, C2=c2)
        assert result.norms.ranks == (2,)
        log10_g = result["low-rank"].params["log10_gaussian_complexity"]
        assert log10_g == pytest.approx(math.log10(expected), rel=1e-12)


def test_chain_rank_factor_by_hand():
    widths, ranks, c1, c2 = (7, 6, 5, 4), (2, 3, 1), 2.0, 0.5
    expected = c1**2 * math.sqrt(2 * 6) + (2 * c2 + 1) * (c1 * math.sqrt(3 * 5) + math.sqrt(1 * 4))
    assert B.chain_rank_factor(widths, ranks, C1=c1, C2=c2) == pytest.approx(expected)
    assert B.low_rank_complexity(
        widths, [2.0, 0.5, 3.0], ranks, 4.0, C1=c1, C2=c2
    ) == pytest.approx(4.0 * 3.0 * expected)


def test_integer_prior_sums_to_one():
    for k in (0, 5, 100):  # sum over |k| <= K is 1 - 4 / (3 (K + 2))
        partial = sum(integer_prior(j) for j in range(-k, k + 1))
        assert partial == pytest.approx(1 - 4 / (3 * (k + 2)), rel=1e-12)


def test_biases_are_absorbed_exactly():
    x, y = _sample(10, seed=1)
    model = _tiny(bias=True).double()
    net = B.mlp_weights(model, (3,))
    b1, b2 = model[0].bias.detach().numpy(), model[2].bias.detach().numpy()
    top = np.hstack([W1, b1[:, None]])
    augmented = [np.vstack([top, [0, 0, 0, 1]]), np.hstack([W2, b2[:, None]])]
    for w, a in zip(net.weights, augmented, strict=True):
        np.testing.assert_allclose(w.numpy(), a, atol=1e-15)
    with torch.no_grad():
        np.testing.assert_allclose(
            net(torch.tensor(x)).numpy(), model(torch.tensor(x)).numpy(), atol=1e-12
        )
    result = B.compare(model, torch.tensor(x), torch.tensor(y), margin=0.2)
    assert result.params["biases_absorbed"] and result.norms.widths == (4, 5, 2)
    assert result.norms.spectral[0] == pytest.approx(np.linalg.norm(augmented[0], 2))
    assert result.sample.data_norm == pytest.approx(math.sqrt(np.linalg.norm(x) ** 2 + 10))
    with pytest.raises(InputError, match="non-zero biases"):
        B.compare(model, torch.tensor(x), torch.tensor(y), margin=0.2, biases="error")


def test_exact_ranks_use_the_models_precision():
    layer = nn.Linear(6, 8)  # float32, rank 2: float32 rounding must not count as rank
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8, 2) @ torch.randn(2, 6))
        layer.bias.zero_()
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(8, 3, bias=False))
    x, y = torch.randn(9, 6), torch.arange(9) % 3
    result = B.compare(model, x, y, margin=0.1)
    assert result.norms.ranks == (2, 3)
    assert np.linalg.matrix_rank(layer.weight.detach().numpy()) == 2


def test_truncated_ranks_use_the_truncated_network():
    x, y = _sample(40, seed=2)
    gamma = 0.3
    result = B.compare(_tiny(), torch.tensor(x), torch.tensor(y), margin=gamma, ranks=[1, 1])
    u1, s1, v1 = np.linalg.svd(W1)
    u2, s2, v2 = np.linalg.svd(W2)
    t1, t2 = s1[0] * np.outer(u1[:, 0], v1[0]), s2[0] * np.outer(u2[:, 0], v2[0])
    out = np.maximum(x @ t1.T, 0) @ t2.T
    m = out[np.arange(40), y] - out[np.arange(40), 1 - y]
    assert result.truncated_margins.risk == pytest.approx(np.mean(m <= gamma))
    assert result["low-rank"].margin_risk == result.truncated_margins.risk
    assert result["grs"].margin_risk == result.margins.risk
    assert result.norms.ranks == (1, 1)


def test_margin_statistics_against_brute_force():
    outputs = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 3.5], [1.0, 1.0, -2.0], [5.0, -1.0, 4.0]])
    labels = torch.tensor([0, 1, 1, 2])
    expected = [1.0, -0.5, 0.0, -1.0]
    np.testing.assert_allclose(B.margins(outputs, labels).numpy(), expected)
    stats = B.margin_risk(outputs, labels, 0.5)
    assert (stats.risk, stats.error, stats.min_margin) == (0.75, 0.75, -1.0)
    assert stats.ramp_risk == pytest.approx((0 + 1 + 1 + 1) / 4)
    assert B.default_margin(outputs, labels, quantile=0.5) == 1.0


# ----------------------------------------------------------------- Monte Carlo complexity
def test_rank_one_scalar_case_matches_its_closed_form():
    torch.manual_seed(4)
    x = torch.randn(10, 4, dtype=torch.float64)
    gammas = torch.randn(400, 10, 1, dtype=torch.float64)
    est = B.gaussian_complexity_estimate(x, (4, 1), [2.0], [1], gammas=gammas)
    exact = [2.0 * float((x.T @ g[:, 0]).norm()) for g in gammas]  # sup_{|w| <= B} <g, X w>
    np.testing.assert_allclose(est.per_draw, exact, rtol=1e-12)
    assert est.bound == pytest.approx(2.0 * float(x.norm()))  # B sqrt(r d_out) ||X||_F
    # E ||X^T g|| <= ||X||_F (Jensen): the bound holds for the mean, up to Monte Carlo error
    assert est.value - 3 * est.stderr <= est.bound
    assert est.value > 0.8 * est.bound  # and it is nearly tight here


def test_depth_two_scalar_case_matches_its_closed_form():
    torch.manual_seed(5)
    x = torch.randn(12, 1, dtype=torch.float64)
    gammas = torch.randn(4, 12, 1, dtype=torch.float64)
    est = B.gaussian_complexity_estimate(x, (1, 1, 1), [1.5, 0.5], [1, 1], gammas=gammas, steps=100)
    relu = torch.relu
    exact = [  # w2 relu(w1 x): the sup picks the sign of w1, then of w2
        0.75 * max(abs(float(g[:, 0] @ relu(x[:, 0]))), abs(float(g[:, 0] @ relu(-x[:, 0]))))
        for g in gammas
    ]
    np.testing.assert_allclose(est.per_draw, exact, rtol=1e-6)


def test_estimate_between_its_explicit_start_and_the_bound():
    torch.manual_seed(6)
    x = torch.randn(15, 4, dtype=torch.float64)
    gammas = torch.randn(3, 15, 3, dtype=torch.float64)
    widths, norms, ranks = (4, 6, 5, 3), (1.5, 0.8, 2.0), (2, 1, 3)
    est = B.gaussian_complexity_estimate(x, widths, norms, ranks, gammas=gammas, steps=60)
    # the explicit start: v = top right singular vector of X, c = relu(+-X v), a along Gamma^T c
    v = np.linalg.svd(x.numpy())[2][0]
    c = max((np.maximum(x.numpy() @ v, 0), np.maximum(-x.numpy() @ v, 0)), key=np.linalg.norm)
    scale = 1.5 * 0.8 * 2.0
    starts = [scale * np.linalg.norm(g.numpy().T @ c) for g in gammas]
    np.testing.assert_allclose(est.per_draw_start, starts, rtol=1e-12)
    assert est.baseline == pytest.approx(scale * np.linalg.norm(c) * 2 * math.sqrt(2 / math.pi))
    assert all(v >= s for v, s in zip(est.per_draw, est.per_draw_start, strict=True))
    assert est.value > np.mean(starts)  # the ascent improves on the start
    assert est.value <= est.bound and est.looseness > 1
    assert est.bound == pytest.approx(B.low_rank_complexity(widths, norms, ranks, float(x.norm())))


def test_compare_with_an_estimate():
    x, y = _sample(16, seed=3)
    result = B.compare(
        _tiny(), torch.tensor(x), torch.tensor(y), margin=0.5, estimate_draws=2, estimate_steps=20
    )
    assert result.estimate.value <= result.estimate.bound
    assert math.log10(result.estimate.bound) == pytest.approx(
        result["low-rank"].params["log10_gaussian_complexity"]
    )
    assert [r["metric"] for r in result.estimate.to_records()][0] == "gaussian_complexity_mc"


# ----------------------------------------------------------------- bad input
def test_bad_input():
    x, y = _sample()
    x, y, model = torch.tensor(x), torch.tensor(y), _tiny()
    with pytest.raises(InputError, match=r"shape \(12,\)"):
        B.compare(model, x, y[:5], margin=1.0)
    with pytest.raises(InputError, match="integer class indices"):
        B.compare(model, x, y.double(), margin=1.0)
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        B.compare(model, x, y + 1, margin=1.0)
    with pytest.raises(InputError, match="at least 2 distinct classes"):
        B.compare(model, x, torch.zeros(12, dtype=torch.long), margin=1.0)
    with pytest.raises(InputError, match="at least two outputs"):
        B.compare(nn.Linear(3, 1), x, torch.zeros(12, dtype=torch.long), margin=1.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="margin"):
            B.compare(model, x, y, margin=bad)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(InputError, match="delta"):
            B.compare(model, x, y, margin=1.0, delta=bad)
    with pytest.raises(InputError, match="bounds must be a non-empty list of bound names"):
        B.compare(model, x, y, margin=1.0, bounds=["grs", "pac"])
    with pytest.raises(InputError, match="ranks"):
        B.compare(model, x, y, margin=1.0, ranks=[1])
    with pytest.raises(InputError, match="biases"):
        B.compare(model, x, y, margin=1.0, biases="drop")
    with pytest.raises(InputError, match="exceeds"):
        B.low_rank_complexity((3, 4, 2), [1.0, 1.0], [4, 1], 1.0)
    with pytest.raises(InputError, match="C1"):
        B.chain_rank_factor((3, 2), [1], C1=0.0)


@pytest.mark.parametrize(
    "model, detail",
    [
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)), "MLPs"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU()), "after the last"),
        (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(2.0), nn.Linear(4, 2)), "1-Lipschitz"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)), "in a row"),
        (nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)), "Sigmoid"),
    ],
)
def test_unsupported_layers(model, detail):
    shape = (1, 3) if isinstance(model[0], nn.Conv1d) else (3,)
    x, y = torch.randn((4,) + shape), torch.tensor([0, 1, 0, 1])
    with pytest.raises(UnsupportedLayerError, match=detail):
        B.compare(model, x, y, margin=1.0)


def test_linear_layers_without_activation_between_count_as_their_product():
    from reluscope.bounds import mlp_weights
    from reluscope.lowrank import LowRankLinear

    torch.manual_seed(0)
    factorised = torch.nn.Sequential(
        LowRankLinear(6, 5, 2), torch.nn.ReLU(), LowRankLinear(5, 3, 2, bias=False)
    ).double()
    seen = mlp_weights(factorised, (6,))
    assert seen.paths == ("0", "2") and seen.widths == (7, 6, 3)  # biases absorbed: +1
    w1 = factorised[0].u.weight @ factorised[0].v.weight
    b1 = factorised[0].bias
    w2 = factorised[2].u.weight @ factorised[2].v.weight
    torch.testing.assert_close(seen.weights[0][:5, :6], w1, rtol=0, atol=1e-14)
    torch.testing.assert_close(seen.weights[0][:5, 6], b1, rtol=0, atol=1e-14)
    torch.testing.assert_close(seen.weights[1][:, :5], w2, rtol=0, atol=1e-14)
    x = torch.randn(9, 6, dtype=torch.float64)
    torch.testing.assert_close(seen(x), factorised(x), rtol=0, atol=1e-12)
    assert int(torch.linalg.matrix_rank(seen.weights[1])) == 2


def test_consecutive_biased_linear_layers_compose_with_their_biases():
    from reluscope.bounds import mlp_weights

    torch.manual_seed(1)
    a, b, c = torch.nn.Linear(4, 5), torch.nn.Linear(5, 3), torch.nn.Linear(3, 2)
    model = torch.nn.Sequential(a, b, torch.nn.ReLU(), c).double()
    seen = mlp_weights(model, (4,))
    assert seen.paths == ("0+1", "3") and seen.depth == 2
    torch.testing.assert_close(seen.weights[0][:3, :4], b.weight @ a.weight, rtol=0, atol=1e-14)
    torch.testing.assert_close(
        seen.weights[0][:3, 4], b.weight @ a.bias + b.bias, rtol=0, atol=1e-14
    )
    x = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(seen(x), model(x), rtol=0, atol=1e-12)
