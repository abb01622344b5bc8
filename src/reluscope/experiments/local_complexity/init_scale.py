"""``init-scale``: lazy vs rich training. How far the local complexity moves from its value at
initialisation, against the initialisation scale and the width (Patel & Montufar, Prop. 17 /
App. A.10; spec §2 item 8, §5 prediction 14)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator
from scipy.stats import spearmanr

from reluscope.experiments import Experiment, ExperimentConfig, Figure, Outcome, Prediction
from reluscope.experiments.local_complexity import common
from reluscope.experiments.runner import RunContext
from reluscope.report.figures import new_figure, save_png
from reluscope.train import Schedule, TrainConfig, probes

SOURCE = "spec local_complexity.md §5, prediction 14 (Prop. 17, App. A.10)"
#: Spearman correlation from which LC change counts as following the parameter movement.
RHO_MIN = 0.5


class InitScaleConfig(ExperimentConfig):
    """A grid of widths and initialisation scales alpha (every parameter of a He-initialised
    MLP multiplied by alpha), each trained with plain SGD at the same learning rate. Large
    alpha and large width give the lazy (kernel) regime, small alpha and small width the rich
    one. Quick: scikit-learn digits, 2 hidden layers. Paper: 1000 MNIST images, widths up to
    4096, 1e4 steps."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 1000,
        "n_test": 1000,
        "widths": [64, 256, 1024, 4096],
        "init_scales": [0.25, 0.5, 1.0, 2.0, 4.0],
        "lr": 0.02,
        "steps": 10_000,
        "n_points": 1000,
    }

    data: str = Field("digits", description="data spec; mnist/cifar10 are read from data_dir")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10)
    n_test: int = Field(500, ge=10)
    depth: int = Field(2, ge=1, description="hidden layers")
    widths: list[int] = Field([32, 128, 512], min_length=2, description="hidden widths")
    init_scales: list[float] = Field([0.5, 1.0, 2.0, 4.0], min_length=2, description="alpha")
    lr: float = Field(0.05, gt=0, description="SGD learning rate")
    batch_size: int = Field(64, ge=1)
    steps: int = Field(1000, ge=1)
    n_points: int = Field(256, ge=8, description="training points LC is measured on")
    sigma: float = Field(0.01, gt=0, description="LC bias-noise scale")

    @field_validator("widths", "init_scales")
    @classmethod
    def _positive_distinct(cls, values: list) -> list:
        if any(v <= 0 for v in values) or len(set(values)) != len(values):
            raise ValueError("must be distinct and > 0")
        return sorted(values)


def run(config: InitScaleConfig, ctx: RunContext) -> Outcome:
    c = config
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    schedule = Schedule(frozenset({0, c.steps}))
    frames, rows = [], []
    for width in c.widths:
        for alpha in c.init_scales:
            name = f"width_{width}_alpha_{alpha:g}"

            def build(width: int = width) -> torch.nn.Module:
                dim, out = train.x[0].numel(), common.classes(train)
                return common.paper_mlp(dim, [width] * c.depth, out, math.sqrt(2), c.seed)

            train_config = TrainConfig(
                steps=c.steps,
                batch_size=c.batch_size,
                optimizer="sgd",
                lr=c.lr,
                init_scale=alpha,
                loss="ce",
                device=c.device,
                seed=c.seed,
                checkpoint_every=common.checkpoint_every(c.steps),
            )
            # the same noise draws at both steps (seed fixed), so the change is not noise
            probe_list = [
                probes.accuracy_loss(),
                probes.local_complexity(
                    c.sigma, splits=("train",), n_points=c.n_points, seed=c.seed
                ),
            ]
            records, model = common.train_run(
                ctx, name, build(), train, test, train_config, probe_list, schedule
            )
            frames.append(records.assign(width=width, init_scale=alpha))
            rows.append(_summary(records, build(), model, alpha, width, c.steps))
    table = pd.DataFrame(rows)
    records = pd.concat(frames, ignore_index=True)
    extra = pd.DataFrame(
        [
            {
                "run": f"width_{r.width}_alpha_{r.init_scale:g}",
                "step": c.steps,
                "metric": m,
                "layer": None,
                "split": None,
                "value": getattr(r, m),
                "stderr": math.nan,
                "width": r.width,
                "init_scale": r.init_scale,
            }
            for r in table.itertuples()
            for m in ("param_change", "lc_change")
        ]
    )
    records = pd.concat([records, extra], ignore_index=True)
    figure = _figure(table, ctx)
    return _outcome(table, records, figure)


