"""``region-migration``: exact linear regions on a plane through three training points at
checkpoints over training. Late in training the region boundaries leave the data and gather at
the decision boundary (Humayun, Balestriero & Baraniuk, ICML 2024; spec §3.3, §5 prediction 15)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Circle as MplCircle
from pydantic import Field

from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.experiments import Experiment, ExperimentConfig, Figure, Outcome, Prediction
from reluscope.experiments.local_complexity import common
from reluscope.experiments.runner import RunContext
from reluscope.io import atomic_write
from reluscope.regions import PlanePartition, plane_through
from reluscope.regions.plot import draw_plane
from reluscope.report.figures import new_figure
from reluscope.train import TrainConfig, log_steps, probes, records_frame

SOURCE = "spec local_complexity.md §3.3 and §5, prediction 15 (Humayun et al. 2024)"
#: Where the three points of each plane are saved (a float64 tensor (planes, 3, *input_shape)).
PLANE_POINTS = "plane_points.pt"
#: Sub-directory of the weight snapshots (``step_{step:08d}.pt``).
SNAPSHOTS = "snapshots"
#: Side of the grid of plane points used to measure the areas near the data and the boundary.
AREA_GRID = 150


class RegionMigrationConfig(ExperimentConfig):
    """A large-initialisation MLP trained with weight decay (as in ``grokking``), with weight
    snapshots at every probe step and the neighbourhood LC at training points to find its
    phases. The exact partitions of planes through three training points of different classes
    are computed at step 0, the end of the first LC descent, the LC maximum (start of the
    second descent), a step between it and the end, and the end. Quick: 300 digits, 2x64,
    MSE on one-hot targets. Paper: Humayun et al.'s MNIST MLP setup, 1e5 steps."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 1000,
        "n_test": 1000,
        "hidden": [200, 200, 200],
        "train.lr": 1e-3,
        "train.weight_decay": 0.01,
        "train.steps": 100_000,
        "n_probes": 50,
        "n_planes": 10,
        "n_points": 1000,
        "train.dtype": "float64",
    }

    data: str = Field("digits", description="data spec (e.g. mnist1d:n=2000, mnist)")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(300, ge=10)
    n_test: int = Field(1000, ge=10)
    hidden: list[int] = Field([64, 64], min_length=1)
    init_gain: float = Field(1 / math.sqrt(3), gt=0, description="see grokking")
    train: Annotated[TrainConfig, common.min_steps(10)] = Field(
        TrainConfig(
            optimizer="adamw",
            lr=3e-3,
            weight_decay=0.3,
            batch_size=200,
            steps=8000,
            loss="mse",
            param_scale=8.0,
        ),
        description="AdamW training; param_scale is Omnigrok's alpha; seed and device are the experiment's",
    )
    n_probes: int = Field(30, ge=5, description="log-spaced probe (and snapshot) steps")
    n_planes: int = Field(5, ge=1, description="planes, each through 3 training points")
    near: float = Field(
        0.1, gt=0, description="'near' radius, as a fraction of the plane's mean point distance"
    )
    margin: float = Field(0.25, ge=0, description="plane_through margin around the points")
    radius: float = Field(0.5, gt=0, description="neighbourhood-LC radius (phase detection)")
    n_vertices: int = Field(50, ge=2, description="neighbourhood-LC cross-polytope vertices")
    n_points: int = Field(128, ge=8, description="training points for the neighbourhood LC")


def partition_steps(probed: list[int], phases: dict[str, int]) -> list[int]:
    """Step 0, the end of the first descent, the LC maximum, the probed step closest (in log
    scale) to the geometric middle between the maximum and the end, and the end."""
    lo, end = max(phases["ascent_end"], 1), phases["end"]
    middle = min(probed, key=lambda s: abs(math.log(max(s, 1)) - 0.5 * math.log(lo * end)))
    return sorted({0, phases["descent_end"], phases["ascent_end"], middle, end})


