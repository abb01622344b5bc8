"""Exact input Jacobians of a PWLNet's sites and output, and the plumbing the measures share:
network preparation, site selection, per-point statistics and the streaming ``Meter`` base.

Jacobians are computed in forward mode: the identity tangent of the input (one tangent per input
coordinate) is pushed through the graph, multiplied by each activation's local gain (1 where the
pre-activation is > 0, else the negative slope; a pre-activation of exactly 0 counts as inactive).
One pass gives the Jacobians of every site's pre-activation and of the output. Inputs and
outputs are flattened: a Jacobian has shape (batch, n_out, input_dim), in output units per input
unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import iterate_batches, take_inputs
from reluscope.nets.pwl import INPUT, PWLNet, Site
from reluscope.nets.trace import as_pwlnet

#: The largest tangent tensor (in numbers) the default chunk size aims for.
TANGENT_BUDGET = 2**26


@dataclass(frozen=True)
class JacobianPass:
    """What one tangent pass gives for a batch of inputs.

    ``preactivations``: every site's pre-activation up to the last requested site (or all sites
    when the output was requested), flattened to (batch, site.size). ``site_jacobians``: the
    requested sites' Jacobians (batch, site.size, input_dim). ``output`` (batch, output_dim) and
    ``output_jacobian`` (batch, output_dim, input_dim) when requested, else None.
    """

    preactivations: dict[str, Tensor]
    site_jacobians: dict[str, Tensor]
    output: Tensor | None
    output_jacobian: Tensor | None


def prepare_net(
    model: nn.Module | PWLNet,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> PWLNet:
    """The PWLNet of ``model`` (traced unless it is one), cast to ``dtype`` when given.

    Device and dtype otherwise follow the model's parameters.
    """
    net = as_pwlnet(model, input_shape)
    if dtype is None:
        return net
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
    return net if dtype == net.dtype else net.to(dtype=dtype)


def select_sites(net: PWLNet, layers: Iterable[str] | str | None = None) -> list[Site]:
    """The sites named in ``layers``, in network order (all sites when None).

    Raises InputError for an unknown name (listing the sites) or a network without sites.
    """
    if not net.sites:
        raise InputError(
            "the network has no ReLU/LeakyReLU sites: expected at least one activation"
        )
    if layers is None:
        return list(net.sites)
    wanted = [layers] if isinstance(layers, str) else list(layers)
    names = [s.name for s in net.sites]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise InputError(f"unknown layer(s) {unknown}; the network's sites are {names}")
    if not wanted:
        raise InputError(f"layers is empty; expected some of the network's sites {names}")
    return [s for s in net.sites if s.name in wanted]


def default_chunk_size(net: PWLNet) -> int:
    """Points per tangent pass such that the largest tangent holds about TANGENT_BUDGET numbers
    (between 1 and 256 points)."""
    widest = max([math.prod(n.shape) for n in net.nodes] + [net.input_dim])
    return max(1, min(256, TANGENT_BUDGET // (widest * net.input_dim)))


def jacobian_pass(
    net: PWLNet, x: Tensor, sites: Iterable[str] = (), output: bool = False
) -> JacobianPass:
    """One forward-mode pass over the batch ``x`` (already checked, in the net's dtype/device):
    Jacobians of the pre-activations of ``sites`` and, with ``output``, of the output.

    The pass stops after the last site needed when the output is not requested.
    """
    wanted = set(sites)
    if output:
        stop = len(net.nodes) - 1
    else:
        stop = max((i for i, n in enumerate(net.nodes) if n.name in wanted), default=-1)
    b, d = x.shape[0], net.input_dim
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    values: dict[str, Tensor] = {INPUT: x}
    tangents: dict[str, Tensor] = {
        INPUT: eye.reshape((1, d) + net.input_shape).expand(b, -1, *net.input_shape)
    }
    pre: dict[str, Tensor] = {}
    jacs: dict[str, Tensor] = {}
    for i, n in enumerate(net.nodes[: stop + 1]):
        ins = [values[a] for a in n.inputs]
        values[n.name] = n.op.forward(*ins)
        if n.is_site:
            pre[n.name] = ins[0].reshape(b, -1)
            if n.name in wanted:
                jacs[n.name] = tangents[n.inputs[0]].reshape(b, d, -1).transpose(1, 2)
            tangents[n.name] = tangents[n.inputs[0]] * n.op.gain(ins[0]).unsqueeze(1)
        else:
            flat = [tangents[a].reshape((b * d,) + tangents[a].shape[2:]) for a in n.inputs]
            out = n.op.linear(*flat)
            tangents[n.name] = out.reshape((b, d) + tuple(out.shape[1:]))
        for a in n.inputs:
            if net._last_use[a] == i and a != net.output:
                values.pop(a, None)
                tangents.pop(a, None)
    if not output:
        return JacobianPass(pre, jacs, None, None)
    out_jac = tangents[net.output].reshape(b, d, -1).transpose(1, 2)
    return JacobianPass(pre, jacs, values[net.output].reshape(b, -1), out_jac)


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
    step = _check_chunk(chunk_size) or default_chunk_size(net)
    parts = [jacobian_pass(net, x[i : i + step], names) for i in range(0, len(x), step)]
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
    return net.local_affine(x, _check_chunk(chunk_size) or default_chunk_size(net))[0]


def _check_chunk(chunk_size: int | None, name: str = "chunk_size") -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"{name} must be a positive integer or None, got {chunk_size!r}")
    return chunk_size


def check_nonnegative(name: str, value: float, positive: bool = False) -> float:
    """``value`` as a finite float that is >= 0 (> 0 with ``positive``), or an InputError."""
    bound = "> 0" if positive else ">= 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


class PointValues:
    """Per-point values of named quantities, accumulated batch by batch: the mean over points
    and its standard error (sample standard deviation / sqrt(n); NaN for fewer than 2 points)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[Tensor]] = {}

    def add(self, name: str, values: Tensor) -> None:
        """Record the values (one per point) of quantity ``name``, kept in float64 on the CPU."""
        self._parts.setdefault(name, []).append(values.detach().to("cpu", torch.float64))

    def count(self, name: str) -> int:
        return sum(len(p) for p in self._parts.get(name, ()))

    def values(self, name: str) -> Tensor:
        return torch.cat(self._parts[name])

    def mean(self, name: str) -> float:
        return self.values(name).mean().item()

    def stderr(self, name: str) -> float:
        v = self.values(name)
        if len(v) < 2:
            return math.nan
        return (v.std() / math.sqrt(len(v))).item()

    def reset(self) -> None:
        self._parts.clear()


