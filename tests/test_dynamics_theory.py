"""Closed-form learning curves (Saxe et al. 2014; spec 2.5) against integrated gradient flow and
simulated gradient descent."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from reluscope.dynamics import (
    aligned_init,
    cubic_teacher,
    gradient_descent,
    linear_floor,
    mode_half_way_times,
    mode_strengths,
    modes,
    pair_weights,
    random_init,
    theory_curve,
    whiten,
    whitening_matrix,
)
from reluscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def multi_mode_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric whitened inputs (200, 5) and an odd 3-output target with a rank-2 linear part
    plus a cubic part: three modes of distinct strengths, one of them weak."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 5, generator=gen, dtype=torch.float64)
    x = whiten(torch.cat([x, -x]))
    a = torch.tensor([[2.0, 0.5, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=x.dtype)
    y = x @ a.T + 0.2 * torch.stack([x[:, 2] ** 3, -(x[:, 3] ** 3), x[:, 4] ** 3], 1)
    return x, y


def linear_flow(t: np.ndarray, w1: torch.Tensor, w2: torch.Tensor, x, y, lr: float):
    """W_1, W_2 of the linear network under gradient flow tau dW/dt = -dL/dW, tau = 1/lr."""
    sxx, syx = (x.T @ x / len(x)).numpy(), (y.T @ x / len(x)).numpy()
    shapes = w1.shape, w2.shape

    def rhs(_, flat):
        a = flat[: w1.numel()].reshape(shapes[0])
        b = flat[w1.numel() :].reshape(shapes[1])
        err = syx - b @ a @ sxx
        return lr * np.concatenate([(b.T @ err).ravel(), (err @ a.T).ravel()])

    start = np.concatenate([w1.numpy().ravel(), w2.numpy().ravel()])
    sol = solve_ivp(rhs, (0, t[-1]), start, t_eval=t, rtol=1e-11, atol=1e-14, method="DOP853")
    n1 = w1.numel()
    return [
        (sol.y[:n1, i].reshape(shapes[0]), sol.y[n1:, i].reshape(shapes[1])) for i in range(len(t))
    ]


def test_closed_form_matches_integrated_gradient_flow():
    x, y = multi_mode_data()
    m = modes(x, y)
    assert np.all(np.diff(m.s) < 0) and m.s[-1] > 0.1
    u0 = np.array([1e-4, 3e-4, 1e-3])
    w1, w2 = aligned_init(m, hidden=7, u0=u0, seed=1)
    lr, t = 0.05, np.linspace(0, 600, 61)
    curve = theory_curve(x, y, t, lr=lr, init=(w1, w2), init_strength="projection")
    np.testing.assert_allclose(curve.u0, u0, rtol=1e-12)
    flow = linear_flow(t, w1, w2, x, y, lr)
    products = np.stack([m.left.T @ b @ a @ m.right for a, b in flow])
    np.testing.assert_allclose(np.diagonal(products, axis1=1, axis2=2), curve.strengths, atol=1e-8)
    off = products - np.stack([np.diag(d) for d in np.diagonal(products, axis1=1, axis2=2)])
    assert np.abs(off).max() < 1e-8  # modes stay decoupled
    flow_loss = [0.5 * ((y.numpy() - x.numpy() @ (b @ a).T) ** 2).sum(1).mean() for a, b in flow]
    np.testing.assert_allclose(curve.loss, flow_loss, atol=1e-8)
    assert curve.loss[-1] == pytest.approx(m.floor, abs=1e-6)
    # stage-like learning: the strongest mode is learned first
    assert np.all(np.diff(curve.mode_half_way) > 0)


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.4])
def test_gradient_descent_converges_to_the_closed_form_as_steps_shrink(alpha):
    """Gradient descent by k substeps per unit of time is a first-order scheme for the flow: its
    error halves when k doubles, and the Richardson extrapolation 2 L_2k - L_k matches the closed
    form closely. For alpha < 1 the network is a ReLU net from a paired balanced aligned start
    (pair_weights of aligned_init), which the closed form with rate (1+alpha)/2 describes exactly
    [DERIVED: the pairing is kept on symmetric data, and the equivalent linear net is balanced]."""
    x, y = multi_mode_data()
    m = modes(x, y)
    w = aligned_init(m, hidden=3, u0=2e-4, seed=2)
    if alpha < 1.0:
        w = pair_weights(w)
    curve = theory_curve(x, y, 200, lr=0.1, alpha=alpha, init=w, init_strength="projection")
    np.testing.assert_allclose(curve.u0, (1 + alpha) / 2 * (2 if alpha < 1 else 1) * 2e-4)
    runs = {
        k: gradient_descent(x, y, w, alpha=alpha, lr=0.1, steps=200, substeps=k).loss
        for k in (4, 8)
    }
    errors = {k: np.abs(v - curve.loss).max() / curve.loss[0] for k, v in runs.items()}
    assert errors[4] / errors[8] == pytest.approx(2.0, rel=0.05)
    assert np.abs(2 * runs[8] - runs[4] - curve.loss).max() < 1e-3 * curve.loss[0]
    assert curve.loss[-1] == pytest.approx(m.floor, abs=1e-5 * curve.loss[0])


def test_curves_collapse_on_rescaled_time():
    x, y = multi_mode_data()
    relu = theory_curve(x, y, 300, lr=0.1, alpha=0.0, u0=1e-3)
    linear = theory_curve(x, y, relu.rescaled_t, lr=0.1, alpha=1.0, u0=1e-3)
    np.testing.assert_allclose(relu.loss, linear.loss, rtol=1e-12)
    assert relu.half_way_step() == pytest.approx(2 * linear.half_way_step(), rel=1e-9)


def test_random_small_start_half_way_times():
    """Spec 2.5 / prediction 4: the effective initial strength predicts the plateau escape of a
    wide random start within a few percent, and ReLU needs about twice the linear time."""
    x, y = cubic_teacher(200, 10)
    w = random_init((10, 50, 1), 1e-3, seed=0)
    halves = {}
    for alpha in (0.0, 1.0):
        run = gradient_descent(x, y, w, alpha=alpha, lr=0.02, steps=700)
        curve = theory_curve(x, y, 700, lr=0.02, alpha=alpha, init=w)
        floor = curve.modes.floor
        halves[alpha] = run.half_way_step(floor)
        assert halves[alpha] == pytest.approx(curve.half_way_step(), rel=0.04)
        assert np.abs(run.loss - curve.loss).max() < 0.08 * run.loss[0]
    s, u0 = curve.modes.s[0], curve.u0[0]
    predicted = 2 * np.log(2 * s / u0) / np.log(s / u0)
    assert halves[0.0] / halves[1.0] == pytest.approx(predicted, rel=0.03)
    assert 2.0 < halves[0.0] / halves[1.0] < 2.3


def test_mode_strength_formula():
    s, u0, lr = np.array([3.0, 1.0, 0.0]), np.array([1e-3, 1e-2, 0.5]), 0.01
    u = mode_strengths(s, u0, 10_000, lr)
    np.testing.assert_allclose(u[0], u0, rtol=1e-15)
    np.testing.assert_allclose(u[-1, :2], s[:2], rtol=1e-12)
    np.testing.assert_allclose(u[:, 2], 0.5 / (1 + 2 * lr * np.arange(10_001) * 0.5), rtol=1e-12)
    assert np.all(np.diff(u[:, 0]) >= 0) and np.all(np.diff(u[:300, 0]) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = mode_strengths(s, u0, [1e12], lr)
    np.testing.assert_allclose(far[0, :2], s[:2])
    half = mode_half_way_times(s, u0, lr, alpha=0.0)
    at_half = [mode_strengths(s[i], u0[i], [half[i]], lr, alpha=0.0)[0, 0] for i in range(2)]
    np.testing.assert_allclose(at_half, s[:2] / 2, rtol=1e-10)
    assert half[2] == np.inf
    assert mode_half_way_times(1.0, 0.6, lr)[0] == 0.0
    # ReLU is exactly twice as slow as linear from the same strength
    np.testing.assert_allclose(
        mode_half_way_times(s[:2], u0[:2], lr, alpha=0.0),
        2 * mode_half_way_times(s[:2], u0[:2], lr),
    )


def test_whitening_and_floor():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=gen, dtype=torch.float64) @ torch.tensor(
        [[2.0, 0.3, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.5, 0], [0.1, 0, 0, 1.0]], dtype=torch.float64
    )
    y = x[:, :2] ** 3
    with pytest.raises(InputError, match="whiten=True"):
        modes(x, y)
    with pytest.raises(InputError, match="whiten=True"):
        theory_curve(x, y, 10, lr=0.1, u0=1e-3)
    xw = whiten(x)
    np.testing.assert_allclose((xw.T @ xw / len(xw)).numpy(), np.eye(4), atol=1e-12)
    auto, manual = modes(x, y, whiten=True), modes(xw, y)
    np.testing.assert_allclose(auto.s, manual.s, rtol=1e-12)
    # the floor is invariant under an invertible change of inputs
    assert auto.floor == pytest.approx(linear_floor(x, y), rel=1e-10)
    assert linear_floor(xw, y) == pytest.approx(linear_floor(x, y), rel=1e-10)
    with pytest.raises(InputError, match="singular"):
        whitening_matrix(torch.cat([x, x[:, :1]], 1))


def test_bad_input():
    x, y = cubic_teacher(20, 3)
    with pytest.raises(InputError, match="alpha"):
        theory_curve(x, y, 10, lr=0.1, u0=1e-3, alpha=1.5)
    with pytest.raises(InputError, match="exactly one"):
        theory_curve(x, y, 10, lr=0.1)
    with pytest.raises(InputError, match="exactly one"):
        theory_curve(x, y, 10, lr=0.1, u0=1e-3, init=random_init((3, 4, 1)))
    with pytest.raises(InputError, match="two-layer"):
        theory_curve(x, y, 10, lr=0.1, init=random_init((3, 4, 4, 1)))
    with pytest.raises(InputError, match="inputs"):
        theory_curve(x, y, 10, lr=0.1, init=random_init((2, 4, 1)))
    with pytest.raises(InputError, match="init_strength"):
        theory_curve(x, y, 10, lr=0.1, init=random_init((3, 4, 1)), init_strength="x")
    with pytest.raises(InputError, match="u0"):
        theory_curve(x, y, 10, lr=0.1, u0=0.0)
    with pytest.raises(InputError, match="lr"):
        theory_curve(x, y, 10, lr=-1.0, u0=1e-3)
    with pytest.raises(InputError, match="same number"):
        modes(x, y[:-1])
    with pytest.raises(InputError, match=">= 0"):
        mode_strengths(1.0, 1e-3, [-1.0], 0.1)
    with pytest.raises(InputError, match="hidden"):
        aligned_init(modes(x, y), hidden=0, u0=1e-3)
