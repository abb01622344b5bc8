"""Rank and norm control during training: a nuclear-norm penalty and spectral-norm clipping."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.lowrank.layers import LowRankLinear, resolve, weight_layers
from reluscope.validation import invalid


def nuclear_norm_penalty(model: nn.Module, layers: Iterable[str] | None = None) -> Tensor:
    """sum_l ||W_l||_* (sum of singular values) over the Linear layers (W = U V for a
    LowRankLinear), or over the module names in ``layers``: a 0-dim tensor, differentiable
    (the gradient of ||W||_* is P Q^T for the SVD P S Q^T, a subgradient where W is rank
    deficient). Add lambda times it to the loss for the nuclear-norm training mode."""
    found = weight_layers(model)
    names = list(found) if layers is None else _check_names(layers, found)
    return sum(torch.linalg.matrix_norm(found[k].weight, ord="nuc") for k in names)


def _check_names(layers: Iterable[str], found: Mapping[str, object]) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(layers)
    unknown = [k for k in names if k not in found]
    if unknown or not names:
        raise InputError(f"layers must name some of the Linear layers {list(found)}; got {names}")
    return names


def _norm_check(value: Any, layer: nn.Module, label: str) -> float:
    try:
        b = float(value)
    except (TypeError, ValueError):
        b = math.nan
    if isinstance(value, bool) or not math.isfinite(b) or b <= 0:
        raise invalid(f"max_norm for {label}", "a finite number > 0", value)
    return b


@torch.no_grad()
def clip_spectral_norms_(model: nn.Module, max_norm: float | dict[str, float]) -> dict[str, float]:
    """Clip the singular values of each Linear layer's weight (W = U V for a LowRankLinear) at
    ``max_norm`` (one bound B for all, or {module name: B} for some), in place, so that
    ||W||_2 <= B: W <- W - sum_{s_i > B} (s_i - B) p_i q_i^T. Singular values <= B and their
    vectors are left unchanged. A LowRankLinear changes only U
    (U <- U - sum_{s_i > B} (1 - B/s_i) p_i p_i^T U). Computed in float64.

    Returns each chosen layer's spectral norm before clipping (in the weight's units).
    """
    before = {}
    for name, (layer, bound) in resolve(model, max_norm, "max_norm", _norm_check).items():
        w = layer.weight.detach().to(torch.float64)
        p, s, qt = torch.linalg.svd(w, full_matrices=False)
        before[name] = float(s[0])
        over = s > bound
        if not over.any():
            continue
        p, s, qt = p[:, over], s[over], qt[over]
        if isinstance(layer, LowRankLinear):
            u = layer.u.weight
            u -= (p * (1 - bound / s) @ (p.T @ u.to(torch.float64))).to(u.dtype)
        else:
            layer.weight -= ((p * (s - bound)) @ qt).to(layer.weight.dtype)
    return before
