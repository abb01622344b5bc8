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
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle as MplCircle
from pydantic import Field
from scipy.stats import binomtest

from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.experiments import (
    Experiment,
    ExperimentConfig,
    Figure,
    Outcome,
    Prediction,
    verdict,
)
from reluscope.experiments.local_complexity import common
from reluscope.experiments.runner import RunContext
from reluscope.figures import new_figure
from reluscope.io import atomic_write
from reluscope.measures.neighborhood import NeighborhoodMeter
from reluscope.regions import PlanePartition, plane_through
from reluscope.regions.plot import draw_plane
from reluscope.train import TrainConfig, log_steps, probes, records_frame

#: The sign test over planes decides at this one-sided level.
SIGN_LEVEL = 0.05
#: Where the three points of each plane are saved (a float64 tensor (planes, 3, *input_shape)).
PLANE_POINTS = "plane_points.pt"
#: Sub-directory of the weight snapshots (``step_{step:08d}.pt``).
SNAPSHOTS = "snapshots"
#: Side of the grid of plane points used to measure the areas near the data and the boundary.
AREA_GRID = 150
#: The plane statistics compared from the LC peak to the end (NaN where a plane shows no
#: decision boundary).
PLANE_RATIOS = ("near_data_density_ratio", "near_boundary_density_ratio", "density")
#: Planes drawn in the grid figure (one row each).
GRID_PLANES = 2


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
        "seeds": 3,
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
    n_planes: int = Field(10, ge=1, description="planes, each through 3 training points")
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")
    near: float = Field(
        0.1, gt=0, description="'near' radius, as a fraction of the plane's mean point distance"
    )
    margin: float = Field(0.25, ge=0, description="plane_through margin around the points")
    radius: float = Field(0.5, gt=0, description="neighbourhood-LC radius (phase detection)")
    n_vertices: int = Field(50, ge=2, description="neighbourhood-LC cross-polytope vertices")
    n_points: int = Field(128, ge=8, description="training points for the neighbourhood LC")


def partition_steps(probed: list[int], phases: dict[str, float]) -> list[int]:
    """Step 0, the end of the first descent, the LC peak, the probed step closest (in log
    scale) to the geometric middle between the peak and the end, and the end (steps of
    :func:`common.lc_phases` that are NaN are left out)."""
    end = probed[-1]
    marks = [phases[k] for k in ("descent_end", "ascent_end")]
    peak = phases["ascent_end"]
    lo = max(int(peak), 1) if not math.isnan(peak) else 1
    middle = min(probed, key=lambda s: abs(math.log(max(s, 1)) - 0.5 * math.log(lo * end)))
    return sorted({0, middle, end, *(int(m) for m in marks if not math.isnan(m))})


def plane_points(data: Dataset, n_planes: int, seed: int) -> torch.Tensor:
    """``n_planes`` triples of training points, each of three different classes (seeded),
    shape (n_planes, 3, *input_shape), float64."""
    labels = data.labels.unique()
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
    seeds = verdict.seed_configs(c)
    results = [_run_seed(s, ctx, first=i == 0) for i, s in enumerate(seeds)]
    first = results[0]
    figures = [
        _grid_figure(first["shown"], c.near, ctx),
        _planes_figure(first["verdict_planes"], first["peak"], c.near, ctx),
        _stats_figure(first["records"], c.n_planes, first["phases"], ctx),
    ]
    numbers = first["numbers"]
    return Outcome(
        records=pd.concat(
            [r["records"].assign(seed=s.seed) for r, s in zip(results, seeds, strict=True)],
            ignore_index=True,
        ),
        figures=figures,
        numbers=numbers,
        predictions=_predictions([r["numbers"] for r in results], c, [s.seed for s in seeds]),
        sanity_checks=[_boundary_sanity([r["numbers"] for r in results], [s.seed for s in seeds])],
        summary=(
            f"Seed {c.seed}: {c.data}, MLP {c.hidden} at init scale {c.train.param_scale:g}, {c.train.steps} "
            f"steps: exact partitions of {c.n_planes} planes through three training points at "
            f"the neighbourhood-LC peak (step {numbers['lc_peak_step']:.0f}) and the end; "
            f"regions per plane {numbers['regions_lc_peak']:.0f} -> {numbers['regions_end']:.0f}"
            f"; near-data density ratio falls on {numbers['planes_data_falls']:.0f} and "
            f"near-boundary ratio rises on {numbers['planes_boundary_rises']:.0f} of "
            f"{c.n_planes} planes; neighbourhood LC at decision-boundary points "
            f"{numbers['lc_boundary_points']:.3g} vs {numbers['lc_train_points']:.3g} at training "
            "points at the end."
        ),
    )


