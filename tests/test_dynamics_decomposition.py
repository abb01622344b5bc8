"""Odd/even parts of networks and the exact two-layer decomposition (spec 2.1, 5(d))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reluscope.dynamics import (
    bias_free_layers,
    depth_gap_example,
    odd_even,
    random_init,
    to_module,
    two_layer_decomposition,
)
from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.nets import mlp, trace


def gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("outputs", [1, 3])
def test_two_layer_decomposition_reproduces_the_network(alpha, outputs):
    model = mlp((6, 40, outputs), bias=False, activation="leaky_relu", slope=alpha, seed=3)
    model = model.double()
    x = 3.0 * gaussian(500, 6)
    parts = two_layer_decomposition(model, x)
    f = model(x).detach().numpy()
    assert np.abs(parts.f - f).max() == 0.0
    scale = np.abs(f).max()
    assert np.abs(parts.linear + parts.even - f).max() <= 1e-12 * scale
    assert parts.max_error <= 1e-12 * scale
    w1, w2 = (m.weight.detach().numpy() for m in model[::2])
    np.testing.assert_allclose(parts.linear_map, (1 + alpha) / 2 * w2 @ w1, rtol=1e-13)
    if alpha == 1.0:
        assert np.abs(parts.even).max() == 0.0


def test_two_layer_parts_are_the_odd_and_even_parts():
    model = to_module(random_init((5, 30, 2), scale=0.5, seed=1), alpha=0.3)
    x = gaussian(300, 5, seed=2)
    parts = two_layer_decomposition(model, x)
    oe = odd_even(model, x)
    np.testing.assert_allclose(oe.odd, parts.linear, atol=1e-13)
    np.testing.assert_allclose(oe.even, parts.even, atol=1e-13)
    assert oe.nonlinearity < 1e-12
    np.testing.assert_allclose(oe.odd_linear_map, parts.linear_map, atol=1e-12)


def test_odd_even_parts_sum_to_f_and_have_the_right_parity():
    model = mlp((4, 16, 16, 16, 3), bias=True, seed=5).double()
    x = gaussian(200, 4)
    oe, mirrored = odd_even(model, x), odd_even(model, -x)
    np.testing.assert_allclose(oe.odd + oe.even, oe.f, rtol=0, atol=1e-14)
    np.testing.assert_allclose(mirrored.odd, -oe.odd, rtol=0, atol=0)
    np.testing.assert_allclose(mirrored.even, oe.even, rtol=0, atol=0)
    assert oe.nonlinearity > 0.01 and oe.even_ratio > 0.01


def test_odd_even_metrics_on_known_functions():
    x = gaussian(1000, 3)
    linear = odd_even(lambda t: t @ torch.tensor([[1.0], [2.0], [0.0]], dtype=t.dtype), x)
    assert linear.nonlinearity < 1e-14 and linear.even_ratio == 0.0
    np.testing.assert_allclose(linear.odd_linear_map, [[1.0, 2.0, 0.0]], atol=1e-13)
    even = odd_even(lambda t: t.norm(dim=1, keepdim=True), x)
    assert even.even_ratio == 1.0 and even.even_to_odd == float("inf")
    assert even.nonlinearity == 0.0  # the odd part is 0, which is linear
    cubic = odd_even(lambda t: t[:, :1] ** 3, x)
    assert 0.3 < cubic.nonlinearity < 0.8 and cubic.even_ratio == 0.0


def test_depth_gap_example_has_a_nonlinear_odd_part():
    model = depth_gap_example()
    x = gaussian(10_000, 2, seed=0)
    expected = torch.relu(x[:, :1] - x[:, 1:].abs()) - torch.relu(-x[:, :1] - x[:, 1:].abs())
    np.testing.assert_allclose(model(x).detach().numpy(), expected.numpy(), atol=1e-15)
    oe = odd_even(model, x)
    assert oe.even_ratio < 1e-15
    assert oe.nonlinearity == pytest.approx(0.56, abs=0.02)  # spec 2.2: 56 %


def test_odd_even_works_on_traced_nets_float32_models_and_images():
    model = mlp((3, 8, 2), bias=True, seed=0)
    x = gaussian(50, 3)
    via_module, via_trace = odd_even(model, x), odd_even(trace(model, (3,)), x)
    np.testing.assert_allclose(via_module.f, via_trace.f, atol=1e-12)
    assert model[0].weight.dtype == torch.float32  # evaluated on a float64 copy
    np.testing.assert_allclose(via_module.f, model.double()(x).detach().numpy(), atol=1e-15)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Flatten()).double()
    oe = odd_even(conv, gaussian(20, 25).reshape(20, 1, 5, 5))
    assert oe.f.shape == (20, 18)
    np.testing.assert_allclose(oe.odd + oe.even, oe.f, atol=1e-14)


def test_bias_free_layers_and_to_module_round_trip():
    weights = random_init((3, 6, 4, 2), scale=1.0, seed=0)
    model = to_module(weights, alpha=0.25)
    back, alpha = bias_free_layers(model)
    assert alpha == 0.25
    for a, b in zip(weights, back, strict=True):
        assert torch.equal(a, b)
    relu = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))
    assert bias_free_layers(relu)[1] == 0.0
    ident = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Identity(), nn.Linear(4, 1, bias=False))
    assert bias_free_layers(ident)[1] == 1.0


def test_bad_models_and_inputs():
    x = gaussian(10, 3)
    with pytest.raises(InputError, match="has a bias"):
        two_layer_decomposition(mlp((3, 4, 1), bias=True), x)
    with pytest.raises(InputError, match="two-layer"):
        two_layer_decomposition(mlp((3, 4, 4, 1), bias=False), x)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        two_layer_decomposition(mlp((3, 4, 1), bias=False, activation="leaky_relu", slope=2.0), x)
    with pytest.raises(InputError, match="one slope"):
        bias_free_layers(
            nn.Sequential(
                nn.Linear(3, 4, bias=False),
                nn.ReLU(),
                nn.Linear(4, 4, bias=False),
                nn.LeakyReLU(0.5),
                nn.Linear(4, 1, bias=False),
            )
        )
    with pytest.raises(UnsupportedLayerError, match="Tanh"):
        bias_free_layers(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 1)))
    with pytest.raises(InputError, match="shape"):
        two_layer_decomposition(mlp((3, 4, 1), bias=False), gaussian(10, 2))
    with pytest.raises(InputError, match="NaN"):
        odd_even(mlp((3, 4, 1)), torch.full((2, 3), float("nan")))
    with pytest.raises(InputError, match="empty"):
        odd_even(mlp((3, 4, 1)), torch.empty(0, 3))
    with pytest.raises(InputError, match="callable"):
        odd_even(3, x)
    with pytest.raises(InputError, match="alpha"):
        to_module(random_init((3, 4, 1)), alpha=-0.1)
