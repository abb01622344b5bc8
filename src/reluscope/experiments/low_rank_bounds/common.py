"""What the low-rank-bound experiments share: bias-free (optionally factorised) MLPs, trained
with their spectral norms clipped, the bounds of the trained networks as tidy rows, curves read back
from the records, log-log slopes and Kendall's tau.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from pydantic import Field
from scipy import stats
from torch import nn

from reluscope.bounds import BoundResult, BoundTable, NetworkNorms, compare
from reluscope.data import Dataset
from reluscope.experiments.config import ExperimentConfig, training
from reluscope.experiments.local_complexity.common import load_splits
from reluscope.experiments.runner import RunContext
from reluscope.io import atomic_write
from reluscope.lowrank import factorize
from reluscope.nets import mlp
from reluscope.records import record
from reluscope.train import SpectralClip, TrainConfig, Trainer

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
#: The numbers of every weight layer kept in the tidy records (see BoundTable.layer_records).
LAYER_METRICS = ("spectral_norm", "rank", "stable_rank")


class TrainedSweepConfig(ExperimentConfig):
    """The fields of a sweep of trained bias-free MLPs with clipped spectral norms: data, the
    training, and the bounds' margin, confidence and chaining constants."""

    data: str = Field("digits", description="data spec; mnist/cifar10 are read from data_dir")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10, description="training points (the bounds' sample)")
    n_test: int = Field(500, ge=10, description="test points")
    max_norm: float = Field(2.0, gt=0, description="B: every ||W_l||_2 is clipped at B")
    train: TrainConfig = Field(
        TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, steps=1500, loss="ce"),
        description="Adam training of every network (clipped by max_norm every clip_every steps); seed and device are the experiment's",
    )
    clip_every: int = Field(10, ge=1, description="steps between spectral-norm clippings")
    margin: float = Field(1.0, gt=0, description="gamma of the margin bounds (output units)")
    delta: float = Field(0.05, gt=0, lt=1, description="the bounds hold w.p. >= 1 - delta")
    C1: float = Field(1.0, gt=0, description="Maurer's chaining constant C1 (unverified)")
    C2: float = Field(1.0, ge=0, description="Maurer's chaining constant C2 (unverified)")


def splits(config: TrainedSweepConfig) -> tuple[Dataset, Dataset]:
    """The seeded training and test subsets of ``config.data`` (MNIST / CIFAR-10 from their
    own train and test files, normalised; see the local-complexity experiments)."""
    return load_splits(config.data, config.n_train, config.n_test, config.data_dir, config.seed)


def accuracy(model: nn.Module, data: Dataset) -> float:
    """The fraction of ``data``'s points that ``model`` classifies correctly."""
    with torch.no_grad():
        return float((model(data.x).argmax(dim=1) == data.y).double().mean())


def bias_free_mlp(
    widths: Sequence[int], rank: int | None, seed: int, output_rank: int | None = None
) -> nn.Module:
    """``Linear-ReLU-...-Linear`` without biases (the bounds' class has none) with PyTorch's
    default initialisation under ``seed``; with ``rank``, every layer is a LowRankLinear of
    rank min(rank, d_out, d_in) holding the truncated SVD of that initialisation (the output
    layer at least ``output_rank`` when given, e.g. the number of classes)."""
    model = mlp(list(widths), bias=False, seed=seed)
    if rank is None:
        return model
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    ranks = {
        name: min(
            max(rank, output_rank or 0) if i == len(linears) - 1 else rank,
            m.out_features,
            m.in_features,
        )
        for i, (name, m) in enumerate(linears)
    }
    return factorize(model, ranks)


def trained_mlp(
    ctx: RunContext,
    config: TrainedSweepConfig,
    name: str,
    widths: Sequence[int],
    rank: int | None,
    train: Dataset,
) -> nn.Module:
    """``bias_free_mlp(widths, rank, config.seed)`` trained on ``train`` as ``config.train``
    says, with every layer's singular values clipped at ``config.max_norm`` every
    ``config.clip_every`` steps and after the last one (the :class:`SpectralClip` callback), so
    the trained network lies in the bound's class {||W_l||_2 <= B}; saved as ``NAME/model.pt``
    in the run directory, on the CPU in eval mode. When that file exists (an interrupted run
    being resumed) the saved weights are loaded instead."""
    path = ctx.subdir(name) / "model.pt"
    model = bias_free_mlp(widths, rank, config.seed)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        return model.eval()
    trainer = Trainer(
        model,
        train,
        None,
        training(config),
        callbacks=[SpectralClip(config.max_norm, config.clip_every)],
        progress=ctx.progress,
    )
    trainer.fit()
    model = trainer.model.cpu().eval()
    atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return model