class Meter:
    """Base of the streaming measures (torchmetrics style): ``update(batch)`` for each batch,
    then ``compute()``; ``reset()`` starts over.

    The model is traced once, at construction (``input_shape`` is needed to trace a module whose
    first layer is not Linear), cast to ``dtype`` when given: the meter measures a snapshot of
    its weights. ``layers`` picks the sites (default all). ``batch`` is a tensor of inputs, a
    tuple/list (inputs first, or element ``input_key``) or a dict (key ``input_key``, default
    "x"/"input"/"inputs"/"image"/"images"). Points are processed ``batch_size`` at a time
    whatever the size of the batches given (default: :func:`default_chunk_size`). Subclasses and
    their functional forms take these keywords as ``**options``.
    """

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        layers: Iterable[str] | str | None = None,
        batch_size: int | None = None,
        input_shape: Sequence[int] | None = None,
        input_key: str | int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.net = prepare_net(model, input_shape, dtype)
        self.sites = select_sites(self.net, layers)
        self.batch_size = _check_chunk(batch_size, "batch_size") or default_chunk_size(self.net)
        self.input_key = input_key
        self.stats = PointValues()

    def update(self, batch) -> None:
        """Add the points of one batch."""
        x = take_inputs(batch, self.input_key)
        for chunk in iterate_batches(self.net, x, self.batch_size):
            self._accumulate(chunk)

    def update_from(self, data) -> Meter:
        """Add every point of ``data`` (a tensor, or an iterable of batches such as a
        DataLoader); returns the meter."""
        for x in iterate_batches(self.net, data, self.batch_size, self.input_key):
            for i in range(0, len(x), self.batch_size):
                self._accumulate(x[i : i + self.batch_size])
        return self

    def reset(self) -> None:
        """Forget every point added so far."""
        self.stats.reset()

    def _accumulate(self, x: Tensor) -> None:
        raise NotImplementedError

    def _require_points(self, name: str) -> int:
        n = self.stats.count(name)
        if n == 0:
            raise InputError(
                f"{type(self).__name__}.compute() before any data: call update(batch) first"
            )
        return n
