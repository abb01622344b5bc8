"""What the low-rank-bound experiments share: bias-free (optionally factorised) MLPs, training
with spectral-norm clipping, dense copies for the bounds, tidy bound rows, log-log slopes and
Kendall's tau."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from reluscope.bounds import BoundTable
from reluscope.data import Dataset
from reluscope.experiments.runner import RunContext
from reluscope.io import atomic_write
from reluscope.lowrank import LowRankLinear, clip_spectral_norms_, factorize
from reluscope.nets import mlp
from reluscope.train.batches import BatchSampler
from reluscope.train.losses import loss as batch_loss

SPEC = "spec low_rank_bounds.md"
#: The numbers of a bound kept in the tidy records (see BoundResult.to_record).
BOUND_METRICS = (
    "log10_bound",
    "log10_main",
    "log10_norm_product",
    "log10_rank_factor",
    "log10_rank_factor_substituted",
    "log10_main_substituted",
    "margin_risk",
)


def say(ctx: RunContext, text: str) -> None:
    """Print a progress line on the run's console, if it has one and progress is on."""
    if ctx.progress and ctx.console is not None:
        ctx.console.log(text)


def bias_free_mlp(widths: Sequence[int], rank: int | None, seed: int) -> nn.Module:
    """``Linear-ReLU-...-Linear`` without biases (the bounds' class has none) with PyTorch's
    default initialisation under ``seed``; with ``rank``, every layer is a LowRankLinear of
    rank min(rank, d_out, d_in) holding the truncated SVD of that initialisation."""
    model = mlp(list(widths), bias=False, seed=seed)
    if rank is None:
        return model
    ranks = {
        name: min(rank, m.out_features, m.in_features)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    }
    return factorize(model, ranks)


def dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LowRankLinear replaced by the ``nn.Linear`` holding its
    product U V and its bias: the same function, seen by the bounds as one layer of rank <= r
    (traced as it is, a LowRankLinear is two layers V and U with no activation between)."""
    model = copy.deepcopy(model)
    found = [(k, m) for k, m in model.named_modules() if isinstance(m, LowRankLinear)]
    for name, layer in found:
        linear = nn.Linear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device=layer.u.weight.device,
            dtype=layer.u.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(layer.weight)
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
        if not name:
            return linear
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, linear)
    return model


def train_clipped(
    model: nn.Module,
    train: Dataset,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    max_norm: float | None,
    seed: int,
    device: str = "cpu",
) -> nn.Module:
    """Train ``model`` with Adam (``lr``) on the mean cross-entropy of mini-batches of
    ``batch_size`` (the Trainer's seeded sampler) for ``steps`` steps. With ``max_norm`` = B,
    every layer's singular values are clipped at B after each step
    (:func:`reluscope.lowrank.clip_spectral_norms_`), so the trained network lies in the
    bound's class {||W_l||_2 <= B}. Runs inside ``fork_rng`` (the caller's random state is
    untouched); returns the model on the CPU in eval mode."""
    model = model.to(device)
    x, y = train.x.to(device), train.y.to(device)
    sampler = BatchSampler(len(train), batch_size, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for step in range(steps):
            index = sampler.indices(step).to(device)
            optimizer.zero_grad(set_to_none=True)
            batch_loss(model(x[index]), y[index], "ce").backward()
            optimizer.step()
            if max_norm is not None:
                clip_spectral_norms_(model, max_norm)
    return model.cpu().eval()


def trained(
    ctx: RunContext,
    name: str,
    build: Callable[[], nn.Module],
    fit: Callable[[nn.Module], nn.Module],
) -> nn.Module:
    """``fit(build())``, saved as ``NAME/model.pt`` in the run directory; when that file exists
    (an interrupted run being resumed) the saved weights are loaded into ``build()`` instead."""
    path = ctx.subdir(name) / "model.pt"
    model = build()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        return model.eval()
    model = fit(model)
    atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return model


def bound_rows(table: BoundTable, **tags: Any) -> list[dict[str, Any]]:
    """Tidy rows (``tags``, bound, metric, value) with the numbers ``BOUND_METRICS`` of every
    bound in ``table``."""
    rows = []
    for record in table.to_records():
        for metric in BOUND_METRICS:
            rows.append(dict(tags, bound=record["bound"], metric=metric, value=record[metric]))
    return rows


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of log y against log x (any base, the same for both)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of the pairs (x_i, y_i): (concordant - discordant pairs) /
    sqrt((pairs - pairs tied in x) (pairs - pairs tied in y)); NaN when x or y is constant
    or there are fewer than two pairs. O(n^2) memory and time."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length, got {x.shape} and {y.shape}")
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs = len(i)
    denominator = math.sqrt((pairs - np.sum(dx == 0)) * (pairs - np.sum(dy == 0)))
    return float(np.sum(dx * dy) / denominator) if denominator > 0 else math.nan
