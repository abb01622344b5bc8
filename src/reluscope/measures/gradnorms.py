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

from reluscope.errors import InputError
from reluscope.nets.ops import (
    AddOp,
    BatchNormOp,
    CatOp,
    ConvOp,
    LinearOp,
    Op,
    ReshapeOp,
    ScaleShiftOp,
)
from reluscope.nets.pwl import INPUT, Node, PWLNet
from reluscope.nets.sites import SiteOp

#: Largest number of tensor elements a chunk of rows or pairs may hold at one node.
CHUNK_ELEMENTS = 2**25

_SQRT_HALF_PI = math.sqrt(math.pi / 2)


def bias_noise(
    net: PWLNet, rows: int, sigma: float, generator: torch.Generator
) -> dict[str, Tensor]:
    """Noise ``eps ~ N(0, sigma^2)`` for every neuron of every noisy site, by site name.

    Activation sites are noisy (their neurons have biases); max units are not. Each tensor has
    shape ``(rows, *site.shape)``; they are drawn in site order on the CPU in the network's
    dtype from ``generator`` (so a CPU run is reproducible bit for bit) and moved to the
    network's device.
    """
    return {
        s.name: (sigma * torch.randn((rows,) + s.shape, generator=generator, dtype=net.dtype)).to(
            net.device
        )
        for s in net.sites
        if s.op.noisy
    }


