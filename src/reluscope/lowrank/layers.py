"""Factorised Linear layers W = U V of rank r, and the model surgery that makes them:
``factorize`` (Linear -> LowRankLinear from the truncated SVD) and ``truncate_svd`` (every
weight replaced by its best rank-r approximation)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.linalg import low_rank_approximation, truncated_svd
from reluscope.validation import check_int, invalid

Ranks = int | dict[str, int]


class LowRankLinear(nn.Module):
    """y = U (V x) + b: a Linear layer whose weight W = U V (U: out x r, V: r x in) has rank at
    most r. Two ``nn.Linear`` modules, ``v`` (no bias) then ``u`` (with ``bias``), so
    ``reluscope.trace`` sees two affine ops.

    Initialised as the best rank-r approximation of a default ``nn.Linear`` weight, split into
    balanced factors (U = P sqrt(S), V = sqrt(S) Q^T for the top-r SVD P S Q^T), with that
    layer's default bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        self.in_features = in_features
        self.out_features = out_features
        self.rank = check_rank(rank, out_features, in_features, "LowRankLinear")
        self.v = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.u = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        dense = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.u.bias is not None,
            device=self.u.weight.device,
            dtype=self.u.weight.dtype,
        )
        self.set_weight(dense.weight, dense.bias)

    @property
    def weight(self) -> Tensor:
        """The product U V (out x in), differentiable in both factors."""
        return self.u.weight @ self.v.weight

    @property
    def bias(self) -> Tensor | None:
        return self.u.bias

    def forward(self, x: Tensor) -> Tensor:
        return self.u(self.v(x))

    @torch.no_grad()
    def set_weight(
        self, weight: Tensor, bias: Tensor | None = None, rank: int | None = None
    ) -> None:
        """Set U V to the best rank-``rank`` (default: self.rank) approximation of ``weight``
        in balanced factors; columns of U and rows of V beyond ``rank`` are zero. ``bias`` is
        copied when given."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise InputError(
                f"weight of shape {tuple(weight.shape)} does not fit the layer: expected "
                f"({self.out_features}, {self.in_features})"
            )
        u, v = balanced_factors(weight, min(self.rank, rank or self.rank))
        self.u.weight.zero_()
        self.v.weight.zero_()
        self.u.weight[:, : u.shape[1]] = u
        self.v.weight[: v.shape[0]] = v
        if bias is not None:
            self.u.bias.copy_(bias)

    @classmethod
    def from_linear(cls, layer: nn.Linear | LowRankLinear, rank: int) -> LowRankLinear:
        """A LowRankLinear of ``rank`` holding the best rank-r approximation of ``layer``'s
        weight and its bias, on its device and in its dtype."""
        w = layer.weight.detach()
        new = cls(
            layer.in_features,
            layer.out_features,
            rank,
            bias=layer.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        new.set_weight(w, None if layer.bias is None else layer.bias.detach())
        return new

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.u.bias is not None}"
        )


def balanced_factors(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(P_r sqrt(S_r), sqrt(S_r) Q_r^T) for the top-``rank`` SVD P S Q^T of ``weight``,
    computed in float64 and returned in its dtype."""
    p, s, qt = truncated_svd(weight.detach().to(torch.float64), rank)
    root = s.sqrt()
    u = p * root
    v = root.unsqueeze(1) * qt
    return u.to(weight.dtype), v.to(weight.dtype)


def best_rank_approximation(weight: Tensor, rank: int) -> Tensor:
    """The best rank-``rank`` approximation of ``weight`` in Frobenius and spectral norm
    (Eckart-Young): its SVD truncated to the top ``rank`` singular values, in float64 then
    cast to its dtype."""
    return low_rank_approximation(weight.detach().to(torch.float64), rank).to(weight.dtype)


