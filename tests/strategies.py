"""Hypothesis strategies and model helpers shared by the tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn


@st.composite
def small_mlps(draw):
    """A random eval-mode MLP (depth 1-3, widths 1-6, with or without bias, random leaky slopes).

    Returns (model, widths, slopes, seed).
    """
    depth = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 6)) for _ in range(depth + 2)]
    bias = draw(st.booleans())
    slopes = [draw(st.floats(0.0, 1.0, allow_nan=False)) for _ in range(depth)]
    seed = draw(st.integers(0, 2**16))
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(depth + 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
            if i < depth:
                layers.append(nn.ReLU() if slopes[i] == 0 else nn.LeakyReLU(slopes[i]))
    return nn.Sequential(*layers).eval(), widths, slopes, seed


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters for every BatchNorm."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n))
                m.running_var.copy_(0.3 + 2 * torch.rand(n))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n) * torch.sign(torch.randn(n)))
                    m.bias.copy_(0.5 * torch.randn(n))
    return model