def plane_points(data: Dataset, n_planes: int, seed: int) -> torch.Tensor:
    """``n_planes`` triples of training points, each of three different classes (seeded),
    shape (n_planes, 3, *input_shape), float64."""
    labels = data.y.unique()
    if len(labels) < 3:
        raise InputError(f"{data.name!r} has {len(labels)} classes; planes need three")
    gen = torch.Generator().manual_seed(seed)
    triples = []
    for _ in range(n_planes):
        chosen = labels[torch.randperm(len(labels), generator=gen)[:3]]
        index = []
        for label in chosen:
            members = (data.y == label).nonzero().reshape(-1)
            index.append(members[torch.randint(len(members), (1,), generator=gen)])
        triples.append(data.x[torch.cat(index)])
    return torch.stack(triples).double()


def run(config: RegionMigrationConfig, ctx: RunContext) -> Outcome:
    c = config
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    points = plane_points(train, c.n_planes, c.seed)

    def build() -> torch.nn.Module:
        return common.data_mlp(train, c.hidden, c.init_gain, c.seed)

    train_config = common.train_config(c)
    snapshots = ctx.subdir(SNAPSHOTS)
    probe_list = [
        probes.accuracy_loss(),
        probes.neighborhood(c.radius, c.n_vertices, splits=("train",), n_points=c.n_points),
        probes.snapshot(snapshots),
    ]
    records, _ = common.train_run(
        ctx,
        "train",
        build(),
        train,
        test,
        train_config,
        probe_list,
        log_steps(c.train.steps, c.n_probes),
    )
    atomic_write(ctx.path(PLANE_POINTS), lambda tmp: torch.save(points, tmp))
    lc = common.series(records, "neighborhood", "train")["value"]
    phases = common.lc_phases(lc)
    steps = partition_steps(lc.index.tolist(), phases)
    rows, shown = [], []
    for step in steps:
        model = load_snapshot(build(), snapshots, step)
        for k, triple in enumerate(points):
            part = plane_through(model, triple, margin=c.margin)
            segments = part.decision_boundary()[0].cpu().numpy()
            rows += [
                dict(run="train", step=step, metric=metric, split=f"plane{k}", value=value)
                for metric, value in migration_stats(part, segments, c.near).items()
            ]
            shown.append((k, step, part, segments))
    records = records_frame(records.to_dict("records") + rows)
    figures = [_grid_figure(shown, c.near, ctx), _stats_figure(records, c.n_planes, phases, ctx)]
    numbers, predictions = _verdicts(records, c.n_planes, phases["ascent_end"])
    return Outcome(
        records=records,
        figures=figures,
        numbers=numbers,
        predictions=predictions,
        summary=(
            f"{c.data}, MLP {c.hidden} at init scale {c.train.param_scale:g}, {c.train.steps} steps: exact "
            f"partitions of {c.n_planes} plane(s) through three training points at steps "
            f"{steps}; the neighbourhood LC at training points peaks at step "
            f"{phases['ascent_end']}."
        ),
    )


