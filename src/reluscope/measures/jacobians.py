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

from reluscope.measures.options import check_chunk, select_sites
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import as_pwlnet

#: The largest tangent tensor (in numbers) the default chunk size aims for.
TANGENT_BUDGET = 2**26


def default_chunk_size(net: PWLNet) -> int:
    """Points per tangent pass such that the largest tangent holds about TANGENT_BUDGET numbers
    (between 1 and 256 points)."""
    widest = max([math.prod(n.shape) for n in net.nodes] + [net.input_dim])
    return max(1, min(256, TANGENT_BUDGET // (widest * net.input_dim)))


def singular_values(jac: Tensor) -> Tensor:
    """Singular values, in descending order, of each matrix of the batch ``jac`` (..., m, n).

    Computed on J or J^T, whichever is tall, stored contiguously: LAPACK's batched SVD is much
    faster there than on the transposed view a tangent pass returns (about 50x for 200 x 784).
    """
    tall = jac if jac.shape[-2] >= jac.shape[-1] else jac.mT
    return torch.linalg.svdvals(tall.contiguous())


def spectral_norm(jac: Tensor) -> Tensor:
    """Largest singular value ||J||_op of each matrix of the batch ``jac`` (..., m, n).

    The square root of the largest eigenvalue of the smaller Gram matrix J J^T or J^T J; its
    relative error is of the order of the dtype's epsilon times the matrix size.
    """
    wide = jac if jac.shape[-2] <= jac.shape[-1] else jac.mT
    return torch.linalg.eigvalsh(wide @ wide.mT)[..., -1].clamp_min(0).sqrt()


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
    step = check_chunk(chunk_size) or default_chunk_size(net)
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
    return net.local_affine(x, check_chunk(chunk_size) or default_chunk_size(net))[0]