@dataclass
class NoisyPass:
    """What one forward pass of the noisy network records, by site name.

    ``preacts``: the pre-activation zbar (own noise not added) of the requested sites;
    ``bias_free``: the linear part of the op producing it applied to its (noisy) inputs, when
    requested; ``states``: the local linear map's state (slopes, leading candidates) of the
    noisy pre-activations of every site up to the last requested one; ``noisy``: the noisy
    pre-activations of the requested sites; ``tangents``: with probes, the probe tangents at
    the requested sites' pre-activations, shape (rows, k, *site.shape).
    """

    preacts: dict[str, Tensor] = field(default_factory=dict)
    bias_free: dict[str, Tensor] = field(default_factory=dict)
    states: dict[str, Tensor] = field(default_factory=dict)
    noisy: dict[str, Tensor] = field(default_factory=dict)
    tangents: dict[str, Tensor] = field(default_factory=dict)


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
    the linear parts and the sites' local linear maps at the noisy pre-activations.
    """
    out = NoisyPass()
    src_of = {s: net.node(s).inputs[0] for s in sites}
    wanted_src = set(src_of.values())
    stop = 1 + max((net.index(s) for s in src_of), default=-1)
    if bias_free and INPUT in wanted_src:
        out.bias_free[INPUT] = x

    def step(n: Node, ins: list[tuple[Tensor, Tensor | None]]) -> tuple[Tensor, Tensor | None]:
        values = [v for v, _ in ins]
        tangent = None
        if isinstance(n.op, SiteOp):
            z, t = ins[0]
            noisy = z + noise[n.name] if n.name in noise else z
            state = n.op.local(noisy)
            out.states[n.name] = state
            value = n.op.forward(noisy)
            if n.name in src_of:
                out.preacts[n.name] = z
                out.noisy[n.name] = noisy
                if t is not None:
                    out.tangents[n.name] = t
            if t is not None:
                tangent = n.op.push(state, t)
            if bias_free and n.name in wanted_src:
                out.bias_free[n.name] = value
            return value, tangent
        if bias_free and n.name in wanted_src:
            out.bias_free[n.name] = n.op.linear(*values)
        if probes is not None:
            b, k = probes.shape[:2]
            flat = []
            for _, t in ins:
                assert t is not None  # with probes, every node's tangent is pushed forward
                flat.append(t.flatten(0, 1))
            t = n.op.linear(*flat)
            tangent = t.reshape((b, k) + tuple(t.shape[1:]))
        return n.op.forward(*values), tangent

    net.interpret({INPUT: (x, probes)}, step, stop=stop)
    if bias_free:
        out.bias_free = {s: out.bias_free[src] for s, src in src_of.items()}
    return out


def boundary_terms(
    net: PWLNet, site: str, rec: NoisyPass, centring: str = "full"
) -> tuple[Tensor, Tensor, Tensor]:
    """The boundary functions of ``site`` in the noisy network: values g (rows, n) and the
    indices p, q of the pre-activation entries whose gradients they are a difference of (see
    :mod:`reluscope.nets.sites`).

    ``centring="full"``: g from zbar (an activation's own noise integrated out, a max unit's
    leading candidate at the noisy values); ``"no_bias"``: from the bias-free values.
    """
    op = net.node(site).op
    if not isinstance(op, SiteOp):
        raise InputError(
            f"site must be the name of a site of the network; got {site!r} ({op.kind})"
        )
    z = rec.preacts[site] if centring == "full" else rec.bias_free[site]
    return op.boundaries(z, lead=rec.noisy[site])


def sketch_boundary_norms(tangent: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """``sqrt(pi/2) |t_p - t_q|`` per probe: (rows, k, n) single-probe estimates of the
    boundary functions' gradient norms, from the probe tangents (rows, k, *site.shape)."""
    rows, k = tangent.shape[:2]
    flat = tangent.reshape(rows, k, -1)
    pad = flat.new_zeros(rows, k, 1)
    flat = torch.cat([flat, pad], dim=2)
    q = torch.where(q < 0, flat.shape[2] - 1, q)  # no second term: read the zero column
    pi = p.unsqueeze(1).expand(-1, k, -1)
    qi = q.unsqueeze(1).expand(-1, k, -1)
    return _SQRT_HALF_PI * (flat.gather(2, pi) - flat.gather(2, qi)).abs()


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
        self._index = {n.name: net.index(n.name) for n in net.nodes}
        self._input_linear = {INPUT}  # nodes whose value is a linear map of the input alone
        for n in net.nodes:
            if not n.is_site and all(a in self._input_linear for a in n.inputs):
                self._input_linear.add(n.name)
        self._grams: dict[str, Tensor | None] = {}

    def __call__(
        self,
        site: str,
        states: dict[str, Tensor],
        rows: Tensor,
        neurons: Tensor,
        minus: Tensor | None = None,
    ) -> Tensor:
        """Norms for the pairs (rows[i], neurons[i]); ``neurons`` index the flattened site's
        pre-activation. With ``minus``, the norms of ``grad z[neurons] - grad z[minus]`` (an
        entry -1 of ``minus``: no second term), the gradients of a max unit's ties.

        Pairs are processed in chunks of at most ``CHUNK_ELEMENTS`` elements per node.
        """
        net = self.net
        src = net.node(site).inputs[0]
        if len(rows) == 0:
            return torch.ones(0, dtype=net.dtype, device=net.device)
        if src == INPUT and minus is None:
            return torch.ones(len(rows), dtype=net.dtype, device=net.device)
        if minus is not None and bool((minus < 0).all()):
            minus = None
        end = self._index[src] if src != INPUT else -1
        widest = max([net.input_dim] + [math.prod(n.shape) for n in net.nodes[: end + 1]])
        step = max(1, CHUNK_ELEMENTS // widest)
        parts = [
            self._sweep(
                src,
                end,
                states,
                rows[i : i + step],
                neurons[i : i + step],
                None if minus is None else minus[i : i + step],
            )
            for i in range(0, len(rows), step)
        ]
        return torch.cat(parts)

    def _sweep(
        self,
        src: str,
        end: int,
        states: dict[str, Tensor],
        rows: Tensor,
        neurons: Tensor,
        minus: Tensor | None,
    ) -> Tensor:
        """Norms of the input gradients of (one-hot - one-hot) cotangents at ``src``."""
        net = self.net
        p = len(rows)
        shape = net.shape_of(src)
        gram = self._gram(src)
        if gram is not None and minus is None:  # a one-hot's squared norm is a diagonal entry
            return gram.diagonal()[neurons].sqrt().to(net.dtype)
        cot: dict[str, Tensor] = {}
        node = net.nodes[end] if end >= 0 else None
        if node is not None and minus is None and isinstance(node.op, LinearOp) and len(shape) == 1:
            # the cotangent of a one-hot through a Linear is a row of its weight
            cot[node.inputs[0]] = node.op.weight[neurons]
            end -= 1
        else:
            onehot = torch.zeros(p, math.prod(shape) + 1, dtype=net.dtype, device=net.device)
            arange = torch.arange(p, device=net.device)
            onehot[arange, neurons] = 1.0
            if minus is not None:
                onehot[arange, minus] -= 1.0  # index -1 lands in the extra column
            cot[src] = onehot[:, :-1].reshape((p,) + shape)
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
            if isinstance(n.op, SiteOp):
                state = states[n.name][rows]
                _accumulate(cot, n.inputs[0], n.op.pull(state, c, net.shape_of(n.inputs[0])))
            elif isinstance(n.op, CatOp):
                sizes = [net.shape_of(a)[n.op.dim - 1] for a in n.inputs]
                for a, part in zip(n.inputs, n.op.split(c, sizes), strict=True):
                    _accumulate(cot, a, part)
            elif isinstance(n.op, AddOp):
                for sign, a in zip(n.op.signs, n.inputs, strict=True):
                    _accumulate(cot, a, c if sign == 1 else sign * c)
            else:
                shape = net.input_shape if n.inputs[0] == INPUT else net.node(n.inputs[0]).shape
                _accumulate(cot, n.inputs[0], _adjoint(n.op, c, shape))
        if INPUT not in cot:
            return torch.zeros(p, dtype=net.dtype, device=net.device)
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