def _summary(
    records: pd.DataFrame,
    init: torch.nn.Module,
    model: torch.nn.Module,
    alpha: float,
    width: int,
    steps: int,
) -> dict[str, float]:
    """Relative LC change |LC_T - LC_0| / LC_0 and relative parameter change
    ||theta_T - theta_0|| / ||theta_0|| of one run (theta_0 = alpha times the initial weights)."""
    lc = common.series(records, "lc", "train")["value"]
    theta0 = alpha * torch.cat([p.detach().reshape(-1).double() for p in init.parameters()])
    theta = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    acc = common.series(records, "accuracy", "train")["value"]
    return {
        "width": width,
        "init_scale": alpha,
        "lc_init": float(lc.loc[0]),
        "lc_final": float(lc.loc[steps]),
        "lc_change": float(abs(lc.loc[steps] - lc.loc[0]) / lc.loc[0]),
        "param_change": float((theta - theta0).norm() / theta0.norm()),
        "train_accuracy": float(acc.loc[steps]),
    }


def _outcome(table: pd.DataFrame, records: pd.DataFrame, figure: Figure) -> Outcome:
    lazy = table[(table.width == table.width.max()) & (table.init_scale == table.init_scale.max())]
    rich = table[(table.width == table.width.min()) & (table.init_scale == table.init_scale.min())]
    lazy, rich = lazy.iloc[0], rich.iloc[0]
    rho = float(spearmanr(table["param_change"], table["lc_change"]).statistic)
    numbers = {
        "lc_change_lazy": lazy.lc_change,
        "lc_change_rich": rich.lc_change,
        "param_change_lazy": lazy.param_change,
        "param_change_rich": rich.param_change,
        "spearman_param_vs_lc_change": rho,
        **{
            f"lc_change.width_{r.width}_alpha_{r.init_scale:g}": r.lc_change
            for r in table.itertuples()
        },
    }
    lazy_name = f"width {int(lazy.width)}, alpha {lazy.init_scale:g}"
    rich_name = f"width {int(rich.width)}, alpha {rich.init_scale:g}"
    predictions = [
        Prediction(
            "Lazy training changes LC less: the relative LC change |LC_T - LC_0| / LC_0 of the "
            "lazy corner (widest, largest init scale) is smaller than that of the rich corner "
            "(narrowest, smallest init scale)",
            bool(lazy.lc_change < rich.lc_change),
            f"lazy ({lazy_name}): {lazy.lc_change:.3f} (parameters moved "
            f"{lazy.param_change:.3f} relative); rich ({rich_name}): {rich.lc_change:.3f} "
            f"(moved {rich.param_change:.3f})",
            SOURCE,
        ),
        Prediction(
            "LC moves as far as the parameters do: across the grid, the Spearman correlation "
            f"between relative parameter change and relative LC change is >= {RHO_MIN}",
            bool(rho >= RHO_MIN),
            f"Spearman rho = {rho:.2f} over {len(table)} runs",
            SOURCE,
        ),
    ]
    return Outcome(
        records=records,
        figures=[figure],
        numbers=numbers,
        predictions=predictions,
        summary=(
            f"Relative LC change {rich.lc_change:.2f} in the rich corner ({rich_name}) vs "
            f"{lazy.lc_change:.2f} in the lazy corner ({lazy_name}); Spearman correlation with "
            f"the parameter movement {rho:.2f}."
        ),
    )


def _figure(table: pd.DataFrame, ctx: RunContext) -> Figure:
    fig, axes = new_figure(2, 1, size=(4.6, 3.6))
    ax = axes[0]
    grid = table.pivot(index="width", columns="init_scale", values="lc_change")
    image = ax.imshow(grid.to_numpy(), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"{a:g}" for a in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(w) for w in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel("init scale alpha")
    ax.set_ylabel("hidden width")
    fig.colorbar(image, ax=ax, label="|LC_T - LC_0| / LC_0")
    ax = axes[1]
    for width, group in table.groupby("width"):
        ax.scatter(group["param_change"], group["lc_change"], label=f"width {width}", s=24)
        for r in group.itertuples():
            ax.annotate(f"{r.init_scale:g}", (r.param_change, r.lc_change), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("||theta_T - theta_0|| / ||theta_0||")
    ax.set_ylabel("|LC_T - LC_0| / LC_0")
    ax.legend(fontsize="small")
    save_png(fig, ctx.path("init_scale.png"))
    return Figure(
        "init_scale.png",
        "Left: relative change of the local complexity at the training points between "
        "initialisation and the end of training, for every hidden width and init scale alpha "
        "(same SGD learning rate and steps; LC measured with the same noise draws at both "
        "steps). Right: the same against the relative distance the parameters moved, points "
        "labelled by alpha. Lazy runs (wide, large alpha) sit at the bottom left: parameters "
        "and LC barely move; rich runs (narrow, small alpha) move both.",
    )


EXPERIMENT = Experiment(
    name="init-scale",
    title="Lazy vs rich training: how far LC moves from initialisation",
    paper="local_complexity",
    description=(
        "Trains MLPs over a grid of widths and initialisation scales with SGD and compares "
        "the relative change in LC from initialisation: close to zero in the lazy (kernel) "
        "regime, large when features are learned."
    ),
    config=InitScaleConfig,
    run=run,
    order=3,
)