def weight_layers(model: nn.Module) -> dict[str, nn.Linear | LowRankLinear]:
    """The model's Linear and LowRankLinear layers by module name ('' for the model itself),
    leaving out the Linear factors inside a LowRankLinear."""
    out: dict[str, nn.Linear | LowRankLinear] = {}
    factored: list[str] = []  # names of the LowRankLinear layers seen (parents come first)
    for name, m in model.named_modules():
        if any(k == "" or name.startswith(f"{k}.") for k in factored):
            continue
        if isinstance(m, LowRankLinear):
            factored.append(name)
        if isinstance(m, (nn.Linear, LowRankLinear)):
            out[name] = m
    if not out:
        raise InputError(
            f"{type(model).__name__} has no nn.Linear or LowRankLinear layers; low-rank tools "
            "work on Linear layers only"
        )
    return out


def check_rank(rank, out_features: int, in_features: int, where: str) -> int:
    """``rank`` if it is an int in [1, min(out_features, in_features)], else an InputError."""
    top = min(out_features, in_features)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= top:
        raise invalid(
            f"rank for {where} ({out_features} x {in_features})", f"an integer in [1, {top}]", rank
        )
    return rank


Checked = TypeVar("Checked")


def resolve(
    model: nn.Module,
    spec: Any,
    kind: str,
    check: Callable[[Any, nn.Linear | LowRankLinear, str], Checked],
) -> dict[str, tuple[nn.Linear | LowRankLinear, Checked]]:
    """Per layer name, (layer, value) for ``spec``: one value for every weight layer, or a
    dict {layer name: value} naming some of them; ``check(value, layer, name)`` validates."""
    layers = weight_layers(model)
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in layers]
        if unknown:
            raise InputError(
                f"unknown layer(s) {unknown} in the {kind} dict; the Linear layers are "
                f"{list(layers)}"
            )
        chosen = {k: layers[k] for k in spec}
        return {k: (m, check(spec[k], m, _label(k))) for k, m in chosen.items()}
    return {k: (m, check(spec, m, _label(k))) for k, m in layers.items()}


def _label(name: str) -> str:
    return f"layer {name!r}" if name else "the model"


def _rank_check(rank: Any, layer: nn.Linear | LowRankLinear, label: str) -> int:
    return check_rank(rank, layer.out_features, layer.in_features, label)


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """``model`` with submodule ``name`` replaced by ``new`` (``new`` itself for name '')."""
    if not name:
        return new
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
    return model


def factorize(model: nn.Module, rank: Ranks) -> nn.Module:
    """A copy of ``model`` whose Linear layers (and LowRankLinear layers) are LowRankLinear of
    rank ``rank`` (one int for every layer, or {module name: rank} for some), initialised from
    the truncated SVD of their weights: the best rank-r approximation, in balanced factors.

    Ranks must lie in [1, min(out_features, in_features)] of their layer. The copy keeps the
    model's device, dtype and training mode; the input is left unchanged.
    """
    model = copy.deepcopy(model)
    for name, (layer, r) in resolve(model, rank, "rank", _rank_check).items():
        new = LowRankLinear.from_linear(layer, r).train(layer.training)
        model = _replace(model, name, new)
    return model


@torch.no_grad()
def truncate_svd(model: nn.Module, rank: Ranks) -> nn.Module:
    """A copy of ``model`` with the weight of each chosen layer replaced by its best rank-r
    approximation (truncated SVD; Eckart-Young), ``rank`` one int or {module name: rank}.

    Modules keep their type and shape: a Linear weight becomes the dense truncated matrix, a
    LowRankLinear gets balanced factors of the truncated product (zero beyond rank r). Biases
    are unchanged.
    """
    model = copy.deepcopy(model)
    for _, (layer, r) in resolve(model, rank, "rank", _rank_check).items():
        if isinstance(layer, LowRankLinear):
            layer.set_weight(layer.weight, rank=r)
        else:
            layer.weight.copy_(best_rank_approximation(layer.weight, r))
    return model
