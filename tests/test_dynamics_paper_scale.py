"""The spec's numerical checks at their own size (spec sections 0, 2.4, 2.5, 4): d = 20,
P = 1000 symmetric whitened points, H = 100, small start s0 = 1e-3, lr = 0.01. Slow."""

from __future__ import annotations

import numpy as np
import pytest

from reluscope.dynamics import (
    compare,
    cubic_teacher,
    gradient_descent,
    layer_spectra,
    linear_floor,
    odd_even,
    paired_init,
    random_biases,
    random_init,
    theory_curve,
    to_module,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data():
    return cubic_teacher()


def test_paired_start_is_exact(data):
    x, y = data
    cmp = compare(x, y, paired_init((20, 100, 1), 1e-3), alpha=0.0, lr=0.01, steps=3000)
    assert cmp.max_relative_error < 1e-12  # spec: 3e-16


@pytest.mark.parametrize(("alpha", "tolerance"), [(0.0, 0.01), (0.5, 0.003)])
def test_random_start_is_nearly_linear(data, alpha, tolerance):
    x, y = data
    cmp = compare(x, y, random_init((20, 100, 1), 1e-3), alpha=alpha, lr=0.01, steps=3000)
    assert cmp.max_relative_error < tolerance  # spec: 0.7 % and 0.3 %
    assert odd_even(to_module(cmp.bias_free.weights, alpha), x).even_to_odd < 1e-3
    assert cmp.bias_free.loss[-1] == pytest.approx(linear_floor(x, y), abs=1e-4)


def test_closed_form_half_way_times(data):
    """Spec 2.5: the closed form with the effective initial strength is within ~2 % of the
    simulated half-way time and ~3 % of the loss at every alpha; ReLU / linear ~ 2.13."""
    x, y = data
    w = random_init((20, 100, 1), 1e-3)
    halves = {}
    for alpha in (1.0, 0.8, 0.6, 0.4, 0.2, 0.0):
        run = gradient_descent(x, y, w, alpha=alpha, lr=0.01, steps=2000)
        curve = theory_curve(x, y, 2000, lr=0.01, alpha=alpha, init=w)
        halves[alpha] = run.half_way_step(curve.modes.floor)
        assert halves[alpha] == pytest.approx(curve.half_way_step(), rel=0.02)
        assert np.abs(run.loss - curve.loss).max() < 0.035 * run.loss[0]
    assert halves[0.0] / halves[1.0] == pytest.approx(2.13, abs=0.05)


def test_breaking_the_equivalence(data):
    """Spec section 4 (ReLU, H = 100, 20k steps)."""

    def final(x, y, hidden=100, biases=False, lr=0.01):
        widths = (x.shape[1], hidden, 1)
        b = random_biases(widths, 1e-3, seed=1) if biases else None
        run = gradient_descent(
            x, y, random_init(widths, 1e-3, seed=1), biases=b, alpha=0.0, lr=lr, steps=20_000
        )
        return run.loss[-1]

    x, y = data
    floor = linear_floor(x, y)
    assert final(x, y) == pytest.approx(floor, abs=1e-4)  # c0
    assert final(x, y, biases=True) < 0.02 * floor  # c: spec 0.005 / 0.601
    assert final(x, y, hidden=1) > 2 * floor  # width: spec 2.35 / 0.601
    xe, ye = cubic_teacher(even=1.0)
    assert final(xe, ye) == pytest.approx(floor, rel=1e-3)  # a: fits the even part exactly
    xs, ys = cubic_teacher(shift=0.5, augment=False, whiten=False)
    assert final(xs, ys, lr=0.005) < 0.2 * linear_floor(xs, ys)  # b: spec 0.167 / 1.254
    xu, yu = cubic_teacher(augment=False)
    assert final(xu, yu) < 0.1 * linear_floor(xu, yu)  # b2: spec 0.028 / 0.601


def test_deep_networks(data):
    """Spec section 4, depth 3, H = 50, s0 = 0.01."""
    x, y = data
    floor = linear_floor(x, y)
    steps = 6000
    cmp = compare(
        x,
        y,
        random_init((20, 50, 50, 1), 0.01),
        alpha=0.0,
        lr=0.01,
        steps=steps,
        linear="same",
        snapshots=range(0, steps + 1, 500),
    )
    assert cmp.bias_free.loss[-1] < 0.5 * floor  # spec: 0.20 / 0.601
    ratio = cmp.bias_free.half_way_step(floor) / cmp.linear.half_way_step(floor)
    assert 2.5 < ratio < 3.5  # spec: 1695 / 569 = 2.98
    linear = layer_spectra(cmp.linear)
    assert linear.ratio(1)[-1] < 0.12 and linear.ratio(2)[-1] < 0.12  # spec: 0.08-0.10
    assert layer_spectra(cmp.bias_free).ratio(1)[-1] > 0.3  # spec: ~0.6
