"""What the local-complexity experiments share: their data (generated, bundled, or MNIST /
CIFAR-10 from a data directory, normalised as in the authors' code), the paper's MLP
initialisation, the training configuration and call, reading series out of tidy records, and
drawing their figures.

Internal to reluscope.experiments.local_complexity: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from pydantic import AfterValidator
from torch import nn

from reluscope.data import Dataset, load_data, split, subsample
from reluscope.errors import InputError
from reluscope.experiments.config import ExperimentConfig, training
from reluscope.experiments.runner import RunContext
from reluscope.measures.neighborhood import NeighborhoodMeter
from reluscope.train import Probe, ProbeContext, Schedule, TrainConfig, Trainer

#: Per-channel (mean, std) of the pixels in [0, 1], as normalised in the authors' code.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
#: Data sets with their own test files (read as ``name:part=train`` and ``name:part=test``).
FILE_DATASETS = ("mnist", "cifar10")

_Number = TypeVar("_Number", int, float)


def _sorted_distinct_positive(values: list[_Number]) -> list[_Number]:
    if any(v <= 0 for v in values) or len(set(values)) != len(values):
        raise ValueError("must be distinct and > 0")
    return sorted(values)


#: A configuration field holding a sweep: distinct numbers > 0, sorted ascending.
DistinctPositive = Annotated[list[_Number], AfterValidator(_sorted_distinct_positive)]


def load_splits(
    spec: str, n_train: int, n_test: int, data_dir: str | None = None, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """A seeded training subset of ``n_train`` points and a test subset of ``n_test`` points.

    MNIST and CIFAR-10 (``spec`` "mnist" or "cifar10", read from ``data_dir``) take both from
    their own train and test files and are normalised per channel as in the authors' code
    (``NORMALISATION``); any other spec of :func:`reluscope.data.load_data` is generated (from
    ``seed``) and split at random into the two subsets."""
    name = spec.split(":", 1)[0].strip().lower()
    if name in FILE_DATASETS:
        options = spec.split(":", 1)[1] + "," if ":" in spec else ""
        if "part=" in options:
            raise InputError(
                f"data {spec!r}: the train and test parts are chosen by the experiment"
            )
        parts = [
            load_data(f"{name}:{options}part={part}", seed=seed, data_dir=data_dir)
            for part in ("train", "test")
        ]
        train = _take(parts[0], n_train, seed, "n_train")
        test = _take(parts[1], n_test, seed + 1, "n_test")
        return _normalise(train, name), _normalise(test, name)
    data = load_data(spec, seed=seed, data_dir=data_dir)
    if n_train + n_test > len(data):
        raise InputError(
            f"data {spec!r} has {len(data)} points: n_train + n_test = {n_train} + {n_test} "
            "is more than that"
        )
    train, test = split(data, n_train / len(data), seed=seed)
    return train, _take(test, n_test, seed + 1, "n_test")


def _take(data: Dataset, n: int, seed: int, what: str) -> Dataset:
    if n > len(data):
        raise InputError(f"{what}={n} is more than the {len(data)} points of {data.name!r}")
    return data if n == len(data) else subsample(data, n, seed)


def _normalise(data: Dataset, name: str) -> Dataset:
    mean, std = (torch.tensor(v) for v in NORMALISATION[name])
    x = data.x.reshape(len(data), len(mean), -1)
    x = ((x - mean[:, None]) / std[:, None]).reshape(data.x.shape)
    return Dataset(x.float(), data.y, data.name, {**data.info, "normalised": True})


def classes(data: Dataset) -> int:
    """The number of classes of a labelled data set (``info["classes"]``, else max label + 1)."""
    return int(data.info.get("classes") or int(data.labels.max()) + 1)


def paper_mlp(
    input_dim: int, hidden: Sequence[int], outputs: int, gain: float, seed: int
) -> nn.Module:
    """``Linear-ReLU-...-Linear`` with weights drawn from N(0, gain^2 / fan_in) and zero biases,
    the initialisation of the authors' code (gain 1: LeCun normal, sqrt(2): He normal)."""
    widths = [input_dim, *hidden, outputs]
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(fan_out, fan_in, generator=generator))
            linear.weight.mul_(gain / math.sqrt(fan_in))
            linear.bias.zero_()
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def data_mlp(data: Dataset, hidden: Sequence[int], gain: float, seed: int) -> nn.Module:
    """:func:`paper_mlp` with one input per feature of ``data`` and one output per class."""
    return paper_mlp(data.x[0].numel(), hidden, classes(data), gain, seed)


