"""``bound-tracking``: every bound over training and across a sweep of label-noise levels and
dense / factorised networks, and how well each ranks the networks by their generalisation gap
(Kendall's tau, as in Jiang et al. 2020; spec low_rank_bounds.md §6.1 item 5 and §6.2
prediction 4).

A fraction p of the labels, of the training and of the test points alike (so that the test
error estimates the risk the bounds bound), is moved to another class at random. Each
bias-free MLP, dense or with every layer factorised at rank r, is trained with Adam; at
log-spaced steps a probe runs :func:`reluscope.bounds.compare` on the whole training sample at
the margin gamma = a quantile of the positive training margins (a normalised margin; the post
hoc bound pays for choosing it). The generalisation gap is test error - train error.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.lines import Line2D
from pydantic import Field, field_validator

from reluscope.bounds import BOUNDS
from reluscope.data import Dataset
from reluscope.experiments import (
    Experiment,
    ExperimentConfig,
    Figure,
    Outcome,
    Prediction,
    RunContext,
    verdict,
)
from reluscope.experiments.config import training
from reluscope.experiments.local_complexity.common import classes, load_splits
from reluscope.experiments.low_rank_bounds import common
from reluscope.figures import new_figure
from reluscope.train import (
    Probe,
    SpectralClip,
    TrainConfig,
    Trainer,
    log_steps,
    probes,
)

#: Train error within this of its final value counts as stabilised (for the tau over steps).
STABLE = 0.05
#: The Kendall-tau predictions need tau > 0 at this one-sided significance level.
TAU_LEVEL = 0.05
VARIANTS = ("dense", "low-rank")
LABELS = {
    "low-rank": "chain rule",
    "low-rank-post-hoc": "chain rule, post hoc",
    "grs": "GRS",
    "bft": "BFT",
    "nbs": "NBS",
    "nts": "NTS",
}


class BoundTrackingConfig(ExperimentConfig):
    """Quick: scikit-learn digits (500 training points), bias-free 64-128-128-10 MLPs, dense
    and with every layer of rank 8 (the output layer at rank C), both with their spectral norms
    clipped at B = 2, label noise 0-40%, 1200 Adam steps, bounds at about 10 log-spaced steps. Paper scale (the paper has no experiments, spec §5): MNIST (10^4
    training points), 784-512-512-10, rank 16 (10 in the output layer), noise up to 60%,
    2 x 10^4 steps, 30 steps probed."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 10_000,
        "n_test": 10_000,
        "hidden": [512, 512],
        "rank": 16,
        "noise_levels": [0.0, 0.1, 0.2, 0.4, 0.6],
        "train.steps": 20_000,
        "train.lr": 1e-3,
        "train.batch_size": 128,
        "n_checkpoints": 30,
        "seeds": 5,
    }

    data: str = Field("digits", description="data spec; mnist/cifar10 are read from data_dir")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(500, ge=10, description="training points (the bounds' sample)")
    n_test: int = Field(1000, ge=10, description="test points")
    hidden: list[int] = Field([128, 128], min_length=1, description="hidden widths")
    rank: int = Field(8, ge=1, description="rank of every layer of the low-rank variant")
    variants: list[Literal["dense", "low-rank"]] = Field(
        ["dense", "low-rank"], min_length=1, description="dense and/or factorised networks"
    )
    noise_levels: list[float] = Field(
        [0.0, 0.1, 0.2, 0.3, 0.4], min_length=1, description="fractions of labels changed"
    )
    train: TrainConfig = Field(
        TrainConfig(optimizer="adam", lr=2e-3, batch_size=64, steps=1200, loss="ce"),
        description="Adam training of every network; seed and device are the experiment's",
    )
    n_checkpoints: int = Field(10, ge=2, description="log-spaced steps where bounds are taken")
    margin_quantile: float = Field(
        0.1, gt=0, lt=1, description="gamma = this quantile of the positive training margins"
    )
    delta: float = Field(0.05, gt=0, lt=1, description="the bounds hold w.p. >= 1 - delta")
    C1: float = Field(1.0, gt=0, description="Maurer's chaining constant C1 (unverified)")
    C2: float = Field(1.0, ge=0, description="Maurer's chaining constant C2 (unverified)")
    max_norm: float | None = Field(
        2.0,
        gt=0,
        description="B: every ||W_l||_2 of both variants clipped at B (None: no clipping)",
    )
    clip_every: int = Field(10, ge=1, description="steps between spectral-norm clippings")
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")

    @field_validator("noise_levels")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        if any(not 0 <= v < 1 for v in values) or len(set(values)) != len(values):
            raise ValueError("noise levels must be distinct fractions in [0, 1)")
        return sorted(values)

    @field_validator("variants")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("variants must be distinct")
        return values


