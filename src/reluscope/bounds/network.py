"""A ReLU MLP as the bounds see it: a chain of weight matrices with 1-Lipschitz activations.

The norm-based bounds cover networks x -> W_L phi(W_{L-1} ... phi(W_1 x)) with phi(t) = t for
t > 0 and a t otherwise, |a| <= 1 (ReLU, leaky ReLU), and **no biases**. Linear layers with no
activation between them (a factorised ``LowRankLinear``'s V then U) count as one layer, their
product.

**Biases** are absorbed exactly (``biases='absorb'``): with x' = (x, 1), hidden layers
W'_l = [[W_l, b_l], [0, 1]] (the extra unit stays 1, since phi(1) = 1) and last layer
W'_L = [W_L, b_L], the bias-free network W' computes the same function of x'. Every bound is
then the bound of W' on x': widths d_l + 1 for l < L, input norms sqrt(||x||^2 + 1), and norms
and ranks of the augmented matrices (||W'_l||_2 >= 1; rank at most one more). A network whose
biases are all zero (or absent) is used as it is. ``biases='error'`` refuses non-zero biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from reluscope.bounds.margins import check_labels
from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.linalg import low_rank_approximation
from reluscope.nets.checks import check_net
from reluscope.nets.ops import LinearOp, ReshapeOp
from reluscope.nets.pwl import INPUT, PWLNet
from reluscope.nets.sites import ActivationOp
from reluscope.nets.trace import trace
from reluscope.records import OUTPUT_LAYER
from reluscope.validation import check_choice

SUPPORTED = (
    "Linear layers (consecutive ones without an activation count as one, their product) "
    "separated by ReLU / LeakyReLU (|slope| <= 1), Flatten, and no activation after the last "
    "Linear"
)
BIASES = ("absorb", "error")


@dataclass(frozen=True)
class MLP:
    """Weight matrices ``weights`` (float64, W_1 first, each (d_l, d_{l-1})), the negative
    slope of the activation after each layer but the last (``slopes``; 1.0 = no activation),
    the layers' module ``paths``, whether biases were absorbed (module doc; then the matrices
    are the augmented ones and inputs get a trailing 1), the machine ``eps`` of the model's
    own weights, which sets the tolerance of their exact ranks, and the layers' names in records
    (``layers``: the site each layer feeds, "output" for the last; see
    :mod:`reluscope.records`)."""

    weights: tuple[Tensor, ...]
    slopes: tuple[float, ...]
    paths: tuple[str, ...]
    biases_absorbed: bool = False
    eps: float = torch.finfo(torch.float64).eps
    layers: tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """(d_0, ..., d_L) of the matrices (augmented when biases are absorbed)."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def input_dim(self) -> int:
        """The dimension of the original inputs."""
        return self.widths[0] - int(self.biases_absorbed)

    def inputs(self, x: Tensor) -> Tensor:
        """The points ``x`` (n, *shape) as the matrices' inputs: flattened, float64, with a
        trailing 1 when biases are absorbed."""
        x = torch.as_tensor(x).reshape(len(x), -1).to(self.weights[0])
        if x.shape[1] != self.input_dim:
            raise InputError(
                f"data points have {x.shape[1]} features, but the network takes {self.input_dim}"
            )
        if not torch.isfinite(x).all():
            raise InputError("data contain NaN or inf; expected finite values")
        if self.biases_absorbed:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
        return x

    def __call__(self, x: Tensor) -> Tensor:
        """The network's outputs (n, d_L) on points ``x`` (see :meth:`inputs`)."""
        h = self.inputs(x)
        for w, slope in zip(self.weights, self.slopes + (1.0,), strict=True):
            h = h @ w.T
            if slope != 1.0:
                h = torch.where(h > 0, h, slope * h)
        return h

    def truncated(self, ranks: Sequence[int]) -> MLP:
        """The network with each W_l replaced by its best rank-r_l approximation (SVD)."""
        if len(ranks) != self.depth:
            raise InputError(f"ranks must have {self.depth} entries, got {len(ranks)}")
        weights = []
        for w, r in zip(self.weights, ranks, strict=True):
            weights.append(low_rank_approximation(w, r))
        return replace(self, weights=tuple(weights))


