"""Deep bias-free networks: pairing, layer spectra over training and the depth gap (spec 2.2, 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reluscope.dynamics import (
    compare,
    cubic_teacher,
    forward,
    gradient_descent,
    layer_spectra,
    linear_floor,
    odd_even,
    pair_weights,
    random_init,
    singular_values,
    to_module,
)
from reluscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_doubling_makes_a_deep_bias_free_net_exactly_linear(alpha):
    linear = random_init((5, 4, 3, 6, 2), scale=0.8, seed=0)
    doubled = pair_weights(linear)
    assert [tuple(w.shape) for w in doubled] == [(8, 5), (6, 8), (12, 6), (2, 12)]
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    product = linear[3] @ linear[2] @ linear[1] @ linear[0]
    f, _, _ = forward(x, doubled, alpha)
    expected = (1 + alpha) ** 3 * x @ product.T
    np.testing.assert_allclose(f.numpy(), expected.numpy(), atol=1e-12 * expected.abs().max())
    assert odd_even(to_module(doubled, alpha), x).even_ratio < 1e-14


def test_layer_spectra_follow_the_snapshots():
    x, y = cubic_teacher(50, 4)
    run = gradient_descent(
        x, y, random_init((4, 6, 5, 1), 0.3), alpha=0.0, lr=0.05, steps=20, snapshots=[0, 10, 20]
    )
    spectra = layer_spectra(run)
    assert spectra.steps == (0, 10, 20) and [v.shape for v in spectra.values] == [
        (3, 4),
        (3, 5),
        (3, 1),
    ]
    for i, weights in enumerate(run.snapshots):
        for layer, values in enumerate(singular_values(weights)):
            np.testing.assert_allclose(spectra.values[layer][i], values, rtol=1e-14)
    ratio = spectra.ratio(1)
    np.testing.assert_allclose(ratio, spectra.values[0][:, 1] / spectra.values[0][:, 0])
    assert np.isnan(spectra.ratio(3)).all()
    assert len(spectra.to_records()) == 3 * (4 + 5 + 1)
    with pytest.raises(InputError, match="layer"):
        spectra.ratio(4)
    with pytest.raises(InputError, match="snapshots"):
        layer_spectra(gradient_descent(x, y, random_init((4, 3, 1)), alpha=0, lr=0.1, steps=1))


def test_deep_linear_ends_rank_one_and_deep_relu_goes_below_the_floor():
    """Spec section 4, depth 3 at a smaller size: from a small start on symmetric data the deep
    linear net ends with nearly rank-one layers at the linear floor; the deep bias-free ReLU net
    is slower to leave its plateau, passes through a low-rank stage, then learns part of the
    nonlinear odd target (odd part not linear) and ends below the floor."""
    x, y = cubic_teacher(100, 8)
    floor = linear_floor(x, y)
    w = random_init((8, 20, 20, 1), scale=0.01, seed=0)
    steps = 3000
    cmp = compare(
        x, y, w, alpha=0.0, lr=0.03, steps=steps, linear="same", snapshots=range(0, steps + 1, 300)
    )
    relu, linear = layer_spectra(cmp.bias_free), layer_spectra(cmp.linear)
    assert cmp.linear.loss[-1] == pytest.approx(floor, rel=1e-8)
    assert linear.ratio(1)[-1] < 0.1 and linear.ratio(2)[-1] < 0.1
    assert cmp.bias_free.loss[-1] < 0.3 * floor
    assert cmp.bias_free.half_way_step(floor) > 2.5 * cmp.linear.half_way_step(floor)
    assert relu.ratio(1).min() < 0.1 and relu.ratio(1)[-1] > 0.3
    relu_parts = odd_even(to_module(cmp.bias_free.weights, 0.0), x)
    assert relu_parts.nonlinearity > 0.1
    assert odd_even(to_module(cmp.linear.weights, 1.0), x).nonlinearity < 1e-12