def _run_seed(c: RegionMigrationConfig, ctx: RunContext, first: bool) -> dict[str, Any]:
    """Train one seed, find the LC phases, partition every plane at the LC peak and the end
    (and, for the ``first`` seed, the figure's planes at every checkpoint)."""
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    points = plane_points(train, c.n_planes, c.seed)

    def build() -> torch.nn.Module:
        return common.data_mlp(train, c.hidden, c.init_gain, c.seed)

    train_config = common.train_config(c)
    name = "train" if c.seeds == 1 else f"train_seed_{c.seed}"
    snapshots = ctx.subdir(SNAPSHOTS if c.seeds == 1 else f"{SNAPSHOTS}_seed_{c.seed}")
    probe_list = [
        probes.accuracy_loss(),
        common.neighborhood_points_probe(c.radius, c.n_vertices, c.n_points, c.seed),
        probes.snapshot(snapshots),
    ]
    records, _ = common.train_run(
        ctx,
        name,
        build(),
        train,
        test,
        train_config,
        probe_list,
        log_steps(c.train.steps, c.n_probes),
    )
    if first:
        atomic_write(ctx.path(PLANE_POINTS), lambda tmp: torch.save(points, tmp))
    phases = common.lc_phases(common.point_matrix(records, "neighborhood_point"))
    probed = sorted(records["step"].unique().tolist())
    end = int(probed[-1])
    peak = int(phases["ascent_end"]) if not math.isnan(phases["ascent_end"]) else end
    shown_steps = partition_steps(probed, phases) if first else []
    rows, shown, verdict_planes = [], [], []
    boundary_points = []
    for step in sorted({peak, end, *shown_steps}):
        model = load_snapshot(build(), snapshots, step)
        for k, triple in enumerate(points):
            if step not in (peak, end) and k >= GRID_PLANES:
                continue
            part = plane_through(model, triple, margin=c.margin)
            segments = part.decision_boundary()[0].cpu().numpy()
            rows += [
                dict(run=name, step=step, metric=metric, split=f"plane{k}", value=value)
                for metric, value in migration_stats(part, segments, c.near).items()
            ]
            if step in shown_steps and k < GRID_PLANES:
                shown.append((k, step, part, segments))
            if first and step in (peak, end):
                verdict_planes.append((k, step, part, segments))
            if step == end and len(segments):
                middle = torch.as_tensor(segments.mean(axis=1))
                boundary_points.append(part.to_input(middle).reshape(len(middle), -1))
    records = records_frame(records.to_dict("records") + rows)
    numbers = _numbers(records, c.n_planes, peak, end)
    numbers.update(
        _boundary_check(load_snapshot(build(), snapshots, end), train, boundary_points, c)
    )
    numbers.update({f"phase_{k}": v for k, v in phases.items()})
    return dict(
        records=records,
        numbers=numbers,
        phases=phases,
        peak=peak,
        shown=shown,
        verdict_planes=verdict_planes,
    )


def _boundary_check(
    model: torch.nn.Module, train: Dataset, boundary: list[torch.Tensor], c: RegionMigrationConfig
) -> dict[str, float]:
    """The neighbourhood LC at the end at points on the decision boundary (midpoints of its
    segments on every plane, at most n_points of them) and at n_points training points:
    means, standard errors and their difference."""
    x = train.x[: c.n_points].reshape(min(c.n_points, len(train)), -1)
    if not boundary:
        return dict.fromkeys(
            (
                "lc_boundary_points",
                "lc_boundary_points_stderr",
                "lc_train_points",
                "lc_train_points_stderr",
                "boundary_points",
            ),
            math.nan,
        )
    on = torch.cat(boundary)
    pick = torch.randperm(len(on), generator=torch.Generator().manual_seed(c.seed))[: c.n_points]
    on = on[pick].to(x.dtype)
    meter = NeighborhoodMeter(
        model, radius=c.radius, n_vertices=c.n_vertices, seed=c.seed, input_shape=x.shape[1:]
    )
    out: dict[str, float] = {"boundary_points": float(len(on))}
    for key, data in (("lc_boundary_points", on), ("lc_train_points", x)):
        with torch.no_grad():
            values = meter.point_values(data)["neighborhood"].numpy()
        out[key] = float(values.mean())
        out[f"{key}_stderr"] = float(values.std(ddof=1) / math.sqrt(len(values)))
    return out


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
    assert part.marked_points is not None  # plane_through marks the points it passes through
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


