"""Exact input Jacobians of a PWLNet's sites and output, and their singular values.

Jacobians come from :meth:`PWLNet.jacobian_pass` (forward mode: one pass gives every site's and
the output's Jacobian). Inputs and outputs are flattened: a Jacobian has shape
(batch, n_out, input_dim), in output units per input unit.

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.measures.sites import select_sites
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import as_pwlnet
from reluscope.validation import check_int

#: The largest tangent tensor (in numbers) the default chunk size aims for.
TANGENT_BUDGET = 2**26


def default_chunk_size(net: PWLNet) -> int:
    """Points per tangent pass such that the largest tangent holds about TANGENT_BUDGET numbers
    (between 1 and 256 points)."""
    widest = max([math.prod(n.shape) for n in net.nodes] + [net.input_dim])
    return max(1, min(256, TANGENT_BUDGET // (widest * net.input_dim)))


def _batch(net: PWLNet, x: Tensor) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() == len(net.input_shape):
        x = x.unsqueeze(0)
    return net.check_input(x)


def site_jacobians(
    model: nn.Module | PWLNet,
    x: Tensor,
    sites: Iterable[str] | str | None = None,
    chunk_size: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """Exact input Jacobians of the pre-activations of ``sites`` (all when None) at the points x.

    Returns, by site name in network order, tensors of shape (batch, site.size, input_dim):
    entry [i, j, k] is d z_j(x_i) / d x_k with inputs and pre-activations flattened. Points are
    processed ``chunk_size`` at a time (default: :func:`default_chunk_size`). ``input_shape`` is
    needed to trace a module whose first layer is not Linear.
    """
    net = as_pwlnet(model, input_shape)
    names = [s.name for s in select_sites(net, sites)]
    x = _batch(net, x)
    step = check_int("chunk_size", chunk_size, minimum=1, allow_none=True) or default_chunk_size(
        net
    )
    parts = [net.jacobian_pass(x[i : i + step], names) for i in range(0, len(x), step)]
    if not parts:
        return {s.name: x.new_zeros(0, s.size, net.input_dim) for s in net.sites if s.name in names}
    return {name: torch.cat([p.site_jacobians[name] for p in parts]) for name in names}


def output_jacobian(
    model: nn.Module | PWLNet,
    x: Tensor,
    chunk_size: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> Tensor:
    """Exact input Jacobian of the (flattened) output at the points x: (batch, output_dim,
    input_dim), the linear part of the affine map of each point's region (as in
    :meth:`PWLNet.local_affine`)."""
    net = as_pwlnet(model, input_shape)
    x = _batch(net, x)
    step = check_int("chunk_size", chunk_size, minimum=1, allow_none=True)
    return net.local_affine(x, step or default_chunk_size(net))[0]