def bound_records(results: Iterable[BoundResult], **tags: Any) -> list[dict[str, Any]]:
    """The records (:meth:`BoundResult.to_records`, column ``bound``) of the numbers
    ``BOUND_METRICS`` of every bound in ``results`` (e.g. ``BoundTable.results``), with
    ``tags``."""
    return [
        row
        for result in results
        for row in result.to_records(**tags)
        if row["metric"] in BOUND_METRICS
    ]


def trained_rows(
    config: TrainedSweepConfig, model: nn.Module, train: Dataset, test: Dataset, **tags: Any
) -> tuple[BoundTable, list[dict[str, Any]]]:
    """The bounds of the trained bias-free ``model`` on ``train`` (:func:`compare` at its
    norms and exact ranks, with ``config``'s margin, delta and constants) and tidy records,
    tagged part='trained' and ``tags``: every bound's numbers (:func:`bound_records`), the
    train and test accuracy, and per weight layer (``layer``: the site it feeds, or "output")
    its spectral norm, exact rank and stable rank (:meth:`BoundTable.layer_records`)."""
    table = compare(
        model,
        train.x,
        train.labels,
        margin=config.margin,
        delta=config.delta,
        C1=config.C1,
        C2=config.C2,
        biases="error",
    )
    tags = dict(part="trained", **tags)
    rows = bound_records(table.results, **tags)
    for metric, data in (("train_accuracy", train), ("test_accuracy", test)):
        rows.append(record(metric, accuracy(model, data), **tags))
    rows += [r for r in table.layer_records(**tags) if r["metric"] in LAYER_METRICS]
    return table, rows


def curve(
    records: pd.DataFrame, index: str, part: str, metric: str, bound: str | None = None
) -> pd.Series:
    """The values of one ``metric`` of ``part`` (of one ``bound`` when given; layer totals
    only, no per-layer rows) against the column ``index``, sorted by it."""
    rows = records[(records["part"] == part) & (records["metric"] == metric)]
    if "layer" in rows:
        rows = rows[rows["layer"].isna()]
    if bound is not None:
        rows = rows[rows["bound"] == bound]
    return rows.set_index(index)["value"].sort_index()


def worst_case_norms(widths: Sequence[int], norm: float, ranks: Sequence[int]) -> NetworkNorms:
    """The norms of layers of spectral norm ``norm`` = B and rank r_l at the worst case the
    rank substitution allows: ||W_l||_F = sqrt(r_l) B and ||W_l^T||_{2,1} = sqrt(d_l) ||W_l||_F
    (the prior bounds on them are their rank-substituted forms)."""
    frobenius = [math.sqrt(r) * norm for r in ranks]
    l21 = [math.sqrt(widths[i + 1]) * f for i, f in enumerate(frobenius)]
    return NetworkNorms(
        tuple(widths), (norm,) * len(ranks), tuple(frobenius), tuple(l21), tuple(ranks)
    )


def slope(x: ArrayLike, y: ArrayLike) -> float:
    """The least-squares slope of y against x (log-log slopes: pass logs of both)."""
    return float(stats.linregress(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).slope)


def r_squared(x: ArrayLike, y: ArrayLike) -> float:
    """R^2 of the least-squares line of y against x (1 when y is exactly linear in x; NaN when
    y is constant)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(ys) == 0:
        return math.nan
    return float(stats.linregress(xs, ys).rvalue ** 2)


def kendall_tau(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b of the pairs (x_i, y_i) (scipy.stats.kendalltau); NaN when x or y is
    constant or there are fewer than two pairs."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length, got {xs.shape} and {ys.shape}")
    if len(xs) < 2:
        return math.nan
    return float(stats.kendalltau(xs, ys).statistic)


def kendall_p(x: ArrayLike, y: ArrayLike) -> float:
    """One-sided p-value of Kendall's tau-b > 0 (scipy.stats.kendalltau, alternative
    "greater"): the chance that independent pairs with unrelated x and y order at least as
    concordantly; NaN where :func:`kendall_tau` is NaN."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if math.isnan(kendall_tau(xs, ys)):
        return math.nan
    return float(stats.kendalltau(xs, ys, alternative="greater").pvalue)