def _numbers(records: pd.DataFrame, n_planes: int, peak: int, end: int) -> dict[str, float]:
    """Per-plane changes of the partition statistics from the LC peak to the end, their plane
    means and sign counts."""
    planes = [f"plane{k}" for k in range(n_planes)]
    rows = records[records["split"].isin(planes) & records["step"].isin([peak, end])]
    table = rows.pivot_table(index=["split", "step"], columns="metric", values="value")
    table = table.reindex(columns=table.columns.union(PLANE_RATIOS))
    mean = _plane_mean(records, n_planes)
    numbers: dict[str, float] = {
        "lc_peak_step": float(peak),
        "regions_lc_peak": float(mean.loc[peak, "regions"]),
        "regions_end": float(mean.loc[end, "regions"]),
    }
    for key in PLANE_RATIOS:
        numbers[f"{key}_lc_peak"] = float(mean.loc[peak, key])
        numbers[f"{key}_end"] = float(mean.loc[end, key])
    if peak == end:
        numbers["planes_data_falls"] = numbers["planes_boundary_rises"] = 0.0
        numbers["planes_compared"] = 0.0
        return numbers
    change = {
        key: np.array([table.loc[(p, end), key] - table.loc[(p, peak), key] for p in planes])
        for key in ("near_data_density_ratio", "near_boundary_density_ratio")
    }
    finite = {k: v[np.isfinite(v)] for k, v in change.items()}
    numbers["planes_compared"] = float(len(finite["near_data_density_ratio"]))
    numbers["planes_data_falls"] = float((finite["near_data_density_ratio"] < 0).sum())
    numbers["planes_boundary_rises"] = float((finite["near_boundary_density_ratio"] > 0).sum())
    numbers["planes_boundary_compared"] = float(len(finite["near_boundary_density_ratio"]))
    return numbers


def sign_test(successes: int, trials: int) -> float:
    """One-sided p-value of ``successes`` of ``trials`` planes changing the predicted way
    when each is equally likely to go either way (binomial sign test); 1 with no trials."""
    if trials == 0:
        return 1.0
    return float(binomtest(successes, trials, 0.5, alternative="greater").pvalue)


def _predictions(
    per_seed: list[dict[str, float]], c: RegionMigrationConfig, seeds: list[int]
) -> list[Prediction]:
    checks: dict[str, list[verdict.Check]] = {"data": [], "boundary": []}
    for n in per_seed:
        for key, count, trials, word in (
            ("data", "planes_data_falls", "planes_compared", "falls"),
            ("boundary", "planes_boundary_rises", "planes_boundary_compared", "rises"),
        ):
            k, m = int(n[count]), int(n.get(trials, 0))
            p = sign_test(k, m)
            ratio = "near_data_density_ratio" if key == "data" else "near_boundary_density_ratio"
            checks[key].append(
                verdict.check(
                    p < SIGN_LEVEL,
                    f"{word} on {k} of {m} planes (sign test p = {p:.3g}); plane mean "
                    f"{n[f'{ratio}_lc_peak']:.3g} -> {n[f'{ratio}_end']:.3g}",
                    p,
                    margin=math.log10(SIGN_LEVEL / p) if p > 0 else math.inf,
                    why=f"the ratio {word} on only {k} of {m} planes (p = {p:.2g})"
                    if m
                    else "the LC peaks at the end: there is no second descent to compare",
                )
            )
    claim = (
        "Late in training (from the neighbourhood-LC peak, where the second descent starts, "
        "to the end) the vertex density within the 'near' radius of the {}, relative to the "
        "plane's mean density, {} on significantly more planes than not"
    )
    url, source = verdict.HUMAYUN, "Sec. 4 and Fig. 4 (region migration)"
    threshold = f"one-sided sign test over the {c.n_planes} planes at p < {SIGN_LEVEL:g}"
    return [
        verdict.decide(
            claim.format("three training points", "falls (regions leave the data)"),
            checks["data"],
            source=source,
            url=url,
            threshold=threshold,
            seeds=seeds,
        ),
        verdict.decide(
            claim.format("decision boundary", "rises (regions gather there)"),
            checks["boundary"],
            source=source,
            url=url,
            threshold=threshold,
            seeds=seeds,
        ),
    ]