def train_config(config: ExperimentConfig, **values: object) -> TrainConfig:
    """:func:`~reluscope.experiments.training` of an experiment's ``config`` with ``values``,
    checkpointing about 20 times per run (at least every 1000 steps)."""
    every = max(1000, training(config).steps // 20)
    return training(config, checkpoint_every=every, **values)


def min_steps(minimum: int) -> AfterValidator:
    """A validator of a ``train`` section: at least ``minimum`` steps (log-spaced probes and
    phases need them)."""

    def check(train: TrainConfig) -> TrainConfig:
        if train.steps < minimum:
            raise ValueError(f"steps must be >= {minimum}; got {train.steps}")
        return train

    return AfterValidator(check)


def train_run(
    ctx: RunContext,
    name: str,
    model: nn.Module,
    train: Dataset,
    test: Dataset,
    config: TrainConfig,
    probes: Sequence[Probe],
    schedule: Schedule,
) -> tuple[pd.DataFrame, nn.Module]:
    """Train ``model`` with ``probes`` (default ``schedule``) in the sub-directory ``name`` of
    the run directory (checkpointed there, so an interrupted experiment resumes); returns the
    records and the trained model."""
    trainer = Trainer(
        model,
        train,
        test,
        config,
        probes=probes,
        run_dir=ctx.subdir(name),
        run_name=name,
        progress=ctx.progress,
        default_schedule=schedule,
    )
    return trainer.fit(), trainer.model


def series(
    records: pd.DataFrame,
    metric: str,
    split: str | None = None,
    layer: str | None = None,
    run: str | None = None,
) -> pd.DataFrame:
    """The rows of one metric (total when ``layer`` is None) as a frame indexed by step, with
    columns value and stderr, sorted by step."""
    rows = records[records["metric"] == metric]
    rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    if split is not None:
        rows = rows[rows["split"] == split]
    if run is not None:
        rows = rows[rows["run"] == run]
    return rows.set_index("step")[["value", "stderr"]].sort_index()


def layers(records: pd.DataFrame, metric: str) -> list[str]:
    """The layer names of a per-layer metric, in the order they first appear."""
    rows = records[(records["metric"] == metric) & records["layer"].notna()]
    return list(dict.fromkeys(rows["layer"]))


def first_step_at_least(values: pd.Series, threshold: float) -> int | None:
    """The first step (index) where ``values`` reaches ``threshold``, None if never."""
    hits = values[values >= threshold]
    return None if hits.empty else int(hits.index[0])


def neighborhood_points_probe(
    radius: float, n_vertices: int, n_points: int, seed: int, include_output: bool = False
) -> Probe:
    """Humayun et al.'s neighbourhood count at ``n_points`` training points with the frame
    of ``seed`` (the same points and frame at every step, so two steps compare point by
    point): metric "neighborhood" (mean and standard error, split "train") and, per point i,
    metric "neighborhood_point" with layer "point_i"."""

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        x, _ = ctx.points("train", n_points, seed=seed)
        meter = NeighborhoodMeter(
            ctx.net(),
            radius=radius,
            n_vertices=n_vertices,
            seed=seed,
            include_output=include_output,
        )
        values = meter.point_values(x)["neighborhood"].numpy()
        stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        rows = [
            dict(metric="neighborhood", value=float(values.mean()), stderr=stderr, split="train")
        ]
        rows += [
            dict(metric="neighborhood_point", layer=f"point_{i}", value=float(v), split="train")
            for i, v in enumerate(values)
        ]
        return rows

    return Probe("neighborhood_points", measure)


def point_matrix(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-point values of ``metric`` (e.g. "neighborhood_point"): steps x points."""
    rows = records[records["metric"] == metric]
    return rows.pivot_table(index="step", columns="layer", values="value").sort_index()


#: The phases of an LC curve count as seen when each change exceeds this many standard errors.
PHASE_Z = 2.0


def lc_phases(points: pd.DataFrame) -> dict[str, float]:
    """The three phases of an LC curve from per-point values (steps x points, the same points
    at every step): the (start, minimum, peak, end) steps a < b < c < d that make the
    weakest of the three paired changes -- descent v_a - v_b, ascent v_c - v_b and second
    descent v_c - v_d, each divided by the standard error of its per-point differences --
    as large as possible. Returns the four steps (``start``, ``descent_end``,
    ``ascent_end``, ``end``), each change (``descent``, ``ascent``, ``second_descent``) with
    its standard error and z-score, and ``weakest_z``; NaN steps and z-scores when there are
    fewer than four probed steps."""
    steps = points.index.to_numpy()
    v = points.to_numpy(dtype=float)
    n = len(steps)
    out: dict[str, float] = dict.fromkeys(
        ("start", "descent_end", "ascent_end", "end", "weakest_z"), math.nan
    )
    if n < 4:
        return out
    diff = v[:, None, :] - v[None, :, :]  # diff[i, j] = v_i - v_j per point
    count = v.shape[1]
    mean = diff.mean(axis=2)
    se = diff.std(axis=2, ddof=1) / math.sqrt(count) if count > 1 else np.full((n, n), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, mean / se, np.where(mean > 0, np.inf, -np.inf))
    # best start a < b for each minimum b, best end d > c for each peak c
    best_a = np.full(n, -1)
    best_desc = np.full(n, -np.inf)
    for b in range(1, n):
        a = int(np.argmax(z[:b, b]))
        best_a[b], best_desc[b] = a, z[a, b]
    best_d = np.full(n, -1)
    best_second = np.full(n, -np.inf)
    for c in range(n - 1):
        d = c + 1 + int(np.argmax(z[c, c + 1 :]))
        best_d[c], best_second[c] = d, z[c, d]
    score, choice = -np.inf, None
    for b in range(1, n - 2):
        for c in range(b + 1, n - 1):
            weakest = min(best_desc[b], z[c, b], best_second[c])
            if weakest > score:
                score, choice = weakest, (int(best_a[b]), b, c, int(best_d[c]))
    if choice is None:
        return out
    a, b, c, d = choice
    out.update(
        start=float(steps[a]),
        descent_end=float(steps[b]),
        ascent_end=float(steps[c]),
        end=float(steps[d]),
        weakest_z=float(score),
    )
    for name, (i, j) in (("descent", (a, b)), ("ascent", (c, b)), ("second_descent", (c, d))):
        out[name], out[f"{name}_stderr"], out[f"{name}_z"] = (
            float(mean[i, j]),
            float(se[i, j]),
            float(z[i, j]),
        )
    return out


def plot_series(
    ax: Axes, frame: pd.DataFrame, label: str, color: str | None = None, band: bool = True
) -> None:
    """Plot a series against step + 1 on a log axis, with a +-1 standard-error band."""
    x = frame.index.to_numpy() + 1
    y = frame["value"].to_numpy()
    (line,) = ax.plot(x, y, marker=".", ms=3, lw=1.2, label=label, color=color)
    err = frame["stderr"].to_numpy()
    if band and np.isfinite(err).any():
        err = np.nan_to_num(err)
        ax.fill_between(x, y - err, y + err, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xscale("log")


def phase_marks(phases: dict[str, float]) -> list[tuple[int | None, str, str]]:
    """The (step, label, colour) marks of the end of the first LC descent and the LC peak
    (see :func:`lc_phases`), for :func:`finish_step_axes`."""

    def step(key: str) -> int | None:
        return None if math.isnan(phases[key]) else int(phases[key])

    return [
        (step("descent_end"), "end of first descent", "tab:green"),
        (step("ascent_end"), "LC peak", "tab:red"),
    ]


def finish_step_axes(axes: Sequence[Axes], marks: Sequence[tuple[int | None, str, str]]) -> None:
    """On every axis against training step: the (step, label, colour) ``marks`` as vertical
    lines (marks at the same step merged into one, each kind in its own line style), the
    step-axis label, each panel's legend of its curves where it covers the least, and one
    legend of the marks below the figure."""
    merged: dict[int, tuple[list[str], str]] = {}
    for step, label, color in marks:
        if step is not None:
            merged.setdefault(step, ([], color))[0].append(label)
    styles = ("--", ":", "-.")
    lines = []
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="best")
        ax.set_xlabel("training step + 1")
        lines = [
            ax.axvline(step + 1, color=color, ls=styles[i % 3], lw=1.3)
            for i, (step, (_, color)) in enumerate(merged.items())
        ]
    if lines:
        labels = [f"{' = '.join(names)} (step {step})" for step, (names, _) in merged.items()]
        axes[0].figure.legend(lines, labels, loc="outside lower center", ncols=len(lines))
