"""Odd and even parts of a network's function, and the exact decomposition of two-layer
bias-free (leaky) ReLU networks (spec 2.1 and 5(d)).

For any function f: f_odd(x) = (f(x) - f(-x))/2 and f_even(x) = (f(x) + f(-x))/2, so f = f_odd +
f_even. A two-layer bias-free network splits in closed form, from
s(z) = max(z, alpha z) = ((1+alpha)/2) z + ((1-alpha)/2) |z|:

    f(x) = ((1+alpha)/2) W_2 W_1 x  +  ((1-alpha)/2) W_2 |W_1 x|
           (linear, = f_odd)           (even, = f_even)

so its odd part is always linear. Deeper bias-free networks can have a nonlinear odd part.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reluscope.dynamics.checks import DTYPE, as_tensor
from reluscope.dynamics.models import bias_free_layers
from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet
from reluscope.records import Records, record, tagged


def _ratio(num: Tensor, den: Tensor) -> float:
    """||num|| / ||den|| (Frobenius), 0 when both are 0 and inf when only den is."""
    a, b = float(num.norm()), float(den.norm())
    if b == 0.0:
        return 0.0 if a == 0.0 else float("inf")
    return a / b


def _function(model: Any) -> tuple[Callable[[Tensor], Tensor], torch.device]:
    """A float64 copy of ``model`` (nn.Module, PWLNet or plain callable) and its device."""
    if isinstance(model, PWLNet):
        return model.to(dtype=DTYPE), model.device
    if isinstance(model, nn.Module):
        params = next(iter(model.parameters()), None)
        device = params.device if params is not None else torch.device("cpu")
        return copy.deepcopy(model).to(DTYPE), device
    if callable(model):
        return model, torch.device("cpu")
    raise InputError(f"model must be an nn.Module, a PWLNet or a callable; got {type(model)}")


def _evaluate(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """f(x) flattened to (points, outputs) as float64."""
    with torch.no_grad():
        out = torch.as_tensor(f(x))
    if out.ndim == 0 or len(out) != len(x):
        raise InputError(
            f"the model must map a batch of {len(x)} points to {len(x)} outputs; got output "
            f"shape {tuple(out.shape)}"
        )
    return out.reshape(len(x), -1).to(DTYPE)


@dataclass(frozen=True)
class OddEven(Records):
    """f and its parts at the points x, each (points, outputs) (outputs flattened), in output
    units, and the metrics: ``nonlinearity`` = ||f_odd - X B|| / ||f_odd|| with B the
    least-squares linear map (no intercept) from the flattened inputs X (0 when the odd part is
    linear, also when there are no more points than input features), ``even_ratio`` =
    ||f_even|| / ||f|| and ``even_to_odd`` = ||f_even|| / ||f_odd||; ``odd_linear_map`` is B^T
    (outputs, input features). Norms are Frobenius norms over points and outputs."""

    f: np.ndarray
    odd: np.ndarray
    even: np.ndarray
    nonlinearity: float
    even_ratio: float
    even_to_odd: float
    odd_linear_map: np.ndarray

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`; exact, layer None) of the three metrics,
        with ``tags``."""
        rows = [record(m, getattr(self, m)) for m in ("nonlinearity", "even_ratio", "even_to_odd")]
        return tagged(rows, {}, split, tags)


def odd_even(model: Any, x: Any) -> OddEven:
    """The odd and even parts of ``model``'s function at the points ``x`` (batch first, any
    shape the model takes), computed in float64 on a copy of the model."""
    f, device = _function(model)
    xt = as_tensor(x, "x", device)
    if xt.ndim < 2:
        raise InputError(f"x must be a batch of points (batch, ...); got shape {tuple(xt.shape)}")
    plus, minus = _evaluate(f, xt), _evaluate(f, -xt)
    odd, even = 0.5 * (plus - minus), 0.5 * (plus + minus)
    flat = xt.reshape(len(xt), -1)
    beta = torch.linalg.lstsq(flat.cpu(), odd.cpu(), driver="gelsd").solution.to(device)
    return OddEven(
        f=plus.cpu().numpy(),
        odd=odd.cpu().numpy(),
        even=even.cpu().numpy(),
        nonlinearity=_ratio(odd - flat @ beta, odd),
        even_ratio=_ratio(even, plus),
        even_to_odd=_ratio(even, odd),
        odd_linear_map=beta.T.cpu().numpy(),
    )


@dataclass(frozen=True)
class TwoLayerParts:
    """The exact split f = linear + even of a two-layer bias-free network at the points x:
    ``f``, ``linear`` = M x and ``even`` = ((1-alpha)/2) W_2 |W_1 x|, each (points, outputs);
    ``linear_map`` M = ((1+alpha)/2) W_2 W_1 (outputs, inputs); ``max_error`` =
    max |f - linear - even| (rounding only); ``alpha``."""

    f: np.ndarray
    linear: np.ndarray
    even: np.ndarray
    linear_map: np.ndarray
    max_error: float
    alpha: float


def two_layer_decomposition(model: nn.Module, x: Any) -> TwoLayerParts:
    """The exact linear-plus-even split of a two-layer bias-free (leaky) ReLU ``nn.Sequential``
    (Linear(bias=False), activation, Linear(bias=False)) at the points x (points, inputs)."""
    weights, alpha = bias_free_layers(model)
    if len(weights) != 2:
        raise InputError(
            f"expected a two-layer network (Linear, activation, Linear); got {len(weights)} "
            "linear layers (use odd_even for deeper networks)"
        )
    w1, w2 = weights
    xt = as_tensor(x, "x", w1.device)
    if xt.ndim != 2 or xt.shape[1] != w1.shape[1]:
        raise InputError(f"x must have shape (points, {w1.shape[1]}); got shape {tuple(xt.shape)}")
    f, _ = _function(model)
    out = _evaluate(f, xt)
    linear_map = 0.5 * (1 + alpha) * (w2 @ w1)
    linear = xt @ linear_map.T
    even = 0.5 * (1 - alpha) * (xt @ w1.T).abs() @ w2.T
    return TwoLayerParts(
        f=out.cpu().numpy(),
        linear=linear.cpu().numpy(),
        even=even.cpu().numpy(),
        linear_map=linear_map.cpu().numpy(),
        max_error=float((out - linear - even).abs().max()),
        alpha=alpha,
    )