def noisy_labels(data: Dataset, fraction: float, num_classes: int, seed: int) -> Dataset:
    """``data`` with round(fraction n) labels, at seeded random points, moved to another class
    (y + k mod C, k uniform in 1..C-1)."""
    gen = torch.Generator().manual_seed(seed)
    count = round(fraction * len(data))
    index = torch.randperm(len(data), generator=gen)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=gen)
    y = data.labels.clone()
    y[index] = (y[index] + shift) % num_classes
    return Dataset(data.x, y, data.name, {**data.info, "label_noise": fraction})


def bounds_probe(config: BoundTrackingConfig) -> Probe:
    """The bounds probe (:func:`reluscope.train.probes.bounds`) on the whole training split in
    float64 (factorised layers merged) at gamma = ``margin_quantile`` of the positive training
    margins: the numbers ``common.BOUND_METRICS`` of every bound (column ``bound``) and
    "margin" (gamma); nothing at a step with no correctly classified training point."""
    return probes.bounds(
        margin_quantile=config.margin_quantile,
        numbers=common.BOUND_METRICS,
        delta=config.delta,
        C1=config.C1,
        C2=config.C2,
        biases="error",
    )


def run(config: BoundTrackingConfig, ctx: RunContext) -> Outcome:
    c = config
    seeds = verdict.seed_configs(c)
    frames = [_run_seed(s, ctx).assign(seed=s.seed) for s in seeds]
    per_seed = []
    for frame in frames:
        table = gap_table(frame)
        taus = tau_table(table)
        per_seed.append((_numbers(frame, table, taus, c), table, taus))
    numbers, table, taus = per_seed[0]
    return Outcome(
        records=pd.concat(frames, ignore_index=True),
        figures=[_curves_figure(ctx, table, c), _tau_figure(ctx, taus)],
        numbers=numbers,
        predictions=_predictions([n for n, _, _ in per_seed], c, [s.seed for s in seeds]),
        summary=(
            f"Seed {c.seed}: {len(c.variants) * len(c.noise_levels)} networks (label noise "
            f"{c.noise_levels}, {', '.join(c.variants)}): final generalisation gaps from "
            f"{numbers['gap_final_min']:.3f} to {numbers['gap_final_max']:.3f}; Kendall tau of "
            f"the chain-rule bound with the gap {numbers['tau_final.low-rank']:.2f} across the "
            f"final networks and {numbers['tau_all.low-rank']:.2f} across the probed steps "
            f"after training stabilised (GRS: {numbers['tau_final.grs']:.2f} and "
            f"{numbers['tau_all.grs']:.2f})"
            + "".join(
                f"; {numbers[f'tau_final_{v}.low-rank']:.2f} within the {v} networks"
                for v in c.variants
                if f"tau_final_{v}.low-rank" in numbers
            )
            + "."
        ),
    )


def _run_seed(c: BoundTrackingConfig, ctx: RunContext) -> pd.DataFrame:
    train, test = load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    num_classes = classes(train)
    widths = (train.x[0].numel(), *c.hidden, num_classes)
    # a common spectral clip, so that dense and factorised nets compare at equal norm bounds
    clip = [] if c.max_norm is None else [SpectralClip(c.max_norm, c.clip_every)]
    frames = []
    for noise in c.noise_levels:
        noisy_train = noisy_labels(train, noise, num_classes, c.seed + 1)
        noisy_test = noisy_labels(test, noise, num_classes, c.seed + 2)
        for variant in c.variants:
            name = f"{variant}_noise_{noise:g}"
            ctx.say(f"bound-tracking: seed {c.seed}, {name}")
            rank = c.rank if variant == "low-rank" else None
            folder = name if c.seeds == 1 else f"seed_{c.seed}/{name}"
            trainer = Trainer(
                common.bias_free_mlp(widths, rank, c.seed, output_rank=num_classes),
                noisy_train,
                noisy_test,
                training(c, checkpoint_every=max(1000, c.train.steps // 10)),
                probes=[probes.accuracy_loss(), bounds_probe(c)],
                run_dir=ctx.subdir(folder),
                run_name=name,
                progress=ctx.progress,
                default_schedule=log_steps(c.train.steps, c.n_checkpoints),
                callbacks=clip,
            )
            frames.append(trainer.fit().assign(variant=variant, noise=noise))
    return pd.concat(frames, ignore_index=True)


def gap_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step) with bounds: variant, noise, train and test error, gap = test
    error - train error (rounded to 1e-12), gamma, and each bound's log10 value (columns named after the
    bounds)."""
    acc = records[records["metric"] == "accuracy"].pivot_table(
        index=["run", "step"], columns="split", values="value"
    )
    values = records[records["metric"] == "log10_bound"].pivot_table(
        index=["run", "step"], columns="bound", values="value"
    )
    margin = records[records["metric"] == "margin"].set_index(["run", "step"])["value"]
    tags = records.drop_duplicates("run").set_index("run")[["variant", "noise"]]
    table = values.join(acc, how="inner").join(margin.rename("margin"))
    table["train_error"] = 1 - table["train"]
    table["test_error"] = 1 - table["test"]
    # rounded so that gaps equal in exact arithmetic tie in Kendall's tau
    table["gap"] = (table["train"] - table["test"]).round(12)
    table = table.drop(columns=["train", "test"]).reset_index()
    return table.join(tags, on="run")


def stabilised(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` after training stabilised: step > 0 and train error within
    STABLE of its final value in the same run (before that the gap is near 0 while the bound
    is huge, a pre-fit regime that would dominate a rank correlation)."""
    last = table.loc[table.groupby("run")["step"].idxmax()].set_index("run")["train_error"]
    final_error = table["run"].map(last)
    keep = (table["step"] > 0) & (table["train_error"] <= final_error + STABLE)
    return table[keep]


