"""Seeded float64 initialisations for the simulations: random small weights, the paired
(antisymmetric) start that makes a bias-free leaky-ReLU network exactly linear, and the balanced
mode-aligned start of the closed form.

Weights are in the ``nn.Linear`` layout: W_1 (h_1, d), ..., W_L (c, h_{L-1}). Every draw comes
from a CPU ``torch.Generator`` seeded with ``seed``, so results do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from reluscope.dynamics.checks import DTYPE, as_weights, count, positive_real
from reluscope.dynamics.linear_theory import Modes
from reluscope.errors import InputError


def _widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Layer sizes (d, h_1, ..., c): at least two positive integers."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise InputError(f"widths must list at least (inputs, outputs); got {widths!r}")
    return tuple(count(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths))


def random_init(
    widths: Sequence[int],
    scale: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, ...]:
    """Weights with independent entries scale * N(0, 1) (no fan-in scaling, as in the spec's
    small-initialisation experiments) for layer sizes ``widths`` = (d, h_1, ..., c)."""
    widths = _widths(widths)
    scale = positive_real(scale, "scale")
    gen = torch.Generator().manual_seed(count(seed, "seed"))
    return tuple(
        (scale * torch.randn(o, i, generator=gen, dtype=DTYPE)).to(device)
        for i, o in zip(widths[:-1], widths[1:], strict=True)
    )


def random_biases(
    widths: Sequence[int],
    scale: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, ...]:
    """Biases for layer sizes ``widths``: hidden ones scale * N(0, 1), the output one 0 (the
    spec's "with biases" case). The generator is offset from ``seed`` so that biases and
    :func:`random_init` weights drawn with the same seed are independent."""
    widths = _widths(widths)
    scale = positive_real(scale, "scale")
    gen = torch.Generator().manual_seed(count(seed, "seed") + 2**31)
    hidden = [scale * torch.randn(h, generator=gen, dtype=DTYPE) for h in widths[1:-1]]
    return tuple(b.to(device) for b in [*hidden, torch.zeros(widths[-1], dtype=DTYPE)])


def pair_weights(weights: Any) -> tuple[Tensor, ...]:
    """The doubling construction: from a linear chain (V_1, ..., V_{L-1}, U) build
    W_1 = [V_1; -V_1], W_l = [[V_l, -V_l], [-V_l, V_l]], W_L = [U, -U].

    Since s(z) - s(-z) = (1+alpha) z for s(z) = max(z, alpha z), the bias-free leaky-ReLU network
    with these weights computes (1+alpha)^{L-1} U V_{L-1} ... V_1 x exactly, with no even part.
    For two layers, gradient descent on symmetric data keeps the pairing [DERIVED]; for deeper
    networks it does not in general."""
    ws = as_weights(weights)
    if len(ws) < 2:
        raise InputError(f"pairing needs at least two layers; got {len(ws)} weight matrix")
    first, *middle, last = ws
    out = [torch.cat([first, -first], 0)]
    out += [torch.cat([torch.cat([v, -v], 1), torch.cat([-v, v], 1)], 0) for v in middle]
    out.append(torch.cat([last, -last], 1))
    return tuple(out)


def paired_init(
    widths: Sequence[int],
    scale: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, ...]:
    """:func:`pair_weights` of a :func:`random_init` chain with half the hidden widths; every
    hidden width in ``widths`` must be even."""
    widths = _widths(widths)
    odd = [h for h in widths[1:-1] if h % 2]
    if odd:
        raise InputError(f"paired_init needs even hidden widths; got widths {list(widths)}")
    half = (widths[0], *(h // 2 for h in widths[1:-1]), widths[-1])
    return pair_weights(random_init(half, scale, seed, device))


def aligned_init(
    modes: Modes,
    hidden: int,
    u0: Any,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A balanced, mode-aligned two-layer start: W_2 = U diag(sqrt(u0)) R^T and
    W_1 = R diag(sqrt(u0)) V^T, with (U, V) the modes' singular vectors and R (hidden, k) random
    orthonormal columns. Then W_2 W_1 = U diag(u0) V^T and W_1 W_1^T = W_2^T W_2, the start for
    which the closed form is exact under gradient flow of the linear network."""
    k = len(modes.s)
    hidden = count(hidden, "hidden", minimum=1)
    if hidden < k:
        raise InputError(f"aligned_init needs hidden >= {k} (the number of modes); got {hidden}")
    root = torch.as_tensor(u0, dtype=DTYPE).expand(k)
    if not torch.isfinite(root).all() or (root <= 0).any():
        raise InputError(f"initial mode strengths u0 must be finite and > 0; got {u0!r}")
    root = root.sqrt()
    gen = torch.Generator().manual_seed(count(seed, "seed"))
    r, _ = torch.linalg.qr(torch.randn(hidden, k, generator=gen, dtype=DTYPE))
    w2 = torch.as_tensor(modes.left) * root @ r.T
    w1 = r * root @ torch.as_tensor(modes.right).T
    return w1.to(device), w2.to(device)
