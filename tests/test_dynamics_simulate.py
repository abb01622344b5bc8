"""Side-by-side gradient descent of bias-free (leaky) ReLU and linear networks (spec 2.4, 4, 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reluscope.dynamics import (
    compare,
    cubic_teacher,
    equivalent_linear,
    forward,
    gradient_descent,
    linear_floor,
    odd_even,
    paired_init,
    random_biases,
    random_init,
    symmetry_report,
    to_module,
)
from reluscope.errors import InputError, TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    """The spec's default data at a smaller size: symmetric, whitened, y = 1.2 z + 0.5 z^3."""
    return cubic_teacher(200, 10)


def test_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    widths, alpha, lr = (4, 6, 5, 2), 0.3, 0.1
    w, b = random_init(widths, 0.7, seed=1), random_biases(widths, 0.5, seed=1)
    run = gradient_descent(x, y, w, biases=b, alpha=alpha, lr=lr, steps=1)
    params = [t.clone().requires_grad_() for t in (*w, *b)]
    f, _, _ = forward(x, tuple(params[:3]), alpha, tuple(params[3:]))
    loss = 0.5 * ((y - f) ** 2).sum(1).mean()
    loss.backward()
    assert run.loss[0] == pytest.approx(loss.item(), rel=1e-15)
    stepped = [(p - lr * p.grad).detach().numpy() for p in params]
    for got, want in zip((*run.weights, *run.biases), stepped, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)
    # the simulated function is the torch module's
    model = to_module(run.weights, alpha)
    no_bias, _, _ = forward(x, tuple(torch.as_tensor(v) for v in run.weights), alpha)
    np.testing.assert_allclose(model(x).detach().numpy(), no_bias.numpy(), rtol=1e-14)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8])
def test_paired_start_matches_the_equivalent_linear_network_at_every_step(data, alpha):
    x, y = data
    assert symmetry_report(x, y).symmetric
    w = paired_init((10, 40, 1), scale=1e-3, seed=3)
    cmp = compare(x, y, w, alpha=alpha, lr=0.02, steps=600, snapshots=[600])
    assert cmp.max_relative_error <= 1e-12
    final = cmp.bias_free.snapshots[0]
    half = 20
    np.testing.assert_allclose(final[0][:half], -final[0][half:], rtol=0, atol=1e-15)
    assert odd_even(to_module(cmp.bias_free.weights, alpha), x).even_ratio < 1e-12
    assert cmp.bias_free.loss[-1] == pytest.approx(linear_floor(x, y), rel=1e-9)


@pytest.mark.parametrize(("alpha", "tolerance"), [(0.0, 0.01), (0.5, 0.003)])
def test_random_small_start_with_a_wide_layer_is_nearly_linear(data, alpha, tolerance):
    """Spec prediction 3: within ~1 % (ReLU) and ~0.3 % (alpha = 0.5) of the equivalent linear
    network, final ||f_even|| / ||f_odd|| below 1e-3, final loss at the linear floor."""
    x, y = data
    w = random_init((10, 100, 1), scale=1e-3, seed=0)
    cmp = compare(x, y, w, alpha=alpha, lr=0.02, steps=1000)
    assert cmp.max_relative_error < tolerance
    oe = odd_even(to_module(cmp.bias_free.weights, alpha), x)
    assert oe.even_to_odd < 1e-3 and oe.nonlinearity < 1e-12
    assert cmp.bias_free.loss[-1] == pytest.approx(linear_floor(x, y), abs=1e-4)
    # the naive partner (same start, step (1+alpha)/2 lr) is shifted in time: a larger error
    naive = gradient_descent(x, y, w, alpha=1.0, lr=0.02 * (1 + alpha) / 2, steps=1000)
    assert np.abs(naive.loss - cmp.bias_free.loss).max() / cmp.bias_free.loss[0] > 0.05


