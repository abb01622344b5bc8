"""Built-in probes: accuracy and loss, local complexity, neighbourhood complexity, local rank,
total variation, adversarial accuracy, weight norms, and weight snapshots.

Every factory returns a :class:`~reluscope.train.probe.Probe` run at the steps of ``schedule``
(None: the trainer's or runner's default schedule). Probes that take ``splits`` measure each
split ("train", "test", and for label-free measures "random": Gaussian points with the
training inputs' per-feature mean and std, see :func:`~reluscope.train.probe.random_points`)
on its first ``n_points`` points (None: all), and record the split with every row. They
analyse the model in ``dtype`` (default: the trainer's dtype). ``metric=`` renames a probe's
metric (e.g. one neighbourhood probe per radius).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reluscope import measures
from reluscope.errors import InputError
from reluscope.io import atomic_write
from reluscope.linalg import spectral_norm
from reluscope.losses import LOSSES, correct, point_losses
from reluscope.measures.results import MeasureResult
from reluscope.records import Records, record
from reluscope.train.probe import SPLITS, Probe, ProbeContext
from reluscope.train.schedule import Schedule
from reluscope.validation import (
    check_choice,
    check_float_dtype,
    check_int,
    check_names,
    check_number,
)

LABELLED = ("train", "test")
Measure = Callable[[ProbeContext, Tensor, Tensor | None], Records | list[dict[str, Any]]]


def accuracy_loss(
    splits: Sequence[str] = ("train", "test"),
    n_points: int | None = None,
    loss: str | None = None,
    batch_size: int = 1024,
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
) -> Probe:
    """Metrics "accuracy" (fraction classified correctly) and "loss" (mean per-point loss of
    kind ``loss``, default the training loss) on each split, with standard errors over points
    (sample std / sqrt(n))."""
    splits = _check_splits(splits, LABELLED)
    if loss is not None:
        check_choice("loss", loss, LOSSES)
    check_int("batch_size", batch_size, minimum=1)

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        model, rows = ctx.module(dtype), []
        for split in splits:
            x, y = _labelled(ctx, split, n_points, dtype)
            hits, losses = [], []
            with torch.no_grad():
                for i in range(0, len(x), batch_size):
                    out = model(x[i : i + batch_size])
                    hits.append(correct(out, y[i : i + batch_size]))
                    losses.append(point_losses(out, y[i : i + batch_size], loss or ctx.loss))
            for metric, values in (("accuracy", hits), ("loss", losses)):
                value, stderr = _mean_stderr(torch.cat(values))
                rows.append(dict(metric=metric, split=split, value=value, stderr=stderr))
        return rows

    return Probe("accuracy_loss", measure, schedule)


def local_complexity(
    sigma: float = 0.01,
    splits: Sequence[str] = ("train", "test"),
    n_points: int | None = 256,
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    metric: str | None = None,
    **lc_options: Any,
) -> Probe:
    """Metric "lc": :func:`reluscope.local_complexity` (total and per layer, plus its extras as
    "lc.<name>") with noise seeded by the step's seed unless ``seed`` is in ``lc_options``
    (which go to the measure: preset, method, noise_draws, layers, batch_size, ...)."""

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> MeasureResult:
        options = {"seed": ctx.seed} | lc_options
        return measures.local_complexity(ctx.net(dtype), x, sigma=sigma, **options)

    return _per_split("lc", fn, splits, SPLITS, n_points, dtype, schedule, metric)


def neighborhood(
    radius: float,
    n_vertices: int = 50,
    splits: Sequence[str] = ("train", "test", "random"),
    n_points: int | None = 128,
    seed: int = 0,
    include_center: bool = False,
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    metric: str | None = None,
    **options: Any,
) -> Probe:
    """Metric "neighborhood": :func:`reluscope.neighborhood_complexity` (Humayun et al.) with
    the frame of ``seed`` (the same at every step; it also draws the "random" points)."""

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> MeasureResult:
        net = ctx.net(dtype)
        return measures.neighborhood_complexity(
            net,
            x,
            radius=radius,
            n_vertices=n_vertices,
            seed=seed,
            include_center=include_center,
            **options,
        )

    return _per_split("neighborhood", fn, splits, SPLITS, n_points, dtype, schedule, metric, seed)


def local_rank(
    atol: float = 0.01,
    splits: Sequence[str] = ("train",),
    n_points: int | None = 256,
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    metric: str | None = None,
    **options: Any,
) -> Probe:
    """Metric "local_rank": :func:`reluscope.local_rank`, per layer and in total (the sum of
    the sites' ranks)."""

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> MeasureResult:
        return measures.local_rank(ctx.net(dtype), x, atol=atol, **options)

    return _per_split("local_rank", fn, splits, SPLITS, n_points, dtype, schedule, metric)


def total_variation(
    sigma: float = 0.01,
    splits: Sequence[str] = ("train",),
    n_points: int | None = 256,
    output: str | int = "logits",
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    metric: str | None = None,
    **options: Any,
) -> Probe:
    """Metric "tv": :func:`reluscope.total_variation` of ``output`` (with the bound quantities
    as "tv.<name>" unless ``bound=False``); ``sigma`` enters only "tv.c_eta"."""

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> MeasureResult:
        return measures.total_variation(ctx.net(dtype), x, output=output, sigma=sigma, **options)

    return _per_split("tv", fn, splits, SPLITS, n_points, dtype, schedule, metric)


def adversarial(
    eps: float,
    step_size: float | None = None,
    iters: int = 10,
    bounds: tuple[Any, Any] | None = None,
    attack: str = "pgd",
    splits: Sequence[str] = ("test",),
    n_points: int | None = 256,
    norm: str = "linf",
    loss: str = "ce",
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    metric: str | None = None,
) -> Probe:
    """Metric "adv_accuracy": :func:`reluscope.attacks.adversarial_accuracy` under ``attack``
    ("pgd" with ``iters`` steps of ``step_size`` (default eps / 4), random start seeded by the
    step's seed, or "fgsm"), ``eps`` and ``bounds`` in input units; also
    "adv_accuracy.clean_accuracy"."""
    from reluscope.attacks import adversarial_accuracy

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> MeasureResult:
        if y is None:
            raise InputError("adversarial accuracy needs labelled data; this split has none")
        return adversarial_accuracy(
            ctx.module(dtype),
            x,
            labels=y,
            attack=attack,
            eps=eps,
            step_size=step_size,
            steps=iters,
            bounds=bounds,
            seed=ctx.seed,
            norm=norm,
            loss=loss,
        )

    return _per_split("adv_accuracy", fn, splits, LABELLED, n_points, dtype, schedule, metric)


def weight_norms(schedule: Schedule | None = None) -> Probe:
    """Metrics "weight_fro" and "weight_spectral" of every weight (parameter with 2 or more
    dimensions; layer = its module path), in float64. A convolution kernel is reshaped to
    (out_channels, in_channels * kernel size), so its spectral norm is that matrix's, not the
    convolution operator's. Totals (layer None): the Frobenius norm of all weights together,
    and the product of the spectral norms (the Lipschitz bound of a sequential network)."""

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        rows, total_sq, product = [], 0.0, 1.0
        for name, p in ctx.model.named_parameters():
            if p.dim() < 2:
                continue
            w = p.detach().to(torch.float64)
            fro = torch.linalg.norm(w).item()
            spectral = spectral_norm(w.reshape(w.shape[0], -1)).item()
            layer = name.removesuffix(".weight")
            rows.append(dict(metric="weight_fro", layer=layer, value=fro))
            rows.append(dict(metric="weight_spectral", layer=layer, value=spectral))
            total_sq, product = total_sq + fro**2, product * spectral
        rows.append(dict(metric="weight_fro", value=math.sqrt(total_sq)))
        rows.append(dict(metric="weight_spectral", value=product))
        return rows

    return Probe("weight_norms", measure, schedule)


def weight_ranks(
    dtype: torch.dtype | None = None, schedule: Schedule | None = None, **options: Any
) -> Probe:
    """Metrics "spectral_norm", "frobenius_norm", "rank", "numerical_rank", ... of every weight
    layer: :func:`reluscope.weight_ranks` of the traced model (``options``: rtol, atol,
    conv_method, ...), layers named by the site they feed (as in every measure's records)."""

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        return measures.weight_ranks(ctx.net(dtype), **options).to_records()

    return Probe("weight_ranks", measure, schedule)


def neural_collapse(
    splits: Sequence[str] = ("train",),
    n_points: int | None = 512,
    dtype: torch.dtype | None = None,
    schedule: Schedule | None = None,
    **options: Any,
) -> Probe:
    """Metrics "nc1", "nc2_etf", "nc3", "nc4", ... per layer: :func:`reluscope.neural_collapse`
    on the labelled points of each split (``options``: layers, nc4, batch_size, ...)."""

    def fn(ctx: ProbeContext, x: Tensor, y: Tensor | None):
        return measures.neural_collapse(ctx.net(dtype), x, labels=_need_labels(y), **options)

    return _per_split("neural_collapse", fn, splits, LABELLED, n_points, dtype, schedule, None)


def bounds(
    splits: Sequence[str] = ("train",),
    n_points: int | None = None,
    dtype: torch.dtype | None = torch.float64,
    schedule: Schedule | None = None,
    *,
    margin_quantile: float | None = None,
    numbers: Sequence[str] | None = None,
    **options: Any,
) -> Probe:
    """Metrics "log10_bound", "margin_risk", ... of each generalisation bound (kept in the
    column ``bound``), and "margin" (gamma, output units): :func:`reluscope.bounds.compare.compare`
    on the labelled points of each split (``options``: bounds, margin, delta, ranks, ...).

    ``margin_quantile``: instead of a fixed ``margin``, gamma is chosen at every step as this
    quantile of the split's positive margins (:func:`reluscope.bounds.default_margin`); a step
    where no point is classified correctly records nothing. ``numbers``: the numbers of each
    bound recorded (names of :meth:`reluscope.bounds.BoundResult.to_record`; default all)."""
    from reluscope.bounds.compare import compare
    from reluscope.bounds.margins import default_margin
    from reluscope.bounds.results import BOUND_NUMBERS

    if margin_quantile is not None:
        check_number("margin_quantile", margin_quantile, minimum=0, maximum=1, strict=True)
        if "margin" in options:
            raise InputError("give margin or margin_quantile, not both")
    elif "margin" not in options:
        raise InputError("the bounds probe needs margin= (gamma) or margin_quantile=")
    keep = None if numbers is None else set(check_names("numbers", numbers, BOUND_NUMBERS))

    def measure(ctx: ProbeContext, x: Tensor, y: Tensor | None) -> list[dict[str, Any]]:
        net, labels = ctx.net(dtype), _need_labels(y)
        margin = options.get("margin")
        if margin_quantile is not None:
            with torch.no_grad():
                outputs = net(x)
            if not bool((outputs.argmax(dim=1) == labels).any()):
                return []
            margin = default_margin(outputs, labels, margin_quantile)
        table = compare(net, x, labels, **{**options, "margin": margin})
        rows = [r for r in table.to_records() if keep is None or r["metric"] in keep]
        return rows + [record("margin", table.margins.margin)]

    return _per_split(
        "bounds", measure, splits, LABELLED, n_points, dtype, schedule, None, columns=("bound",)
    )


def snapshot(directory: str | os.PathLike, schedule: Schedule | None = None) -> Probe:
    """Saves the model's state dict to ``directory/step_{step:08d}.pt`` (atomically; created if
    missing); no records. Load with ``torch.load(path, weights_only=True)``."""
    directory = Path(directory)

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the snapshot directory {directory}: {exc}") from exc
        state = {k: v.detach().cpu() for k, v in ctx.model.state_dict().items()}
        atomic_write(directory / f"step_{ctx.step:08d}.pt", lambda tmp: torch.save(state, tmp))
        return []

    return Probe("snapshot", measure, schedule)


# ---------------------------------------------------------------------------- helpers
def _per_split(
    name: str,
    fn: Measure,
    splits: Sequence[str],
    allowed: Sequence[str],
    n_points: int | None,
    dtype: torch.dtype | None,
    schedule: Schedule | None,
    metric: str | None,
    seed: int = 0,
    columns: tuple[str, ...] = (),
) -> Probe:
    """A probe running ``fn(ctx, x, y)`` (a result, or its records) on each split, its records
    tagged with the split and its metric ``name`` renamed to ``metric``; the probe keeps the
    record ``columns`` (:attr:`Probe.columns`)."""
    splits = _check_splits(splits, allowed)
    if n_points is not None:
        check_int("n_points", n_points, minimum=1)
    if "random" in splits and n_points is None:
        raise InputError('the "random" split needs n_points (the number of random points)')
    check_float_dtype("dtype", dtype)
    new_name = metric or name

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        rows = []
        for split in splits:
            x, y = ctx.points(split, n_points, dtype, seed)
            output = fn(ctx, x, y)
            new = output if isinstance(output, list) else output.to_records()
            for row in new:
                row = dict(row, split=split)
                if metric is not None:
                    row["metric"] = new_name + row["metric"].removeprefix(name)
                rows.append(row)
        return rows

    return Probe(new_name, measure, schedule, columns=columns)


def _need_labels(y: Tensor | None) -> Tensor:
    if y is None:
        raise InputError("this probe needs labelled data; this split has none")
    return y


def _labelled(ctx: ProbeContext, split: str, n: int | None, dtype) -> tuple[Tensor, Tensor]:
    x, y = ctx.points(split, n, dtype)
    if y is None:
        raise InputError(f"the {split} split has no labels; accuracy and loss need labels")
    return x, y


def _check_splits(splits: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    return tuple(check_names("splits", splits, allowed, "splits among"))


def _mean_stderr(values: Tensor) -> tuple[float, float]:
    v = values.detach().to("cpu", torch.float64)
    stderr = (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else math.nan
    return v.mean().item(), stderr