def _unsupported(path: str, kind: str, detail: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(path, kind, SUPPORTED, detail)


def _layers(net: PWLNet) -> tuple[list[LinearOp], list[float], list[str], list[str]]:
    """The Linear ops of ``net`` in order, the slope after each but the last, their paths and
    their names in records (the site each feeds, "output" for the last)."""
    linears: list[LinearOp] = []
    slopes: list[float] = []
    paths: list[str] = []
    sites: list[str] = []
    pending: float | None = None  # the activation seen since the last Linear
    previous = INPUT
    for node in net.nodes:
        where = node.path or node.name
        if node.inputs != (previous,):
            raise _unsupported(where, node.op.kind, "the bounds need a plain chain of layers")
        if isinstance(node.op, ReshapeOp):
            if len(node.shape) != 1:
                raise _unsupported(where, "reshape", "only flattening to vectors is supported")
        elif isinstance(node.op, LinearOp):
            if len(node.shape) != 1:
                raise _unsupported(where, "linear", "Linear layers must act on flat vectors")
            if linears and pending is None:
                linears[-1] = _compose(linears[-1], node.op)
                paths[-1] = _joined(paths[-1], where)
                previous = node.name
                continue
            if linears and pending is not None:
                slopes.append(pending)
            elif pending is not None:
                raise _unsupported(where, "relu", "an activation before the first Linear layer")
            linears.append(node.op)
            paths.append(where)
            pending = None
        elif isinstance(node.op, ActivationOp):
            if pending is not None:
                raise _unsupported(where, node.op.kind, "two activations in a row")
            if not node.op.is_leaky:
                raise _unsupported(where, node.op.kind, "the bounds need ReLU or LeakyReLU")
            if abs(node.op.slope) > 1:
                raise _unsupported(
                    where, node.op.kind, "the bounds need a 1-Lipschitz activation (|slope| <= 1)"
                )
            pending = node.op.slope
            sites.append(node.name)
        else:
            detail = "the norm-based bounds cover MLPs (fully connected ReLU networks)"
            raise _unsupported(where, node.op.kind, detail)
        previous = node.name
    if not linears:
        raise InputError("the network has no Linear layer")
    if pending is not None:
        raise _unsupported(net.output, "relu", "an activation after the last Linear layer")
    if net.output != previous:
        raise _unsupported(net.output, "output", "the output must be the last layer")
    return linears, slopes, paths, sites + [OUTPUT_LAYER]


def _compose(first: LinearOp, second: LinearOp) -> LinearOp:
    """The Linear op x -> second(first(x))."""
    weight = second.weight @ first.weight
    bias = second.bias
    if first.bias is not None:
        carried = second.weight @ first.bias
        bias = carried if bias is None else carried + bias
    return LinearOp(weight, bias)


def _joined(first: str, second: str) -> str:
    """One name for two consecutive layers: their common parent ("block.v" + "block.u" ->
    "block"), else both joined by '+'."""
    parent = first.rpartition(".")[0]
    return parent if parent and parent == second.rpartition(".")[0] else f"{first}+{second}"


def _augmented(ops: list[LinearOp]) -> list[Tensor]:
    weights = []
    for i, op in enumerate(ops):
        w = op.weight.detach().double()
        b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        if op.bias is not None:
            b = op.bias.detach().double()
        top = torch.cat([w, b[:, None]], dim=1)
        if i < len(ops) - 1:
            unit = torch.zeros(1, top.shape[1], dtype=w.dtype, device=w.device)
            unit[0, -1] = 1.0
            top = torch.cat([top, unit])
        weights.append(top)
    return weights


def mlp_weights(
    model: nn.Module | PWLNet,
    input_shape: Sequence[int],
    *,
    biases: str = "absorb",
    force_absorb: bool = False,
) -> MLP:
    """The :class:`MLP` of ``model`` (traced for inputs of ``input_shape``).

    Raises UnsupportedLayerError for anything but Linear layers, ReLU / LeakyReLU with
    |slope| <= 1 and flattening; ``biases`` says what to do with non-zero biases ('absorb' or
    'error', module doc); ``force_absorb`` augments even without biases (for a reference
    network that must match an absorbed one).
    """
    check_choice("biases", biases, BIASES)
    net = model if isinstance(model, PWLNet) else trace(model, tuple(input_shape))
    ops, slopes, paths, layers = _layers(check_net(net))
    biased = [p for op, p in zip(ops, paths, strict=True) if op.bias is not None and op.bias.any()]
    if biased and biases == "error":
        raise InputError(
            f"layer(s) {biased} have non-zero biases, but the bound's class is bias-free: use "
            "biases='absorb' (exact, via a constant input coordinate) or a bias-free model"
        )
    eps = max(torch.finfo(op.weight.dtype).eps for op in ops)
    if biased or force_absorb:
        return MLP(tuple(_augmented(ops)), tuple(slopes), tuple(paths), True, eps, tuple(layers))
    weights = tuple(op.weight.detach().double() for op in ops)
    return MLP(weights, tuple(slopes), tuple(paths), False, eps, tuple(layers))


def mlp_on_data(
    model: nn.Module | PWLNet, data: Tensor, labels: Tensor, *, biases: str = "absorb"
) -> tuple[MLP, Tensor, Tensor, Tensor]:
    """(net, x, outputs, y): the :class:`MLP` of ``model`` (:func:`mlp_weights` with
    ``biases``) for points of ``data``'s shape, ``data`` (n >= 2, *input_shape) as a tensor,
    the network's outputs (n, d_L) on it, and ``labels`` checked (int64 class indices, on the
    outputs' device)."""
    x = torch.as_tensor(data)
    if x.dim() < 2 or len(x) < 2:
        raise InputError(f"data must have shape (n >= 2, *input_shape), got {tuple(x.shape)}")
    net = mlp_weights(model, tuple(x.shape[1:]), biases=biases)
    outputs = net(x)
    y = check_labels(labels, len(x), outputs.shape[1]).to(outputs.device)
    return net, x, outputs, y