def _boundary_sanity(per_seed: list[dict[str, float]], seeds: list[int]) -> Prediction:
    """The cross-check of the LC at decision-boundary points against training points at the
    end, over every seed: a check of the measurement, since it holds untrained as well."""
    parts, holds = [], []
    for seed, n in zip(seeds, per_seed, strict=True):
        on, off = n["lc_boundary_points"], n["lc_train_points"]
        err = math.hypot(n["lc_boundary_points_stderr"], n["lc_train_points_stderr"])
        holds.append(on - off > 2 * err)  # False when any of them is NaN
        parts.append(
            f"seed {seed}: LC {on:.3g} at {n['boundary_points']:.0f} decision-boundary points "
            f"vs {off:.3g} at training points (2 x stderr {2 * err:.2g})"
        )
    return verdict.sanity(
        "Cross-check: at the end, the neighbourhood LC at points on the decision boundary is "
        "above the LC at training points, at every seed. Not a prediction of training: it "
        "holds for an untrained network as well (tests/test_verdicts.py), so it checks the "
        "measurement, not region migration",
        all(holds),
        "; ".join(parts),
        source="Sec. 4 (regions concentrate at the decision boundary late in training)",
        url=verdict.HUMAYUN,
        threshold="2 standard errors of the difference of the two means",
    )


def _plane_mean(records: pd.DataFrame, n_planes: int) -> pd.DataFrame:
    """The partition statistics averaged over the planes: steps x metrics."""
    rows = records[records["split"].isin([f"plane{k}" for k in range(n_planes)])]
    mean = rows.pivot_table(index="step", columns="metric", values="value", aggfunc="mean")
    # a statistic that is NaN on every plane (no decision boundary in view) is kept, as NaN
    return mean.reindex(columns=mean.columns.union(PLANE_RATIOS))


