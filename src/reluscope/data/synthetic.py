"""Synthetic data: the Gaussian classification task and uniform points in a box."""

from __future__ import annotations

import torch

from reluscope.data.dataset import Dataset
from reluscope.data.options import positive_int, real
from reluscope.errors import InputError


def gaussian(
    n: int = 1000,
    d: int = 100,
    classes: int = 2,
    radius: float = 1.0,
    noise: float = 0.25,
    *,
    seed: int = 0,
) -> Dataset:
    """The synthetic Gaussian classification task (``d`` = 100 as in the paper's toy study).

    Generator, all draws from one CPU ``torch.Generator`` seeded with ``seed``, in float64:

    1. class means ``mu_k = radius * g_k / ||g_k||`` with ``g_k ~ N(0, I_d)``, k = 0..classes-1
       (independent, uniform on the sphere of that radius);
    2. labels ``y_i = i mod classes`` for i = 0..n-1, randomly permuted (classes balanced to
       within one point);
    3. inputs ``x_i = mu_{y_i} + noise * z_i`` with ``z_i ~ N(0, I_d)`` (isotropic noise of
       standard deviation ``noise`` per coordinate).

    Returned as float32; ``info["means"]`` holds the class means (classes, d).
    """
    n, d = positive_int(n, "n", "gaussian"), positive_int(d, "d", "gaussian")
    classes = positive_int(classes, "classes", "gaussian")
    radius = real(radius, "radius", "gaussian", positive=True)
    noise = real(noise, "noise", "gaussian")
    if classes < 2 or noise < 0:
        raise InputError(
            f"gaussian: expected classes >= 2 and noise >= 0, got classes={classes}, noise={noise}"
        )
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(classes, d, generator=gen, dtype=torch.float64)
    means = radius * g / g.norm(dim=1, keepdim=True)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
    x = means[y] + noise * torch.randn(n, d, generator=gen, dtype=torch.float64)
    info = dict(n=n, d=d, classes=classes, radius=radius, noise=noise, seed=seed)
    return Dataset(x.float(), y, "gaussian", {**info, "means": means.float()})


def uniform(
    n: int = 1000, d: int = 100, low: float = 0.0, high: float = 1.0, *, seed: int = 0
) -> Dataset:
    """``n`` unlabelled points drawn uniformly from the box ``[low, high)^d`` (seeded)."""
    n, d = positive_int(n, "n", "uniform"), positive_int(d, "d", "uniform")
    low, high = real(low, "low", "uniform"), real(high, "high", "uniform")
    if not low < high:
        raise InputError(f"uniform: expected low < high, got low={low}, high={high}")
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, d, generator=gen, dtype=torch.float64)
    return Dataset(x.float(), None, "uniform", dict(n=n, d=d, low=low, high=high, seed=seed))