def tau_table(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau of each bound's log10 value with the gap (rows: bounds): across the final
    networks (``final``), across the probed steps after training stabilised (``all``, see
    :func:`stabilised`), and across the final networks of one variant (``final VARIANT``,
    over its noise levels); ``final p`` and ``all p`` are the one-sided p-values of the first
    two (:func:`common.kendall_p`)."""
    final = table[table["step"] == table["step"].max()]
    stable = stabilised(table)
    bounds = [b for b in BOUNDS if b in table.columns]
    columns = {
        "final": [common.kendall_tau(final[b], final["gap"]) for b in bounds],
        "all": [common.kendall_tau(stable[b], stable["gap"]) for b in bounds],
        "final p": [common.kendall_p(final[b], final["gap"]) for b in bounds],
        "all p": [common.kendall_p(stable[b], stable["gap"]) for b in bounds],
    }
    for variant, group in final.groupby("variant"):
        columns[f"final {variant}"] = [common.kendall_tau(group[b], group["gap"]) for b in bounds]
    return pd.DataFrame(columns, index=bounds)


def _numbers(
    records: pd.DataFrame, table: pd.DataFrame, taus: pd.DataFrame, c: BoundTrackingConfig
) -> dict[str, float]:
    final = table[table["step"] == c.train.steps]
    numbers: dict[str, float] = {
        "gap_final_min": float(final["gap"].min()),
        "gap_final_max": float(final["gap"].max()),
        "points_all": float(len(stabilised(table))),
    }
    for bound, row in taus.iterrows():
        numbers[f"tau_final.{bound}"] = float(row["final"])
        numbers[f"tau_all.{bound}"] = float(row["all"])
    for scope in ("final", "all"):
        numbers[f"p_{scope}.low-rank"] = float(taus.loc["low-rank", f"{scope} p"])
    if len(c.noise_levels) > 1:
        for variant in c.variants:
            numbers[f"tau_final_{variant}.low-rank"] = float(
                taus.loc["low-rank", f"final {variant}"]
            )
    for _, row in final.iterrows():
        key = f"{row['variant']}_noise_{row['noise']:g}"
        numbers[f"gap.{key}"] = float(row["gap"])
        numbers[f"log10_bound_low_rank.{key}"] = float(row["low-rank"])
    if set(VARIANTS) <= set(c.variants):
        parts = _parts(records, c.train.steps)
        difference = parts.loc["low-rank"] - parts.loc["dense"]
        numbers["rank_factor_difference"] = float(difference["log10_rank_factor"].mean())
        numbers["norms_over_margin_difference"] = float(difference["norms_over_margin"].mean())
    return numbers


def _parts(records: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per (variant, noise), at the last step: the chain-rule bound's log10 rank factor and
    log10 of prod_l ||W_l||_2 / gamma (the norm product over the margin)."""
    last = records[records["step"] == steps]
    rows = last[(last["bound"] == "low-rank") | (last["metric"] == "margin")]
    wide = rows.pivot_table(index=["variant", "noise"], columns="metric", values="value")
    wide["norms_over_margin"] = wide["log10_norm_product"] - np.log10(wide["margin"])
    return wide[["log10_rank_factor", "norms_over_margin"]]


def _predictions(
    per_seed: list[dict[str, float]], c: BoundTrackingConfig, seeds: list[int]
) -> list[Prediction]:
    url = verdict.PINTO
    predictions = []
    if set(VARIANTS) <= set(c.variants):
        checks = []
        for n in per_seed:
            pairs = [
                (
                    n[f"log10_bound_low_rank.low-rank_noise_{p:g}"],
                    n[f"log10_bound_low_rank.dense_noise_{p:g}"],
                )
                for p in c.noise_levels
            ]
            smaller = sum(low < dense for low, dense in pairs)
            checks.append(
                verdict.check(
                    smaller == len(pairs),
                    f"smaller at {smaller} of {len(pairs)} noise levels; log10 bounds "
                    "(low-rank, dense): "
                    + ", ".join(f"({a:.2f}, {b:.2f})" for a, b in pairs)
                    + f"; factorised minus dense: log10 rank factor "
                    f"{n['rank_factor_difference']:+.2f}, log10 prod ||W_l||_2 / gamma "
                    f"{n['norms_over_margin_difference']:+.2f}",
                    *[v for pair in pairs for v in pair],
                    margin=min(dense - low for low, dense in pairs),
                    why=f"the factorised network's bound is smaller at only {smaller} of "
                    f"{len(pairs)} noise levels: its norms over margin are "
                    f"{n['norms_over_margin_difference']:+.2f} (log10) against a rank-factor "
                    f"saving of {n['rank_factor_difference']:+.2f}",
                )
            )
        predictions.append(
            verdict.decide(
                f"Low rank helps the bound: at every noise level the network factorised at rank "
                f"{c.rank} (output layer at rank C) ends with a smaller chain-rule bound than "
                "the dense one. The paper compares networks of equal margins and spectral "
                "norms; here both are clipped at the same spectral norm B (max_norm), so "
                "what differs is their rank factor and their margins",
                checks,
                source="Sec. 3 (low-rank layers give smaller rank factors)",
                url=url,
                threshold="strictly smaller at every noise level (no band)",
                seeds=seeds,
            )
        )
    for scope, what, independence in (
        ("final", "the final networks of the sweep", "the networks are trained independently"),
        (
            "all",
            "the probed steps after training stabilised (step > 0, train error within "
            f"{STABLE:g} of its final value)",
            "the steps of one run are not independent, so this p-value is optimistic; the "
            "pre-fit steps are left out",
        ),
    ):
        checks = []
        for n in per_seed:
            tau, p = n[f"tau_{scope}.low-rank"], n[f"p_{scope}.low-rank"]
            count = n["points_all"] if scope == "all" else len(c.variants) * len(c.noise_levels)
            others = ", ".join(
                f"{LABELS[b]} {n[f'tau_{scope}.{b}']:.2f}" for b in BOUNDS if b != "low-rank"
            )
            checks.append(
                verdict.check(
                    tau > 0 and p < TAU_LEVEL,
                    f"tau = {tau:.3f} (one-sided p = {p:.2g}) over {int(count)} "
                    f"{'points' if scope == 'all' else 'networks'}; other bounds: {others}",
                    tau,
                    p,
                    margin=math.log10(TAU_LEVEL / p) if p > 0 else math.inf,
                    why=f"the chain-rule bound's Kendall tau with the gap is {tau:.3f} "
                    f"(p = {p:.2g}): no better than a random order at p < {TAU_LEVEL:g}",
                )
            )
        predictions.append(
            verdict.decide(
                f"The chain-rule bound ranks {what} by generalisation gap: Kendall tau > 0, "
                f"beyond chance (one-sided p < {TAU_LEVEL:g})",
                checks,
                source="Sec. 3-4: a bound that tracks generalisation (an empirical question, "
                "tested as in Jiang et al. 2020)",
                url=url,
                threshold=f"Kendall's test of tau > 0 at the one-sided level {TAU_LEVEL:g} "
                f"(better than a random order beyond chance); {independence}",
                seeds=seeds,
            )
        )
    return predictions


def _curves_figure(ctx: RunContext, table: pd.DataFrame, c: BoundTrackingConfig) -> Figure:
    fig, axes = new_figure(3, 1, size=(3.0, 3.0))
    colours = colormaps["viridis"]
    top = max(max(c.noise_levels), 1e-12)
    styles = {"dense": "-", "low-rank": "--"}
    for (variant, noise), run in table.groupby(["variant", "noise"]):
        run = run.sort_values("step")
        colour = colours(0.85 * noise / top)
        label = f"{variant}, noise {noise:g}"
        axes[0].plot(run["step"] + 1, run["low-rank"], styles[variant], color=colour, label=label)
        axes[1].plot(run["step"] + 1, run["gap"], styles[variant], color=colour, label=label)
    for ax, ylabel in zip(axes[:2], ("log10 chain-rule bound", "generalisation gap"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("step + 1")
        ax.set_ylabel(ylabel)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4))
    ax = axes[2]
    final = table[table["step"] == c.train.steps]
    markers = {"dense": "o", "low-rank": "^"}
    for bound, colour in zip(
        ("low-rank", "grs", "bft", "nbs"), ("C0", "C1", "C2", "C3"), strict=True
    ):
        for variant, group in final.groupby("variant"):
            legend = LABELS[bound] if variant == final["variant"].iloc[0] else None
            ax.plot(group["gap"], group[bound], markers[variant], ms=4, color=colour, label=legend)
    ax.set_xlabel("final generalisation gap")
    ax.set_ylabel("final log10 bound")
    shapes = [
        Line2D([], [], ls="", marker=markers[v], color="0.3", ms=4, label=v)
        for v in final["variant"].unique()
    ]
    ax.legend(handles=ax.get_legend_handles_labels()[0] + shapes, ncols=2, fontsize="small")
    return ctx.figure(
        fig,
        "bound_tracking.png",
        "Bias-free MLPs trained on labels of which a fraction (colour, 0 = dark) was moved to "
        f"another class, dense (solid) or with every layer of rank {c.rank} (dashed). Left: "
        "log10 of the chain-rule bound on the test error over training (at gamma = the "
        f"{c.margin_quantile:g} quantile of the positive training margins). Middle: the "
        "generalisation gap (test error - train error, the test labels noisy alike). Right: "
        "each final network's log10 bound against its gap, for four of the bounds (circles: "
        "dense, triangles: factorised); a bound that tracks generalisation rises from left to "
        "right.",
    )


def _tau_figure(ctx: RunContext, taus: pd.DataFrame) -> Figure:
    fig, axes = new_figure(1, 1, size=(5.0, 3.4))
    ax = axes[0]
    x = np.arange(len(taus))
    ax.bar(x - 0.2, taus["final"], 0.4, label="final networks")
    ax.bar(x + 0.2, taus["all"], 0.4, label="probed steps after training stabilised")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x, [LABELS[b] for b in taus.index], rotation=25, ha="right")
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Kendall tau with the gap")
    ax.legend()
    return ctx.figure(
        fig,
        "kendall_tau.png",
        "Kendall's tau-b between each bound (log10) and the generalisation gap, across the "
        "final networks of the sweep and across the probed steps of every run after its training stabilised: +1 when the "
        "bound orders the networks exactly as their gaps, 0 when unrelated (Jiang et al. 2020). "
        "A bound that falls early in training while the gap grows (left panel of the other "
        "figure) gets a low or negative tau across steps.",
    )


