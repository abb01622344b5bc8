"""Lipschitz bounds of a PWLNet: operator norms of its affine ops, and products along the graph.

All norms are Euclidean (spectral) norms of the maps between flattened tensors, in units of
output per unit of input. Biases never matter: only the linear part ``op.linear`` of each op.

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.ops import (
    AdaptiveAvgPoolOp,
    AddOp,
    AvgPoolOp,
    BatchNormOp,
    CatOp,
    ConvOp,
    LinearOp,
    MeanOp,
    Op,
    PadOp,
    ReshapeOp,
    ScaleShiftOp,
    UpsampleNearestOp,
)
from reluscope.nets.pwl import INPUT, PWLNet
from reluscope.nets.sites import SiteOp

#: Power-iteration estimates are multiplied by this factor by default (see ``operator_norm``).
SAFETY = 1.01


def operator_norm(
    op: Op,
    input_shape: Sequence[int],
    iters: int = 150,
    seed: int = 0,
    safety: float = SAFETY,
    tol: float = 1e-10,
) -> float:
    """The spectral norm of the linear part of ``op`` acting on inputs of ``input_shape``.

    ``input_shape`` excludes the batch dimension. Exact (no safety factor) for Linear (largest
    singular value of the weight, from the eigenvalues of its smaller Gram matrix), per-channel
    scalings (largest ``|scale|``), reshapes and constant paddings (1), activations
    (``max(1, largest |slope|)``, their Lipschitz constant, or its upper bound) and max pooling
    (``sqrt`` of the largest number of windows sharing an input element). For anything else (convolutions with their padding and stride on that
    input size, average pooling) it runs power iteration accelerated by Lanczos (Golub-Kahan
    bidiagonalisation with full reorthogonalisation) on ``A = op.linear`` (in float64 for a
    float64 op, else float32), with the adjoint ``A^T`` from autograd (``torch.func.vjp``) and
    a random start seeded by ``seed``: the true norm of the operator on that input size, not of
    the reshaped kernel.

    Like plain power iteration, this gives a lower estimate that converges to the norm from
    below; it stops after ``iters`` steps or when the estimate changes by less than ``tol``
    relative over 5 steps. The estimate is multiplied by ``safety`` (default 1.01) so that it
    can serve as an
    upper bound; pass ``safety=1`` for the plain estimate.
    """
    shape = tuple(int(s) for s in input_shape)
    if isinstance(op, LinearOp):
        w = op.weight.detach().to(torch.float64)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        return float(torch.linalg.eigvalsh(gram)[-1].clamp(min=0).sqrt())
    if isinstance(op, (ScaleShiftOp, BatchNormOp)):
        scale = op.scale
        if isinstance(scale, Tensor):
            return float(scale.detach().abs().max())
        return abs(float(scale))
    if isinstance(op, (ReshapeOp, PadOp)):
        return 1.0
    if isinstance(op, SiteOp):
        return max(1.0, op.lipschitz(shape)) if op.kind != "max_pool" else op.lipschitz(shape)
    if isinstance(op, (AddOp, CatOp)):
        raise InputError(f"a {op.kind} node has several inputs: bound each input instead")
    if not isinstance(op, (ConvOp, AvgPoolOp, AdaptiveAvgPoolOp, MeanOp, UpsampleNearestOp)):
        raise InputError(f"no operator norm for ops of kind {op.kind!r}")
    return safety * _lanczos_norm(op, shape, iters, seed, tol)


def _lanczos_norm(op: Op, shape: tuple[int, ...], iters: int, seed: int, tol: float) -> float:
    """Largest singular value of ``op.linear`` on ``shape`` (a lower estimate, see above)."""
    tensors = [v for v in vars(op).values() if isinstance(v, Tensor) and v.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = torch.float64 if tensors and tensors[0].dtype == torch.float64 else torch.float32
    op = op.to(dtype=dtype)
    n = math.prod(shape)
    out, adjoint = torch.func.vjp(op.linear, torch.zeros((1,) + shape, dtype=dtype, device=device))[
        :2
    ]
    m = out.numel()
    steps = max(1, min(iters, n, m))  # the Krylov spaces have at most min(n, m) dimensions
    vs = torch.zeros(steps + 1, n, dtype=dtype, device=device)  # orthonormal input basis
    us = torch.zeros(steps, m, dtype=dtype, device=device)  # orthonormal output basis
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    vs[0] = v / v.norm()
    alphas, betas = [], []
    estimate = 0.0
    for j in range(steps):
        u = op.linear(vs[j].reshape((1,) + shape)).reshape(-1)
        u = _orthogonalise(u, us[:j])
        alphas.append(float(u.norm()))
        if alphas[-1] == 0.0:
            break
        us[j] = u / alphas[-1]
        w = adjoint(us[j].reshape(out.shape))[0].reshape(-1)
        w = _orthogonalise(w, vs[: j + 1])
        betas.append(float(w.norm()))
        last = j == steps - 1 or betas[-1] == 0.0
        if j % 5 == 4 or last:
            # U_j^T A V_{j+1}: the bidiagonal of the Lanczos recurrence with its last beta, whose
            # singular values are lower estimates, exact once U_j spans the output space (the
            # range of A^T then lies in span V_{j+1})
            k = len(alphas)
            bidiag = torch.zeros(k, k + 1, dtype=torch.float64)
            bidiag[range(k), range(k)] = torch.tensor(alphas, dtype=torch.float64)
            bidiag[range(k), range(1, k + 1)] = torch.tensor(betas, dtype=torch.float64)
            new = float(torch.linalg.svdvals(bidiag)[0])
            if last or abs(new - estimate) <= tol * new:
                return new
            estimate = new
        vs[j + 1] = w / betas[-1]
    return max([estimate, *alphas])


def _orthogonalise(x: Tensor, basis: Tensor) -> Tensor:
    """``x`` minus its projection on the orthonormal rows of ``basis`` (Gram-Schmidt, twice)."""
    for _ in range(2):
        x = x - basis.T @ (basis @ x)
    return x


def _input_shape(net: PWLNet, name: str) -> tuple[int, ...]:
    return net.input_shape if name == INPUT else net.node(name).shape


def node_norms(net: PWLNet, **kwargs) -> dict[str, float]:
    """``operator_norm`` of every single-input node, by name (keyword arguments passed on)."""
    return {
        n.name: operator_norm(n.op, _input_shape(net, n.inputs[0]), **kwargs)
        for n in net.nodes
        if not isinstance(n.op, (AddOp, CatOp))
    }


def lipschitz_to_nodes(net: PWLNet, **kwargs) -> dict[str, float]:
    """An upper bound of the Lipschitz constant of x -> value of every node (and of the input).

    Products of operator norms along the graph; an add node gets the sum of its inputs' bounds
    (triangle inequality), a concatenation the root of the sum of squares; a site multiplies by
    its Lipschitz constant (see :func:`operator_norm`).
    """
    norms = node_norms(net, **kwargs)
    lip = {INPUT: 1.0}
    for n in net.nodes:
        if isinstance(n.op, AddOp):
            lip[n.name] = sum(abs(s) * lip[a] for s, a in zip(n.op.signs, n.inputs, strict=True))
        elif isinstance(n.op, CatOp):
            lip[n.name] = math.sqrt(sum(lip[a] ** 2 for a in n.inputs))
        else:
            lip[n.name] = norms[n.name] * lip[n.inputs[0]]
    return lip


def lipschitz_to_sites(net: PWLNet, **kwargs) -> dict[str, float]:
    """For each site, an upper bound of the Lipschitz constant of x -> the site's pre-activation.

    Units: pre-activation per unit of input (Euclidean norms of the flattened tensors). Keyword
    arguments go to :func:`operator_norm` (``iters``, ``seed``, ``safety``). Adding noise to
    biases does not change these bounds.
    """
    lip = lipschitz_to_nodes(net, **kwargs)
    return {s.name: lip[net.node(s.name).inputs[0]] for s in net.sites}


def lipschitz_from_sites(net: PWLNet, **kwargs) -> dict[str, float]:
    """For each site, an upper bound of Lip(g_l), g_l: the site's pre-activation -> the output.

    g_l changes the site's pre-activation tensor and holds every value not computed from it
    fixed (in a residual network the skip paths that bypass the site are constants of g_l).
    The bound is computed backwards from the output: the sensitivity of a node is the sum, over
    the nodes that consume it, of their sensitivity times the operator norm of their linear part
    (``|sign|`` for an add, ``max(1, |slope|)`` for an activation). Summing over consumers is
    the triangle inequality over paths, so the bound is safe for any graph, and equals the
    product of operator norms ``||W_{L+1}|| ... ||W_{l+1}||`` (times the activations'
    ``max(1, |slope|)``) for a chain.
    """
    norms = node_norms(net, **kwargs)
    sens: dict[str, float] = {net.output: 1.0}
    for n in reversed(net.nodes):
        s = sens.get(n.name, 0.0)
        if s == 0.0:
            continue
        if isinstance(n.op, AddOp):
            for sign, a in zip(n.op.signs, n.inputs, strict=True):
                sens[a] = sens.get(a, 0.0) + s * abs(sign)
        elif isinstance(n.op, CatOp):  # each input's part of the output: a norm-1 map
            for a in n.inputs:
                sens[a] = sens.get(a, 0.0) + s
        else:
            a = n.inputs[0]
            sens[a] = sens.get(a, 0.0) + s * norms[n.name]
    return {site.name: sens.get(net.node(site.name).inputs[0], 0.0) for site in net.sites}


def neuron_gradient_bounds(net: PWLNet, **kwargs) -> dict[str, Tensor]:
    """For each site, an upper bound of ``||grad_x z||`` for every neuron z of its pre-activation.

    A tensor of the site's shape (float64). When the pre-activation is the output of a Linear
    (1-D) or a zero-padded convolution, neuron i gets ``||row_i|| * L_in``: the norm of its
    weight row (or of its output channel's kernel, which bounds every row of the unrolled
    convolution) times the Lipschitz bound of the op's input; otherwise every neuron gets the
    site's bound from :func:`lipschitz_to_sites`. The bounds hold with bias noise too.
    """
    lip = lipschitz_to_nodes(net, **kwargs)
    out: dict[str, Tensor] = {}
    for site in net.sites:
        src = net.node(site.name).inputs[0]
        bound = torch.full(site.shape, lip[src], dtype=torch.float64)
        if src != INPUT:
            node = net.node(src)
            rows = _row_norms(node.op, site.shape)
            if rows is not None:
                bound = torch.minimum(bound, rows * lip[node.inputs[0]])
        out[site.name] = bound
    return out


def _row_norms(op: Op, shape: tuple[int, ...]) -> Tensor | None:
    """Upper bounds of the row norms of ``op``'s matrix, shaped like its output, or None."""
    if isinstance(op, LinearOp) and len(shape) == 1:
        return op.weight.detach().cpu().to(torch.float64).norm(dim=1)
    if isinstance(op, ConvOp) and op.padding_mode == "zeros":
        w = op.weight.detach().cpu().to(torch.float64)
        per_channel = w.reshape(w.shape[0], -1).norm(dim=1)
        return per_channel.reshape((-1,) + (1,) * (len(shape) - 1)).expand(shape).clone()
    return None
