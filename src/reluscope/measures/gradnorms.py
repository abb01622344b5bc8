"""Input-gradient norms of neurons in a PWLNet with noise on every pre-activation.

The noisy network adds ``noise[site]`` to the pre-activation of every site before its
activation (equivalent to noise on the biases of the op that feeds it). For a neuron z of a site,
``grad_x z`` is the gradient of its pre-activation in that noisy network: it follows the
activation pattern of the noisy pre-activations of the earlier sites.

Two ways to get ``||grad_x z||`` (Euclidean norm, units of pre-activation per unit of input):
- exact, for chosen (row, neuron) pairs: one reverse sweep per site through the linear parts of
  the ops and the stored activation gains, starting from a one-hot at each neuron;
- sketched, for every neuron at once: ``sqrt(pi/2) * mean_k |grad_x z . v_k|`` over k Gaussian
  probes ``v_k ~ N(0, I)``, pushed forward as tangents (``E|g . v| = ||g|| sqrt(2/pi)``), an
  unbiased estimate with relative standard deviation ``sqrt((pi/2 - 1) / k)``.

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import grad as nn_grad

from reluscope.nets.ops import (
    ActivationOp,
    AddOp,
    BatchNormOp,
    ConvOp,
    LinearOp,
    Op,
    ReshapeOp,
    ScaleShiftOp,
)
from reluscope.nets.pwl import INPUT, PWLNet

#: Largest number of tensor elements a chunk of rows or pairs may hold at one node.
CHUNK_ELEMENTS = 2**25

_SQRT_HALF_PI = math.sqrt(math.pi / 2)


def bias_noise(
    net: PWLNet, rows: int, sigma: float, generator: torch.Generator
) -> dict[str, Tensor]:
    """Noise ``eps ~ N(0, sigma^2)`` for every neuron of every site, by site name.

    Each tensor has shape ``(rows, *site.shape)``; they are drawn in site order on the CPU in the
    network's dtype from ``generator`` (so a CPU run is reproducible bit for bit) and moved to
    the network's device.
    """
    return {
        s.name: (sigma * torch.randn((rows,) + s.shape, generator=generator, dtype=net.dtype)).to(
            net.device
        )
        for s in net.sites
    }


@dataclass
class NoisyPass:
    """What one forward pass of the noisy network records, by site name.

    ``preacts``: the pre-activation zbar (own noise not added) of the requested sites;
    ``bias_free``: the linear part of the op producing it applied to its (noisy) inputs, when
    requested; ``active``: the noisy activation pattern (zbar + eps > 0) of every site up to the
    last requested one; ``probe_norms``: with probes, ``sqrt(pi/2) |grad_x z . v_k|`` for every
    requested neuron and probe, shape (rows, k, *site.shape): each an unbiased estimate of
    ``||grad_x z||``, their mean over k the sketch.
    """

    preacts: dict[str, Tensor] = field(default_factory=dict)
    bias_free: dict[str, Tensor] = field(default_factory=dict)
    active: dict[str, Tensor] = field(default_factory=dict)
    probe_norms: dict[str, Tensor] = field(default_factory=dict)


def noisy_pass(
    net: PWLNet,
    x: Tensor,
    noise: dict[str, Tensor],
    sites: Collection[str],
    *,
    bias_free: bool = False,
    probes: Tensor | None = None,
) -> NoisyPass:
    """Run the noisy network on ``x`` (validated inputs) up to the last of ``sites``.

    ``probes`` (rows, k, *input_shape), when given, are input tangents pushed forward through
    the linear parts and the noisy activation gains; each requested neuron then gets k
    single-probe estimates ``sqrt(pi/2) |tangent_k|`` of its gradient norm.
    """
    out = NoisyPass()
    src_of = {s: net.node(s).inputs[0] for s in sites}
    wanted_src = set(src_of.values())
    stop = max((i for i, n in enumerate(net.nodes) if n.name in src_of), default=-1)
    values: dict[str, Tensor] = {INPUT: x}
    tangents: dict[str, Tensor] = {} if probes is None else {INPUT: probes}
    if bias_free and INPUT in wanted_src:
        out.bias_free[INPUT] = x
    for i, n in enumerate(net.nodes[: stop + 1]):
        ins = [values[a] for a in n.inputs]
        if isinstance(n.op, ActivationOp):
            z = ins[0]
            noisy = z + noise[n.name]
            out.active[n.name] = noisy > 0
            values[n.name] = n.op.forward(noisy)
            if n.name in src_of:
                out.preacts[n.name] = z
            if probes is not None:
                t = tangents[n.inputs[0]]
                if n.name in src_of:
                    out.probe_norms[n.name] = _SQRT_HALF_PI * t.abs()
                tangents[n.name] = t * n.op.gain(noisy).unsqueeze(1)
        else:
            values[n.name] = n.op.forward(*ins)
            if bias_free and n.name in wanted_src:
                out.bias_free[n.name] = n.op.linear(*ins)
            if probes is not None:
                k = probes.shape[1]
                flat = [tangents[a].flatten(0, 1) for a in n.inputs]
                t = n.op.linear(*flat)
                tangents[n.name] = t.reshape((-1, k) + tuple(t.shape[1:]))
        if bias_free and n.is_site and n.name in wanted_src:
            out.bias_free[n.name] = values[n.name]
        for a in n.inputs:
            if net._last_use[a] == i:
                values.pop(a, None)
                tangents.pop(a, None)
    if bias_free:
        out.bias_free = {s: out.bias_free[src] for s, src in src_of.items()}
    return out


def sketch_probes(net: PWLNet, rows: int, k: int, generator: torch.Generator) -> Tensor:
    """Gaussian input tangents ``(rows, k, *input_shape)`` drawn on the CPU, on the net's device."""
    shape = (rows, k) + net.input_shape
    return torch.randn(shape, generator=generator, dtype=net.dtype).to(net.device)