def _draw_plane(
    ax: Axes, part: PlanePartition, segments: np.ndarray, near: float, title: str
) -> None:
    """One plane: its regions, decision boundary, the three training points and the 'near'
    radius around each."""
    assert part.marked_points is not None  # plane_through marks the points it passes through
    draw_plane(ax, part, points=part.marked_points, edge_width=0.08, segments=segments)
    marked = part.marked_points.cpu().numpy()
    radius = near * float(
        np.mean([np.linalg.norm(marked[i] - marked[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    )
    for centre in marked:
        ax.add_patch(MplCircle(centre, radius, fill=False, ls="--", lw=1.0, ec="0.1"))
    ax.grid(False)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)


def _plane_legend(fig: MplFigure, near: float, ncols: int = 2) -> None:
    legend = [
        Line2D([], [], ls="", marker="o", color="k", label="training points (3 classes)"),
        Line2D([], [], color="crimson", label="decision boundary"),
        Line2D([], [], color="k", lw=0.6, label="region edges"),
        Line2D(
            [], [], color="0.1", ls="--", label=f"'near' radius ({near:g} x mean point distance)"
        ),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=ncols)


def _grid_figure(
    shown: list[tuple[int, int, PlanePartition, np.ndarray]], near: float, ctx: RunContext
) -> Figure:
    planes = sorted({k for k, *_ in shown})
    steps = sorted({step for _, step, *_ in shown})
    fig, axes = new_figure(len(steps), len(planes), size=(2.4, 2.4))
    for k, step, part, segments in shown:
        row, col = planes.index(k), steps.index(step)
        ax = axes[row * len(steps) + col]
        _draw_plane(ax, part, segments, near, f"step {step}: {part.num_regions} regions")
        if col == 0:
            ax.set_ylabel(f"plane {k}: t")
        if row == len(planes) - 1:
            ax.set_xlabel("s (input units)")
    _plane_legend(fig, near)
    return ctx.figure(
        fig,
        "regions_grid.png",
        f"Exact linear regions of the network on the first {len(planes)} planes through three "
        "training points of different classes (black dots), one row per plane (coordinates s, "
        "t in input units along the plane), at step 0, the end of the first descent of the "
        "neighbourhood LC, its maximum, a step between the maximum and the end, and the end "
        "(every plane at the maximum and the end: see verdict_planes.png). Regions in random "
        "colours, region edges in black, decision boundary in red, the 'near' radius the vertex "
        "densities are measured within dashed. Region migration predicts that after the maximum "
        "the edges thin out around the points and crowd along the red boundary.",
    )


#: Planes per row of verdict_planes.png.
PLANES_PER_ROW = 5


def _planes_figure(
    planes: list[tuple[int, int, PlanePartition, np.ndarray]],
    peak: int,
    near: float,
    ctx: RunContext,
) -> Figure:
    ks = sorted({k for k, *_ in planes})
    steps = sorted({step for _, step, *_ in planes})
    ncols = min(PLANES_PER_ROW, len(ks))
    blocks = -(-len(ks) // ncols)  # rows of planes per step
    fig, axes = new_figure(ncols, blocks * len(steps), size=(1.8, 1.8))
    for ax in axes:
        ax.set_axis_off()
    for k, step, part, segments in planes:
        index, s = ks.index(k), steps.index(step)
        row, col = s * blocks + index // ncols, index % ncols
        ax = axes[row * ncols + col]
        ax.set_axis_on()
        _draw_plane(ax, part, segments, near, f"plane {k}, step {step}")
    _plane_legend(fig, near, ncols=2 if ncols > 2 else 1)
    return ctx.figure(
        fig,
        "verdict_planes.png",
        f"Every plane the verdicts use ({len(ks)}), at the LC peak (step {peak}, first "
        f"{'row' if blocks == 1 else f'{blocks} rows'}) and at the end (the rest): regions in "
        "random colours, decision boundary in red, the three training points in black with the "
        "'near' radius dashed; axes in input units along the plane.",
    )


def _stats_figure(
    records: pd.DataFrame, n_planes: int, phases: dict[str, float], ctx: RunContext
) -> Figure:
    mean = _plane_mean(records, n_planes)
    fig, axes = new_figure(3, 1, size=(4.0, 4.2))
    x = mean.index.to_numpy() + 1
    common.plot_series(axes[0], common.series(records, "neighborhood", "train"), "train points")
    axes[0].set_ylabel("neighbourhood LC (neurons)")
    ax = axes[1]
    ax.plot(x, mean["near_data_density_ratio"], "o-", label="near training points")
    ax.plot(x, mean["near_boundary_density_ratio"], "s-", label="near decision boundary")
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_ylabel("vertex density ratio")
    ax = axes[2]
    ax.plot(x, mean["regions"], "o-")
    ax.set_ylabel("regions per plane")
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
        "end of the first LC descent / LC peak. Migration: after the red line the first "
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
    key_numbers={
        "lc_peak_step": (
            "step of the neighbourhood-LC peak (the partitions' first checkpoint)",
            "steps",
        ),
        "regions_*": ("linear regions per plane at the {0} (mean over planes)", "regions"),
        "near_data_density_ratio_*": (
            "vertex density near the training points over the plane's density, at the {0}",
            "ratio",
        ),
        "near_boundary_density_ratio_*": (
            "vertex density near the decision boundary over the plane's density, at the {0}",
            "ratio",
        ),
        "density_*": ("region vertices per unit area of the plane at the {0}", "1 / input unit^2"),
        "planes_compared": ("planes with a finite near-data change", "planes"),
        "planes_data_falls": ("planes whose near-data density ratio falls", "planes"),
        "planes_boundary_rises": ("planes whose near-boundary density ratio rises", "planes"),
        "planes_boundary_compared": ("planes with a finite near-boundary change", "planes"),
        "boundary_points": (
            "decision-boundary points whose neighbourhood LC is measured",
            "points",
        ),
        "lc_boundary_points": ("neighbourhood LC at decision-boundary points", "neurons"),
        "lc_train_points": ("neighbourhood LC at training points", "neurons"),
        "lc_*_points_stderr": ("standard error of the neighbourhood LC at {0} points", "neurons"),
        "phase_start": ("start of the first LC descent", "steps"),
        "phase_*_end": ("end of the LC {0}", "steps"),
        "phase_end": ("end of the second LC descent", "steps"),
        "phase_weakest_z": ("weakest of the three phase changes, in standard errors", "z-score"),
        "phase_*_stderr": ("standard error of the LC {0} (paired over points)", "neurons"),
        "phase_*_z": ("LC {0} over its standard error", "z-score"),
        "phase_*": ("neighbourhood-LC {0}, paired over points", "neurons"),
    },
)