def test_each_symmetry_breaking_case_behaves_as_the_spec_predicts():
    """Spec section 4 and predictions 6-7 (ReLU, small start, H = 50)."""

    def final(x, y, hidden=50, biases=False, lr=0.02, steps=2000):
        widths = (x.shape[1], hidden, 1)
        b = random_biases(widths, 1e-3, seed=1) if biases else None
        w = random_init(widths, 1e-3, seed=1)
        return gradient_descent(x, y, w, biases=b, alpha=0.0, lr=lr, steps=steps).loss[-1]

    x, y = cubic_teacher(200, 10)
    floor = linear_floor(x, y)
    assert final(x, y) == pytest.approx(floor, abs=1e-4)  # (c0) symmetric: the floor
    assert final(x, y, biases=True) < 0.5 * floor  # (c) biases learn the cubic part
    assert final(x, y, hidden=1) > 3 * floor  # (width) one unit cannot cancel its even part
    xe, ye = cubic_teacher(200, 10, even=1.0)  # (a) an even target component is fitted
    assert final(xe, ye) < linear_floor(xe, ye) - 0.4
    xs, ys = cubic_teacher(200, 10, shift=0.5, augment=False, whiten=False)  # (b) shifted
    assert final(xs, ys, lr=0.01) < 0.6 * linear_floor(xs, ys)
    xu, yu = cubic_teacher(200, 10, augment=False)  # (b2) an unaugmented sample: overfits
    assert final(xu, yu) < 0.9 * linear_floor(xu, yu)


def test_equivalence_map_and_trajectory_records(data):
    x, y = data
    w = random_init((10, 8, 1), seed=0)
    (v1, v2), lr = equivalent_linear(w, lr=0.1, alpha=0.0)
    assert lr == pytest.approx(0.05)
    np.testing.assert_allclose(v1.numpy(), w[0].numpy() / np.sqrt(2), rtol=1e-15)
    np.testing.assert_allclose(v2.numpy(), w[1].numpy() / np.sqrt(2), rtol=1e-15)
    cmp = compare(x, y, w, alpha=0.0, lr=0.1, steps=5, snapshots=range(0, 6, 2))
    assert cmp.bias_free.snapshot_steps == (0, 2, 4)
    np.testing.assert_array_equal(cmp.bias_free.snapshots[0][0], w[0].numpy())
    np.testing.assert_array_equal(cmp.bias_free.rescaled_steps, np.arange(6) / 2)
    rows = cmp.to_records(seed=0)
    assert len(rows) == 18 and {r["net"] for r in rows} == {"bias_free", "linear", "both"}
    assert all(r["seed"] == 0 and r["partner"] == "equivalent" for r in rows)
    same = compare(x, y, w, alpha=0.0, lr=0.1, steps=2, linear="same")
    assert same.linear.lr == 0.1 and same.linear.alpha == 1.0
    np.testing.assert_array_equal(same.bias_free.loss, cmp.bias_free.loss[:3])
    assert same.linear.loss[0] != cmp.linear.loss[0]


def test_bad_input(data):
    x, y = data
    w = random_init((10, 4, 1))
    with pytest.raises(InputError, match="alpha"):
        gradient_descent(x, y, w, alpha=-0.5, lr=0.1, steps=1)
    with pytest.raises(InputError, match="same number of points"):
        gradient_descent(x, y[:-1], w, alpha=0.0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="inputs"):
        gradient_descent(x[:, :5], y, w, alpha=0.0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="NaN"):
        gradient_descent(x, y, (w[0] * np.nan, w[1]), alpha=0.0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="empty"):
        gradient_descent(x[:0], y[:0], w, alpha=0.0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="biases must have sizes"):
        gradient_descent(x, y, w, biases=(torch.zeros(3), torch.zeros(1)), alpha=0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="snapshot"):
        gradient_descent(x, y, w, alpha=0.0, lr=0.1, steps=3, snapshots=[4])
    with pytest.raises(TrainingDiverged, match="diverged"):
        gradient_descent(x, y, random_init((10, 4, 1), 1.0), alpha=0.0, lr=50.0, steps=50)
    with pytest.raises(InputError, match="two-layer"):
        compare(x, y, random_init((10, 4, 4, 1)), alpha=0.0, lr=0.1, steps=1)
    with pytest.raises(InputError, match="linear must be"):
        compare(x, y, w, alpha=0.0, lr=0.1, steps=1, linear="other")
    with pytest.raises(InputError, match="even hidden widths"):
        paired_init((10, 5, 1))