def load_snapshot(model: torch.nn.Module, directory: Path, step: int) -> torch.nn.Module:
    """``model`` with the weights saved at ``step`` by ``probes.snapshot``, in eval mode."""
    state = torch.load(directory / f"step_{step:08d}.pt", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def segment_distances(points: np.ndarray, segments: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each point (m, 2) to the nearest segment (s, 2, 2); inf when
    there are no segments."""
    if len(segments) == 0:
        return np.full(len(points), np.inf)
    a, d = segments[:, 0], segments[:, 1] - segments[:, 0]
    dd = np.maximum((d**2).sum(1), 1e-300)
    out = np.empty(len(points))
    for i in range(0, len(points), chunk):
        p = points[i : i + chunk, None, :] - a[None]
        t = np.clip((p * d[None]).sum(2) / dd, 0.0, 1.0)
        out[i : i + chunk] = np.sqrt(((p - t[..., None] * d[None]) ** 2).sum(2).min(1))
    return out


def migration_stats(part: PlanePartition, segments: np.ndarray, near: float) -> dict[str, float]:
    """Where the region vertices of a plane partition lie: within a radius of ``near`` times
    the mean distance between the marked points of those points (``data``) and of the
    decision boundary (``boundary``; its ``segments`` (m, 2, 2) from
    ``part.decision_boundary()``). ``*_fraction``: the fraction of all vertices there;
    ``*_density``: vertices per unit area there (plane units, i.e. input units for
    ``plane_through``; the areas are measured on an AREA_GRID x AREA_GRID grid);
    ``*_density_ratio``: that density over the density of the whole rectangle
    (``density``)."""
    marked = part.marked_points.cpu().numpy()
    radius = near * float(
        np.mean([np.linalg.norm(marked[i] - marked[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    )
    vertices = part.vertices.cpu().numpy()
    s0, s1, t0, t1 = part.extent
    gs, gt = np.meshgrid(np.linspace(s0, s1, AREA_GRID), np.linspace(t0, t1, AREA_GRID))
    grid = np.stack([gs.ravel(), gt.ravel()], 1)
    near_data = _point_distances(vertices, marked) <= radius
    near_boundary = segment_distances(vertices, segments) <= radius
    area_data = float((_point_distances(grid, marked) <= radius).mean())
    area_boundary = float((segment_distances(grid, segments) <= radius).mean())
    lengths = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1) if len(segments) else [0]
    stats = {
        "regions": float(part.num_regions),
        "vertices": float(part.num_vertices),
        "boundary_length": float(np.sum(lengths)),
        "near_data_fraction": float(near_data.mean()),
        "near_boundary_fraction": float(near_boundary.mean()),
    }
    stats["density"] = part.num_vertices / ((s1 - s0) * (t1 - t0))
    for key, area in (("near_data", area_data), ("near_boundary", area_boundary)):
        ratio = stats[f"{key}_fraction"] / area if area > 0 else math.nan
        stats[f"{key}_density_ratio"] = ratio
        stats[f"{key}_density"] = ratio * stats["density"]
    return stats


def _point_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - centres[None], axis=2).min(1)


def _verdicts(
    records: pd.DataFrame, n_planes: int, lc_max: int
) -> tuple[dict[str, float], list[Prediction]]:
    """Partition statistics at the neighbourhood-LC maximum (the start of Humayun et al.'s
    second descent) against the last checkpoint."""
    mean = _plane_mean(records, n_planes)
    end = int(mean.index[-1])
    numbers: dict[str, float] = {
        "lc_max_step": float(lc_max),
        "regions_init": float(mean["regions"].iloc[0]),
        "regions_lc_max": float(mean.loc[lc_max, "regions"]),
        "regions_end": float(mean.loc[end, "regions"]),
    }
    for key in (
        "near_data_density_ratio",
        "near_boundary_density_ratio",
        "near_data_density",
        "near_boundary_density",
        "density",
    ):
        numbers[f"{key}_lc_max"] = float(mean.loc[lc_max, key])
        numbers[f"{key}_end"] = float(mean.loc[end, key])
    late = lc_max < end
    where = f"mean over {n_planes} plane(s), step {lc_max} (LC maximum) -> step {end}"
    if not late:
        where += " (the LC peaks at the end: no second descent to compare)"
    claim = (
        "Late in training (from the neighbourhood-LC maximum, where the second descent starts, "
        "to the end) the vertex density within the 'near' radius of the {}, relative to the "
        "plane's mean density, {}"
    )
    predictions = []
    for key, what, sign, verb in (
        ("near_data_density_ratio", "three training points", -1, "falls: regions leave the data"),
        ("near_boundary_density_ratio", "decision boundary", 1, "rises: regions gather there"),
    ):
        before, after = numbers[f"{key}_lc_max"], numbers[f"{key}_end"]
        predictions.append(
            Prediction(
                claim.format(what, verb),
                bool(late and sign * (after - before) > 0),
                f"{where}: {before:.3g} -> {after:.3g}",
                SOURCE,
            )
        )
    return numbers, predictions


def _plane_mean(records: pd.DataFrame, n_planes: int) -> pd.DataFrame:
    """The partition statistics averaged over the planes: steps x metrics."""
    rows = records[records["split"].isin([f"plane{k}" for k in range(n_planes)])]
    return rows.pivot_table(index="step", columns="metric", values="value", aggfunc="mean")


def _grid_figure(
    shown: list[tuple[int, int, PlanePartition, np.ndarray]], near: float, ctx: RunContext
) -> Figure:
    planes = sorted({k for k, *_ in shown})
    steps = sorted({step for _, step, *_ in shown})
    fig, axes = new_figure(len(steps), len(planes), size=(2.4, 2.4))
    for k, step, part, segments in shown:
        row, col = planes.index(k), steps.index(step)
        ax = axes[row * len(steps) + col]
        draw_plane(ax, part, points=part.marked_points, edge_width=0.08, segments=segments)
        marked = part.marked_points.cpu().numpy()
        radius = near * float(
            np.mean([np.linalg.norm(marked[i] - marked[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
        )
        for centre in marked:
            ax.add_patch(MplCircle(centre, radius, fill=False, ls="--", lw=1.0, ec="0.1"))
        ax.grid(False)
        ax.tick_params(labelsize=7)
        ax.set_title(f"step {step}: {part.num_regions} regions", fontsize=9)
        if col == 0:
            ax.set_ylabel(f"plane {k}: t")
        if row == len(planes) - 1:
            ax.set_xlabel("s (input units)")
    legend = [
        Line2D([], [], ls="", marker="o", color="k", label="training points (3 classes)"),
        Line2D([], [], color="crimson", label="decision boundary"),
        Line2D([], [], color="k", lw=0.6, label="region edges"),
        Line2D(
            [], [], color="0.1", ls="--", label=f"'near' radius ({near:g} x mean point distance)"
        ),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=2)
    return ctx.figure(
        fig,
        "regions_grid.png",
        f"Exact linear regions of the network on all {len(planes)} planes through three "
        "training points of different classes (black dots), one row per plane (coordinates s, "
        "t in input units along the plane), at step 0, the end of the first descent of the "
        "neighbourhood LC, its maximum, a step between the maximum and the end, and the end. "
        "Regions in random colours, region edges in black, decision boundary in red, the "
        "'near' radius the vertex densities are measured within dashed. Region migration "
        "predicts that after the maximum the edges thin out around the points and crowd "
        "along the red boundary.",
    )


def _stats_figure(
    records: pd.DataFrame, n_planes: int, phases: dict[str, int], ctx: RunContext
) -> Figure:
    mean = _plane_mean(records, n_planes)
    fig, axes = new_figure(3, 1, size=(4.0, 3.3))
    x = mean.index.to_numpy() + 1
    common.plot_series(axes[0], common.series(records, "neighborhood", "train"), "train points")
    axes[0].set_ylabel("neighbourhood LC (neurons crossing)")
    ax = axes[1]
    ax.plot(x, mean["near_data_density_ratio"], "o-", label="near the training points")
    ax.plot(x, mean["near_boundary_density_ratio"], "s-", label="near the decision boundary")
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_ylabel("vertex density / plane mean")
    ax = axes[2]
    ax.plot(x, mean["regions"], "o-", label="regions")
    ax.set_ylabel("regions on the plane")
    for ax in axes[1:]:
        ax.set_xscale("log")
    common.finish_step_axes(axes, common.phase_marks(phases))
    return ctx.figure(
        fig,
        "migration.png",
        "Left: neighbourhood LC at the training points over training (bands +-1 standard "
        "error), which sets the checkpoints. Middle: density of region vertices (corners of "
        "the linear regions) within the 'near' radius of the three training points and of the "
        f"decision boundary, divided by the vertex density of the whole plane rectangle, mean "
        f"over {n_planes} plane(s). Right: number of regions on the plane. Green / red dashed: "
        "end of the first LC descent / LC maximum. Migration: after the red line the first "
        "density falls and the second rises.",
    )


EXPERIMENT = Experiment(
    name="region-migration",
    title="Region migration: linear regions leave the data for the decision boundary",
    paper="local_complexity",
    description=(
        "Computes exact 2-D partitions through three training points at checkpoints of a "
        "large-initialisation MLP and measures how densely region vertices sit near the "
        "training points and near the decision boundary over training."
    ),
    config=RegionMigrationConfig,
    run=run,
    order=5,
)
