"""The spec's toy data (section 0): Gaussian inputs and the scalar target
y = linear z + cubic z^3 + even |x_2| with z = x_1, in its symmetric and symmetry-breaking forms.

Recipe, in float64 from a CPU generator seeded with ``seed``: draw n points x ~ N(shift, I_d);
with ``augment`` append their negatives (P = 2n); with ``whiten`` map x to x (<x x^T>)^{-1/2};
then compute the target from the final x. The defaults (n = 500, d = 20, augmented, whitened,
linear = 1.2, cubic = 0.5, even = 0) give the spec's symmetric default set, whose odd target has
a nonlinear part that no linear map fits (the linear floor). ``even`` adds an even component,
``shift`` moves the inputs off the origin, and ``augment=False`` leaves a finite sample that is
not symmetric: the spec's cases (a), (b) and (b2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from reluscope.dynamics.checks import DTYPE, count
from reluscope.dynamics.linear_theory import whiten as whiten_inputs
from reluscope.errors import InputError


def gaussian_inputs(
    n: int,
    d: int,
    *,
    shift: float = 0.0,
    augment: bool = True,
    whiten: bool = True,
    seed: int = 0,
) -> Tensor:
    """The recipe's inputs alone, (P, d) float64: n draws of N(shift, I_d), with ``augment`` their
    negatives appended (P = 2n), with ``whiten`` whitened."""
    n, d, seed = count(n, "n", 1), count(d, "d", 1), count(seed, "seed")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=DTYPE) + float(shift)
    if augment:
        x = torch.cat([x, -x])
    return whiten_inputs(x) if whiten else x


def cubic_teacher(
    n: int = 500,
    d: int = 20,
    *,
    linear: float = 1.2,
    cubic: float = 0.5,
    even: float = 0.0,
    shift: float = 0.0,
    augment: bool = True,
    whiten: bool = True,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Inputs (P, d) and targets (P, 1), float64, by the recipe in the module docstring."""
    x = gaussian_inputs(n, d, shift=shift, augment=augment, whiten=whiten, seed=seed)
    if even and x.shape[1] < 2:
        raise InputError(f"an even component |x_2| needs d >= 2; got d={d}")
    z = x[:, 0]
    y = float(linear) * z + float(cubic) * z**3
    if even:
        y = y + float(even) * x[:, 1].abs()
    return x, y[:, None]