class ExactGradientNorms:
    """Exact ``||grad_x z||`` for chosen (row, neuron) pairs of the sites of ``net``.

    One reverse sweep per site: one-hot cotangents at the neurons' pre-activation go back
    through the transposed linear parts of the ops and the rows' stored activation gains
    (:attr:`NoisyPass.active`). When a sweep's whole cotangent ``c`` sits at one node t whose
    value is a fixed linear map ``M_t`` of the input (no site upstream) with fewer entries than
    the input, it ends with ``||c M_t||^2 = c G_t c^T``, ``G_t = M_t M_t^T`` computed once in
    float64: for an MLP this replaces the product with the first weight matrix (n_1 x n_0) by
    one with ``W_1 W_1^T`` (n_1 x n_1).
    """

    def __init__(self, net: PWLNet) -> None:
        self.net = net
        self._index = {n.name: i for i, n in enumerate(net.nodes)}
        self._input_linear = {INPUT}  # nodes whose value is a linear map of the input alone
        for n in net.nodes:
            if not n.is_site and all(a in self._input_linear for a in n.inputs):
                self._input_linear.add(n.name)
        self._grams: dict[str, Tensor | None] = {}

    def __call__(
        self, site: str, active: dict[str, Tensor], rows: Tensor, neurons: Tensor
    ) -> Tensor:
        """Norms for the pairs (rows[p], neurons[p]); ``neurons`` index the flattened site.

        Pairs are processed in chunks of at most ``CHUNK_ELEMENTS`` elements per node.
        """
        net = self.net
        src = net.node(site).inputs[0]
        if src == INPUT or len(rows) == 0:
            return torch.ones(len(rows), dtype=net.dtype, device=net.device)
        end = self._index[src]
        widest = max([net.input_dim] + [math.prod(n.shape) for n in net.nodes[: end + 1]])
        step = max(1, CHUNK_ELEMENTS // widest)
        parts = [
            self._sweep(end, active, rows[i : i + step], neurons[i : i + step])
            for i in range(0, len(rows), step)
        ]
        return torch.cat(parts)

    def _sweep(self, end: int, active: dict[str, Tensor], rows: Tensor, neurons: Tensor) -> Tensor:
        """Norms of the input gradients of one-hot cotangents at node ``end``'s output."""
        net = self.net
        node = net.nodes[end]
        p = len(rows)
        gram = self._gram(node.name)
        if gram is not None:  # a one-hot's squared norm is a diagonal entry
            return gram.diagonal()[neurons].sqrt().to(net.dtype)
        cot: dict[str, Tensor] = {}
        if isinstance(node.op, LinearOp) and len(node.shape) == 1:
            # the cotangent of a one-hot through a Linear is a row of its weight
            cot[node.inputs[0]] = node.op.weight[neurons]
            end -= 1
        else:
            onehot = torch.zeros(p, math.prod(node.shape), dtype=net.dtype, device=net.device)
            onehot[torch.arange(p, device=net.device), neurons] = 1.0
            cot[node.name] = onehot.reshape((p,) + node.shape)
        for n in reversed(net.nodes[: end + 1]):
            if len(cot) == 1:
                ((name, last),) = cot.items()
                gram = self._gram(name)
                if gram is not None:
                    flat = last.reshape(p, -1).to(torch.float64)
                    squares = ((flat @ gram) * flat).sum(dim=1).clamp(min=0)
                    return squares.sqrt().to(net.dtype)
            c = cot.pop(n.name, None)
            if c is None:
                continue
            if isinstance(n.op, ActivationOp):
                _accumulate(cot, n.inputs[0], c * _gain(n.op, active[n.name][rows], c.dtype))
            elif isinstance(n.op, AddOp):
                for sign, a in zip(n.op.signs, n.inputs, strict=True):
                    _accumulate(cot, a, c if sign == 1 else sign * c)
            else:
                shape = net.input_shape if n.inputs[0] == INPUT else net.node(n.inputs[0]).shape
                _accumulate(cot, n.inputs[0], _adjoint(n.op, c, shape))
        return cot[INPUT].reshape(p, -1).norm(dim=1)

    def _gram(self, name: str) -> Tensor | None:
        """``G_t = M_t M_t^T`` (float64) for a node t = ``name`` that qualifies, else None."""
        if name not in self._grams:
            self._grams[name] = self._compute_gram(name)
        return self._grams[name]

    def _compute_gram(self, name: str) -> Tensor | None:
        net = self.net
        if name == INPUT or name not in self._input_linear:
            return None
        nodes = [n for n in net.nodes[: self._index[name] + 1] if n.name in self._input_linear]
        widest = max(math.prod(n.shape) for n in nodes)
        size = math.prod(net.node(name).shape)
        if size >= net.input_dim or widest * net.input_dim > 4 * CHUNK_ELEMENTS:
            return None
        eye = torch.eye(net.input_dim, dtype=net.dtype, device=net.device)
        values = {INPUT: eye.reshape((net.input_dim,) + net.input_shape)}
        for n in nodes:
            values[n.name] = n.op.linear(*(values[a] for a in n.inputs))
        transposed = values[name].reshape(net.input_dim, -1).to(torch.float64)  # M_t^T
        return transposed.T @ transposed


def _accumulate(cot: dict[str, Tensor], name: str, value: Tensor) -> None:
    cot[name] = value if name not in cot else cot[name] + value


def _gain(op: ActivationOp, active: Tensor, dtype: torch.dtype) -> Tensor:
    if op.slope == 0:
        return active.to(dtype)
    one = torch.ones((), dtype=dtype, device=active.device)
    return torch.where(active, one, one * op.slope)


def _adjoint(op: Op, cot: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """The transpose of ``op.linear`` applied to the cotangents ``cot`` (batch first)."""
    if isinstance(op, LinearOp):
        return cot @ op.weight
    if isinstance(op, (ScaleShiftOp, BatchNormOp)):
        return op.linear(cot)  # a diagonal scaling is its own transpose
    if isinstance(op, ReshapeOp):
        return cot.reshape((len(cot),) + in_shape)
    size = (len(cot),) + in_shape
    if isinstance(op, ConvOp) and op.padding_mode == "zeros" and not isinstance(op.padding, str):
        conv_input = nn_grad.conv1d_input if op.weight.dim() == 3 else nn_grad.conv2d_input
        return conv_input(size, op.weight, cot, op.stride, op.padding, op.dilation, op.groups)
    zero = torch.zeros(size, dtype=cot.dtype, device=cot.device)
    return torch.func.vjp(op.linear, zero)[1](cot)[0]