EXPERIMENT = Experiment(
    name="bound-tracking",
    title="Bounds over training and across label noise, against the generalisation gap",
    paper="low_rank_bounds",
    description=(
        "Trains dense and factorised bias-free MLPs at several label-noise levels, takes every "
        "bound at log-spaced steps with a probe, and reports each bound's Kendall tau with the "
        "generalisation gap, across the final networks and over training."
    ),
    config=BoundTrackingConfig,
    run=run,
    order=4,
    key_numbers={
        "gap_final_*": (
            "{0} generalisation gap (test - train error) of the final networks",
            "fraction",
        ),
        "points_all": ("(network, step) points after training stabilised", "points"),
        "tau_final.*": ("Kendall tau of the {0} bound with the gap, final networks", "tau"),
        "tau_all.*": ("Kendall tau of the {0} bound with the gap, all stabilised points", "tau"),
        "p_final.low-rank": ("one-sided p-value of the low-rank bound's final tau", "p-value"),
        "p_all.low-rank": ("one-sided p-value of the low-rank bound's tau over steps", "p-value"),
        "tau_final_*.low-rank": (
            "Kendall tau of the low-rank bound with the gap within the {0} networks",
            "tau",
        ),
        "gap.*_noise_*": ("gap of the {0} network at label noise {1}", "fraction"),
        "log10_bound_low_rank.*_noise_*": (
            "log10 low-rank bound of the {0} network at label noise {1}",
            "log10",
        ),
        "rank_factor_difference": (
            "log10 rank factor, factorised minus dense networks (mean over noise levels)",
            "log10",
        ),
        "norms_over_margin_difference": (
            "log10 (norm product / margin), factorised minus dense networks",
            "log10",
        ),
    },
)
