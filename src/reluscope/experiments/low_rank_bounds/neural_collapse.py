"""``neural-collapse``: an MLP trained into the terminal phase of training (TPT: 100 % train
accuracy, then more cross-entropy steps with weight decay), with neural collapse NC1-NC4, the
ranks of the weights and the collapse-aware low-rank bound tracked at log-spaced steps (spec
``low_rank_bounds.md`` §4, §6.1 item 8, §6.2 item 5).

One run: a bias-free ReLU MLP (so it lies in the bounds' class as it is) trained by SGD with
momentum and weight decay on a labelled data set (quick: 500 scikit-learn digits; paper: MNIST
from ``data_dir``), inputs standardised with the training split's per-feature mean and std. At
each measured step, on the training points: NC1-NC4 at every layer
(:func:`reluscope.neural_collapse`), per weight layer the numerical rank (singular values above
``rank_rtol`` sigma_1), stable and effective rank, spectral norm and the share of ||W||_F^2
beyond the top C singular values, and the post hoc low-rank bound of the network ("plain") and
its collapse-aware form (:func:`reluscope.bounds.collapse.collapse_aware`, best split), at the
margin gamma = the ``margin_quantile`` quantile of the positive training margins.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from pydantic import Field

from reluscope.bounds import default_margin
from reluscope.bounds.collapse import collapse_aware
from reluscope.data import Dataset, load_data, split, subsample
from reluscope.errors import InputError
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
from reluscope.figures import log_axis, new_figure
from reluscope.measures.neural_collapse import neural_collapse
from reluscope.measures.weight_ranks import LayerStats, weight_ranks
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import trace
from reluscope.nets.zoo import mlp
from reluscope.records import OUTPUT_LAYER, record
from reluscope.train import Probe, ProbeContext, TrainConfig, Trainer, log_steps, probes

NC1_DROP = 10.0  # NC1 falls by at least an order of magnitude over the TPT
INTERPOLATION = 0.99  # the TPT is anchored at the first step with train accuracy >= this
NC4_TOLERANCE = 0.01  # nearest class mean disagrees with the network on <= 1 % of points
NC_METRICS = (
    "nc1",
    "nc1_trace",
    "cdnv",
    "nc2_equinorm",
    "nc2_equiangular",
    "nc2_maxangle",
    "nc2_etf",
    "w_etf",
    "nc3",
    "nc4",
    "ncc_error",
    "means_rank",
)
RANK_METRICS = ("numerical_rank", "stable_rank", "effective_rank", "spectral_norm")


class NeuralCollapseConfig(ExperimentConfig):
    """Quick scale: 500 digits (400 for training), MLP 64-64-64-64-10, full-batch SGD with
    momentum on the squared error to one-hot targets (lr 0.1, weight decay 1e-4) for 20 000
    steps: cross-entropy at a constant lr plateaus here, MSE collapses (NC1 falls by two
    orders of magnitude). Paper scale: MNIST (48 000 training points), MLP
    784-512-512-512-10, mini-batches of 128 for 60 000 steps with a cosine learning rate (our
    choice after Papyan et al. 2020's protocol: the paper itself reports no experiments)."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "points": None,
        "hidden": [512, 512, 512],
        "train.steps": 60000,
        "train.batch_size": 128,
        "train.weight_decay": 5e-4,
        "train.schedule": "cosine",
        "probes": 60,
        "nc_points": 10000,
        "train.loss": "ce",
        "seeds": 5,
    }

    data: str = Field("digits", description="data set spec for reluscope.data.load_data")
    data_dir: str | None = Field(None, description="directory of MNIST / CIFAR-10 files")
    points: int | None = Field(
        500, ge=4, description="points drawn from the data set before the split (None: all)"
    )
    train_fraction: float = Field(0.8, gt=0, lt=1, description="share of points for training")
    standardize: bool = Field(True, description="z-score inputs with the training split's stats")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64, 64, 64],
        min_length=1,
        description="hidden widths of the MLP",
    )
    train: TrainConfig = Field(
        TrainConfig(
            optimizer="sgd",
            loss="mse",
            param_scale=math.sqrt(6),
            steps=20000,
            batch_size=512,
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
        ),
        description="SGD training; param_scale multiplies PyTorch's default init (sqrt(6): He's variance 2/fan_in); batch_size >= the training points: full batch; seed and device are the experiment's",
    )
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")
    probes: int = Field(40, ge=2, description="log-spaced measurement steps (about)")
    nc_points: int | None = Field(
        None, ge=4, description="training points measured (the first ones; None: all)"
    )
    margin_quantile: float = Field(
        0.1, gt=0, lt=1, description="bound margin: this quantile of the positive margins"
    )
    delta: float = Field(0.05, gt=0, lt=1, description="bounds hold with probability 1 - delta")
    C1: float = Field(1.0, gt=0, description="Maurer's chain-rule constant C1 (unverified)")
    C2: float = Field(1.0, ge=0, description="Maurer's chain-rule constant C2 (unverified)")
    rank_rtol: float = Field(1e-2, gt=0, lt=1, description="numerical rank: sigma > rtol sigma_1")


# ----------------------------------------------------------------------------- data and model
def prepare_data(config: NeuralCollapseConfig) -> tuple[Dataset, Dataset, int]:
    """(train, test, C): the data set of ``config`` subsampled, split and standardised (per
    feature, with the training split's mean and std; constant features are only centred)."""
    data = load_data(config.data, seed=config.seed, data_dir=config.data_dir)
    if data.y is None:
        raise InputError(f"data set {config.data!r} has no labels; neural collapse needs classes")
    if config.points is not None:
        data = subsample(data, min(config.points, len(data)), seed=config.seed)
    train, test = split(data, config.train_fraction, seed=config.seed)
    classes = int(data.labels.max()) + 1
    if len(torch.unique(train.y)) < 2:
        raise InputError(f"the training split of {config.data!r} holds fewer than two classes")
    if config.standardize:
        x = train.x.reshape(len(train), -1).double()
        mean, std = x.mean(dim=0), x.std(dim=0)
        std = torch.where(std > 0, std, torch.ones_like(std))

        def scale(d: Dataset) -> Dataset:
            z = (d.x.reshape(len(d), -1).double() - mean) / std
            return replace(d, x=z.reshape(d.x.shape).float(), info={**d.info, "standardized": True})

        train, test = scale(train), scale(test)
    return train, test, classes


def build_model(config: NeuralCollapseConfig, input_dim: int, classes: int) -> torch.nn.Module:
    """The bias-free MLP input_dim - hidden... - classes (PyTorch's default init, seeded)."""
    return mlp([input_dim, *config.hidden, classes], bias=False, seed=config.seed)


def weight_layer_names(net: PWLNet) -> list[str]:
    """The names of the MLP's weight layers in records, input first: the site each feeds, and
    "output" for the last (:mod:`reluscope.records`)."""
    return [s.name for s in net.sites] + [OUTPUT_LAYER]


# ----------------------------------------------------------------------------- the probe
def collapse_probe(config: NeuralCollapseConfig, classes: int, schedule) -> Probe:
    """NC metrics per layer (:meth:`NeuralCollapseResult.to_records`), weight ranks per layer
    (:meth:`WeightRanks.to_records`, ``layer`` the site a weight feeds or "output"), the share
    of each weight's squared spectrum beyond the top C singular values ("tail_share") and both
    bounds, on the training points."""

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        x, y = ctx.points("train", config.nc_points, dtype=torch.float64)
        net = ctx.net(torch.float64)
        nc = neural_collapse(net, x, labels=y)
        rows = [r for r in nc.to_records(split="train") if r["metric"] in NC_METRICS]
        ranks = weight_ranks(net, rtol=config.rank_rtol)
        rows += [r for r in ranks.to_records(split="train") if r["metric"] in RANK_METRICS]
        rows += [
            record("tail_share", tail_share(s, classes), layer=s.layer, split="train")
            for s in ranks.operators
        ]
        return rows + bound_rows(net, x, y, config, ctx)

    return Probe("collapse", measure, schedule)


def tail_share(stats: LayerStats, classes: int) -> float:
    """The share of the weight's ||W||_F^2 beyond its top ``classes`` singular values (0 for a
    zero weight)."""
    sigma = np.asarray(stats.spectrum)
    return float((sigma[classes:] ** 2).sum() / (sigma**2).sum()) if sigma.any() else 0.0


def bound_rows(net, x, y, config: NeuralCollapseConfig, ctx: ProbeContext) -> list[dict]:
    """Records of the post hoc bounds (none while no training point has a positive margin):
    plain (the network itself), collapse-aware at the spec's split (layers above it have
    numerical rank <= C) and at the best split, and the train and test accuracy of the networks
    truncated at the spec's split ("truncated_accuracy") and with every layer at rank <= C
    ("rank_c_accuracy")."""
    with torch.no_grad():
        out = net(x)
    if not (out.argmax(dim=1) == y).any():
        return []
    gamma = default_margin(out, y, config.margin_quantile)
    ca = collapse_aware(
        net,
        x,
        y,
        margin=gamma,
        delta=config.delta,
        C1=config.C1,
        C2=config.C2,
        rtol=config.rank_rtol,
    )
    plain = ca.plain
    # only hidden layers count as collapsed: the output layer has rank <= C by construction,
    # so a split at L - 1 would be the plain bound again
    hidden = range(ca.depth - 1)
    nan = math.nan
    aware = ca.by_split[ca.rank_split] if ca.rank_split in hidden else None
    best_split = min(hidden, key=lambda k: ca.by_split[k].log10_value) if hidden else None
    best = ca.by_split[best_split] if best_split is not None else None
    values = {
        "margin": gamma,
        "log10_bound_plain": plain.log10_value,
        "log10_bound_collapse": aware.log10_value if aware else nan,
        "log10_bound_best": best.log10_value if best else nan,
        "log10_rank_factor_plain": plain.log10_rank_factor,
        "log10_rank_factor_collapse": aware.log10_rank_factor if aware else nan,
        "log10_collapsed_factor": aware.params["log10_collapsed_factor"] if aware else nan,
        "log10_norm_product": plain.log10_norm_product,
        "margin_risk_plain": plain.margin_risk,
        "margin_risk_collapse": aware.margin_risk if aware else nan,
        "margin_risk_best": best.margin_risk if best else nan,
        "collapse_split": ca.rank_split if aware else nan,
        "best_split": best_split if best_split is not None else nan,
    }
    rows = [record(m, v, split="train") for m, v in values.items()]
    for metric, k in (("truncated_accuracy", ca.rank_split), ("rank_c_accuracy", 0)):
        small = ca.truncated_network(k)
        for name in ("train", "test"):
            xs, ys = ctx.points(name, dtype=torch.float64)
            if ys is None:
                raise InputError(f"the {name} split has no labels: its accuracy needs them")
            with torch.no_grad():
                hit = (small(xs).argmax(dim=1) == ys).double().mean().item()
            rows.append(record(metric, hit, split=name))
    return rows


# ----------------------------------------------------------------------------- run
def run(config: NeuralCollapseConfig, ctx: RunContext) -> Outcome:
    """Train at every seed, measure along the way, and judge the predictions over the seeds;
    figures and key numbers are those of the first seed."""
    seeds = verdict.seed_configs(config)
    results = [_run_seed(c, ctx) for c in seeds]
    series, classes = results[0]
    numbers = _numbers(series, classes)
    per_seed = [(_numbers(s, k), s) for s, k in results]
    figures = [
        _nc_figure(ctx, series),
        _rank_figure(ctx, series, classes),
        _bound_figure(ctx, series),
    ]
    records = pd.concat(
        [s.records.assign(seed=c.seed) for (s, _), c in zip(results, seeds, strict=True)],
        ignore_index=True,
    )
    return Outcome(
        records=records,
        figures=figures,
        numbers=numbers,
        predictions=_predictions(per_seed, classes, [c.seed for c in seeds]),
        summary=f"Seed {config.seed}: " + _summary(numbers, series, classes),
    )


def _run_seed(config: NeuralCollapseConfig, ctx: RunContext) -> tuple[Series, int]:
    train, test, classes = prepare_data(config)
    model = build_model(config, train.x[0].numel(), classes)
    schedule = log_steps(config.train.steps, config.probes)
    train_config = training(config, checkpoint_every=max(config.train.steps // 10, 1))
    ctx.say(
        f"neural-collapse: seed {config.seed}, training "
        f"{[train.x[0].numel(), *config.hidden, classes]}"
    )
    name = "train" if config.seeds == 1 else f"train_seed_{config.seed}"
    trainer = Trainer(
        model,
        train,
        test,
        train_config,
        probes=[probes.accuracy_loss(), collapse_probe(config, classes, schedule)],
        run_dir=ctx.subdir(name),
        run_name="mlp",
        progress=ctx.progress,
        default_schedule=schedule,
    )
    records = trainer.fit()
    net = trace(trainer.model, train.input_shape)
    return Series(records, net.sites[-1].name, weight_layer_names(net)), classes


class Series:
    """The records as per-step series: ``get(metric, layer=None, split='train')``; the
    penultimate layer's name, the weight layers' names and the interpolation step."""

    def __init__(self, records: pd.DataFrame, penultimate: str, layers: list[str]) -> None:
        self.records, self.penultimate, self.layers = records, penultimate, layers
        acc = self.get("accuracy")
        reached = acc[acc >= INTERPOLATION]
        self.interpolation = int(reached.index[0]) if len(reached) else None
        self.last = int(records["step"].max())

    def get(self, metric: str, layer: str | None = None, split: str | None = "train") -> pd.Series:
        r = self.records
        keep = r["metric"] == metric
        keep &= r["layer"].isna() if layer is None else r["layer"] == layer
        if split is not None:
            keep &= r["split"] == split
        return r[keep].set_index("step")["value"].sort_index()

    def at(self, metric: str, step: int | None, layer: str | None = None, split="train") -> float:
        s = self.get(metric, layer, split)
        return float(s.loc[step]) if step is not None and step in s.index else math.nan


def _layer_key(s: Series, layer: str) -> str:
    """The key-number suffix of weight layer ``layer``: "layer1" for the first, ..., numbered
    input first as the figures' "layer 1", ... (:func:`_layer_labels`), the last being the
    output layer."""
    return f"layer{s.layers.index(layer) + 1}"


def _numbers(s: Series, classes: int) -> dict[str, float]:
    """Key numbers at the interpolation step and at the end (NC at the penultimate layer)."""
    pen, end, interp = s.penultimate, s.last, s.interpolation
    n: dict[str, float] = {"classes": classes, "interpolation_step": interp or math.nan}
    for m in ("nc1", "nc1_trace", "cdnv"):
        n[f"{m}_interpolation"] = s.at(m, interp, pen)
        n[f"{m}_end"] = s.at(m, end, pen)
    n["nc1_drop"] = n["nc1_interpolation"] / n["nc1_end"]
    n["nc1_trace_drop"] = n["nc1_trace_interpolation"] / n["nc1_trace_end"]
    n["cdnv_drop"] = n["cdnv_interpolation"] / n["cdnv_end"]
    n["nc1_min"] = float(s.get("nc1", pen).min())
    top = s.layers[-2] if len(s.layers) > 1 else s.layers[-1]
    # the low-rank bias of CE + weight decay (Sukenik et al. 2024): pinv-NC1 rises while the
    # top layer falls below rank C - 1
    n["low_rank_bias"] = float(
        n["nc1_end"] > n["nc1_interpolation"] and s.at("numerical_rank", end, top) < classes - 1
    )
    for m in ("nc2_etf", "nc2_equinorm", "w_etf", "nc3", "nc4"):
        n[f"{m}_end"] = s.at(m, end, pen)
    for part in ("train", "test"):
        n[f"{part}_accuracy_end"] = s.at("accuracy", end, split=part)
        n[f"truncated_{part}_accuracy_end"] = s.at("truncated_accuracy", end, split=part)
        n[f"rank_c_{part}_accuracy_end"] = s.at("rank_c_accuracy", end, split=part)
    for layer in s.layers:
        key = _layer_key(s, layer)
        n[f"numerical_rank_end.{key}"] = s.at("numerical_rank", end, layer)
        n[f"stable_rank_end.{key}"] = s.at("stable_rank", end, layer)
        n[f"tail_share_end.{key}"] = s.at("tail_share", end, layer)
    bounds = ("log10_bound_plain", "log10_bound_collapse", "log10_bound_best")
    for m in (*bounds, "collapse_split", "best_split"):
        n[f"{m}_end"] = s.at(m, end)
    return n


def _predictions(
    per_seed: list[tuple[dict[str, float], Series]], classes: int, seeds: list[int]
) -> list[Prediction]:
    """The neural-collapse predictions, each decided over the seeds by its stated threshold."""
    drop, rank, nc4, bound = [], [], [], []
    for n, s in per_seed:
        top = s.layers[-2] if len(s.layers) > 1 else s.layers[-1]
        interp = s.interpolation
        if interp is None:
            nc1 = (
                f"train accuracy never reached {INTERPOLATION:.0%} "
                f"(end: {n['train_accuracy_end']:.2%}): no TPT"
            )
        else:
            nc1 = (
                f"NC1 {n['nc1_interpolation']:.3g} at step {interp} -> {n['nc1_end']:.3g}: "
                f"x{n['nc1_drop']:.3g}; Tr(Sw)/Tr(Sb) x{n['nc1_trace_drop']:.3g}, CDNV "
                f"x{n['cdnv_drop']:.3g}"
                + (
                    "; low-rank bias seen (NC1 rises, top layer below rank C - 1)"
                    if n["low_rank_bias"]
                    else ""
                )
            )
        drop.append(
            verdict.check(
                interp is not None and n["nc1_drop"] >= NC1_DROP,
                nc1,
                n["nc1_drop"],
                margin=math.log10(n["nc1_drop"] / NC1_DROP) if n["nc1_drop"] > 0 else -math.inf,
                why=nc1
                if interp is None
                else f"NC1 falls only x{n['nc1_drop']:.3g} after "
                f"{INTERPOLATION:.0%} train accuracy",
            )
        )
        r = n[f"numerical_rank_end.{_layer_key(s, top)}"]
        ranks = ", ".join(
            f"{label}: {n[f'numerical_rank_end.{_layer_key(s, k)}']:.0f}"
            for k, label in _layer_labels(s.layers).items()
        )
        rank.append(
            verdict.check(
                r <= classes,
                f"numerical ranks at the end: {ranks}",
                r,
                margin=classes - r,
                why=f"the top hidden layer keeps numerical rank {r:.0f} > C = {classes}",
            )
        )
        nc4.append(
            verdict.check(
                n["nc4_end"] <= NC4_TOLERANCE,
                f"disagreement {n['nc4_end']:.2%} at the end",
                n["nc4_end"],
                margin=NC4_TOLERANCE - n["nc4_end"],
                why=f"the nearest class mean disagrees with the network on {n['nc4_end']:.2%}",
            )
        )
        plain, aware = n["log10_bound_plain_end"], n["log10_bound_collapse_end"]
        split = n["collapse_split_end"]
        found = not math.isnan(aware)
        bound.append(
            verdict.check(
                found and aware < plain,
                (
                    f"log10 bound: plain {plain:.3f}, collapse-aware {aware:.3f} at split "
                    f"k = {split:.0f} of L = {len(s.layers)}"
                    if found
                    else f"no collapsed hidden layer (plain log10 bound {plain:.3f})"
                )
                + f"; layers truncated to rank <= C: train accuracy "
                f"{n['rank_c_train_accuracy_end']:.2%}",
                aware,
                plain,
                margin=plain - aware if found else math.nan,
                why="no hidden layer has numerical rank <= C at the end, so there is no "
                "collapse-aware bound"
                if not found
                else f"the collapse-aware bound {aware:.3f} is not below the plain {plain:.3f}",
            )
        )
    url = verdict.PINTO
    return [
        verdict.decide(
            f"NC1 = Tr(Sw Sb^+)/C at the penultimate layer falls by at least x{NC1_DROP:g} "
            f"from the first step at >= {INTERPOLATION:.0%} train accuracy to the end of "
            "training (trace ratio and CDNV shown alongside)",
            drop,
            source="Sec. 4 (neural collapse in the terminal phase; Papyan et al. 2020)",
            url=url,
            threshold="an order of magnitude: Papyan et al. report several over the TPT",
            seeds=seeds,
        ),
        verdict.decide(
            f"The top hidden weight layer ends with numerical rank <= C = {classes} "
            "(singular values above rank_rtol * sigma_1)",
            rank,
            source="Sec. 4 (collapse makes the top layers' rank at most C)",
            url=url,
            threshold="C, counting singular values above 1e-2 sigma_1 (the default rank_rtol)",
            seeds=seeds,
        ),
        verdict.decide(
            f"NC4: the nearest class mean of the penultimate features agrees with the "
            f"network's prediction on all but <= {NC4_TOLERANCE:.0%} of the training points",
            nc4,
            source="Sec. 4 (NC4, Papyan et al. 2020)",
            url=url,
            threshold="1 % of the points: rounding at a few hundred points",
            seeds=seeds,
        ),
        verdict.decide(
            "At the end, collapsed hidden layers exist (numerical rank <= C in every layer above "
            "a split k <= L - 2; the output layer alone does not count), and the collapse-aware "
            "bound, counting them at rank C, is below the plain post hoc bound",
            bound,
            source="Sec. 4 (bounds for networks with collapsed layers), our derivation",
            url=url,
            threshold="strictly below the plain bound (no band: both are exact formulas)",
            seeds=seeds,
        ),
    ]


def _summary(n: dict[str, float], s: Series, classes: int) -> str:
    if math.isnan(n["interpolation_step"]):
        return (
            f"The MLP did not reach {INTERPOLATION:.0%} train accuracy (end: "
            f"{n['train_accuracy_end']:.2%}), so there is no terminal phase to examine."
        )
    top = s.layers[-2] if len(s.layers) > 1 else s.layers[-1]
    collapse = n["log10_bound_collapse_end"]
    bias = (
        " Low-rank bias seen: NC1 rises while the top layer falls below rank C - 1 (the known "
        "effect of cross-entropy with weight decay, Sukenik et al. 2024)."
        if n["low_rank_bias"]
        else ""
    )
    return (
        f"After {INTERPOLATION:.0%} train accuracy (step {n['interpolation_step']:.0f}) NC1 went "
        f"from {n['nc1_interpolation']:.3g} to {n['nc1_end']:.3g} (x{n['nc1_drop']:.3g}; trace "
        f"ratio x{n['nc1_trace_drop']:.3g}, CDNV x{n['cdnv_drop']:.3g}) and NC4 to "
        f"{n['nc4_end']:.2%}. The top hidden layer ends at numerical rank "
        f"{n[f'numerical_rank_end.{_layer_key(s, top)}']:.0f} (C = {classes}); "
        f"{n[f'tail_share_end.{_layer_key(s, top)}']:.1%} of its squared norm lies beyond the top C directions: "
        f"with every layer truncated to rank C the network keeps "
        f"{n['rank_c_train_accuracy_end']:.1%} train accuracy. "
        + (
            f"Collapse-aware bound log10 {collapse:.2f}, plain {n['log10_bound_plain_end']:.2f}."
            if not math.isnan(collapse)
            else "No collapsed hidden layer, so no collapse-aware bound."
        )
        + bias
    )


# ----------------------------------------------------------------------------- figures
def _mark(ax, s: Series) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("training step (0, then log scale)")
    if s.interpolation is not None:
        ax.axvline(s.interpolation, color="grey", lw=0.8, ls=":")


def _interpolation_legend(fig, s: Series, handles=(), labels=(), ncols: int = 4) -> None:
    """A legend below ``fig`` of ``handles`` and the dotted interpolation line of :func:`_mark`."""
    handles, labels = list(handles), list(labels)
    if s.interpolation is not None:
        handles.append(Line2D([], [], color="grey", lw=0.8, ls=":"))
        labels.append(f"train accuracy >= {INTERPOLATION} (step {s.interpolation})")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), ncols))


def _finish(ctx: RunContext, fig, axes, s: Series, name: str, caption: str) -> Figure:
    """Every panel of ``axes`` with the step axis of :func:`_mark` and a legend, the
    interpolation line's legend below; ``fig`` saved as ``name`` in the run directory,
    returned as a Figure with ``caption``."""
    for ax in axes:
        _mark(ax, s)
        ax.legend()
    _interpolation_legend(fig, s)
    return ctx.figure(fig, name, caption)


def _layer_labels(names: list[str]) -> dict[str, str]:
    """Figure labels of layers given in input-to-output order, numbered as in the paper: the
    l-th weight matrix and the features after it are both "layer l", the last "(output)"."""
    last = len(names)
    return {
        name: f"layer {i}" + (" (output)" if i == last else "")
        for i, name in enumerate(names, start=1)
    }


def _nc_figure(ctx: RunContext, s: Series) -> Figure:
    fig, axes = new_figure(2, 2, size=(4.6, 3.3))
    a, b, c, d = axes
    sites = list(dict.fromkeys(s.records.loc[s.records["metric"] == "nc1", "layer"]))
    colours, names = _colours(len(sites)), _layer_labels(sites)
    for site, colour in zip(sites, colours, strict=True):
        a.plot(s.get("nc1", site), color=colour, label=names[site])
    pen = names.get(s.penultimate, "penultimate")
    a.plot(
        s.get("nc1_trace", s.penultimate), color="k", ls="--", lw=1, label=f"Tr(Sw)/Tr(Sb), {pen}"
    )
    a.set_yscale("log")
    a.set_title("NC1 = Tr(Sw Sb⁺)/C")
    for metric in ("nc2_equinorm", "nc2_equiangular", "nc2_maxangle", "nc2_etf", "w_etf"):
        b.plot(s.get(metric, s.penultimate), label=metric)
    log_axis(b, "y")
    b.set_title(f"NC2 ({pen} features; w_etf: classifier)")
    c.plot(s.get("nc3", s.penultimate), color="C3", label=f"NC3, {pen}")
    c.set_yscale("log")
    c.set_title("NC3 = ‖Wᵀ/‖W‖ − M/‖M‖‖_F")
    eps = 1e-4
    d.plot(s.get("nc4", s.penultimate).clip(lower=eps), label="NC4 (NCC ≠ network)")
    for part, ls in (("train", "-"), ("test", "--")):
        d.plot((1 - s.get("accuracy", split=part)).clip(lower=eps), ls=ls, label=f"{part} error")
    d.set_yscale("log")
    d.set_title(f"NC4 and errors (floored at {eps:g})")
    return _finish(
        ctx,
        fig,
        axes,
        s,
        "nc_metrics.png",
        "Neural collapse of the MLP's training features against training step (log scale; the "
        "dotted line marks the first measured step at 100 % train accuracy, where the terminal "
        "phase begins). (a) NC1 = Tr(Σ_W Σ_B⁺)/C at every hidden layer (post-ReLU) and the "
        "output, and the trace ratio Tr(Σ_W)/Tr(Σ_B) at the penultimate layer (dashed): within-"
        "class variability relative to between-class, 0 under collapse. (b) NC2: distances of "
        "the centred class means (and classifier rows, w_etf) from a simplex ETF. (c) NC3: "
        "misalignment of classifier and class means. (d) NC4: fraction of training points whose "
        "nearest class mean differs from the network's prediction, and train/test errors. All "
        "dimensionless; all should fall towards 0 in the terminal phase if the features collapse.",
    )


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(count - 1, 1)) for i in range(count)]


def _rank_figure(ctx: RunContext, s: Series, classes: int) -> Figure:
    fig, axes = new_figure(3, 1, size=(3.0, 3.2))
    a, b, c = axes
    colours, names = _colours(len(s.layers)), _layer_labels(s.layers)
    for layer, colour in zip(s.layers, colours, strict=True):
        a.plot(s.get("numerical_rank", layer), color=colour, label=names[layer])
        b.plot(s.get("stable_rank", layer), color=colour)
        b.plot(s.get("effective_rank", layer), color=colour, ls="--")
        c.plot(s.get("tail_share", layer).clip(lower=1e-9), color=colour)
    for ax in (a, b):
        ax.axhline(classes, color="k", lw=0.8, ls=":", label=f"C = {classes}")
        ax.axhline(classes - 1, color="grey", lw=0.8, ls="-.", label="C − 1")
    a.set_ylim(bottom=0)
    log_axis(b, "y")
    a.set_title("numerical rank (σ > rtol σ₁)")
    b.set_title("stable (—), effective (--) rank")
    c.set_yscale("log")
    c.set_title("‖W‖²_F share beyond top C")
    for ax in axes:
        _mark(ax, s)
    _interpolation_legend(fig, s, *a.get_legend_handles_labels())
    return ctx.figure(
        fig,
        "weight_ranks.png",
        "Ranks of the MLP's weight matrices against training step (log scale; dotted vertical "
        "line: start of the terminal phase), one colour per layer (layer l: the l-th weight "
        "matrix) from input (dark) to output (light). Left: numerical rank (singular values "
        "above rank_rtol times the largest); middle: stable rank (solid) and entropy-based "
        "effective rank (dashed); right: fraction of the squared Frobenius norm outside the top "
        "C singular values (floored at 1e-9; 0 for rank <= C). Dotted and dash-dotted horizontal "
        "lines: C and C − 1. Under collapse the top layers' ranks should approach C "
        "(or C − 1).",
    )


def _bound_figure(ctx: RunContext, s: Series) -> Figure:
    fig, axes = new_figure(3, 1, size=(3.0, 3.6))
    a, b, c = axes
    a.plot(s.get("log10_bound_plain"), label="plain (exact ranks)")
    aware = s.get("log10_bound_collapse")
    a.plot(aware, ls="--", label="collapse-aware (spec's split)")
    a.plot(s.get("log10_bound_best"), ls=":", lw=2.2, label="smallest over splits")
    a.set_ylabel("log10 bound on the test error")
    a.set_title(
        "post hoc low-rank bound"
        + ("\n(no layer collapsed: no collapse-aware bound)" if aware.isna().all() else ""),
        fontsize=9,
    )
    b.plot(s.get("log10_rank_factor_plain"), marker="o", ms=3, label="plain")
    b.plot(s.get("log10_rank_factor_collapse"), ls="--", marker="s", ms=3, label="collapse-aware")
    b.plot(s.get("log10_collapsed_factor"), ls=":", lw=2.2, label="its collapsed layers")
    b.set_ylabel("log10 rank/width factor")
    b.set_title("Σ w_l C1^(L−l) √(r_l d_l)")
    for metric, ls, label in (
        ("collapse_split", "-", "spec's split"),
        ("best_split", ":", "best split"),
    ):
        k = s.get(metric)
        c.step(k.index, k, lw=1.6, ls=ls, where="post", label=label)
    c.set_ylim(-0.3, len(s.layers) + 0.3)
    c.set_yticks(range(len(s.layers) + 1))
    c.set_ylabel("split k (layers above k truncated to rank C)")
    c.set_title("collapse split k (k = L: none)")
    return _finish(
        ctx,
        fig,
        axes,
        s,
        "bounds.png",
        "The post hoc low-rank chain-rule bound ([DERIVED]; C1, C2 unverified, so only its shape "
        "and the comparison matter) over training, log10 of the bound on the test error at the "
        "margin given by margin_quantile. Left: the bound of the network with its exact ranks "
        "(plain); the collapse-aware bound at the spec's split k (the layers above k all have "
        "numerical rank <= C; they are truncated to rank C and the truncated network's margin "
        "risk is used); and the smallest bound over all splits (dotted), which is also valid. "
        "The steps come from the union bound's grid (spectral norms rounded up to powers of 2, "
        "the margin down). "
        "While the bound is far above 1, the margin risk a truncation costs (at most 1) is "
        "invisible, so the smallest is reached by truncating every layer whether or not the "
        "features have collapsed. Middle: the rank/width factor of the plain and spec-split "
        "bounds and the collapsed layers' part. Right: the splits, the spec's and the best "
        "(k = L: nothing collapsed). Collapsed layers enter at rank C, at a cost that grows only "
        "like sqrt(d_l) with their width.",
    )


EXPERIMENT = Experiment(
    name="neural-collapse",
    title="Neural collapse, top-layer ranks and the collapse-aware bound",
    paper="low_rank_bounds",
    description="Train a bias-free MLP into the terminal phase of training; track NC1-NC4, "
    "the numerical and stable ranks of its weights, and the collapse-aware low-rank bound "
    "against the plain one.",
    config=NeuralCollapseConfig,
    run=run,
    order=3,
    key_numbers={
        "classes": ("classes", "classes"),
        "interpolation_step": ("first step with train accuracy >= 0.99", "steps"),
        "nc1_drop": ("NC1 at interpolation / NC1 at the end", "ratio"),
        "nc1_trace_drop": ("Tr(Sw) / Tr(Sb) at interpolation / at the end", "ratio"),
        "cdnv_drop": ("CDNV at interpolation / at the end", "ratio"),
        "nc1_min": ("lowest NC1 over training", "ratio"),
        "nc1_trace_*": ("NC1 as Tr(Sw) / Tr(Sb) at the {0}", "ratio"),
        "nc1_*": ("NC1 = Tr(Sw Sb^+) / C at the {0}", "ratio"),
        "cdnv_*": ("class-distance normalised variance (CDNV) at the {0}", "ratio"),
        "low_rank_bias": (
            "NC1 rises after interpolation while the top hidden layer falls below rank C - 1",
            "yes/no",
        ),
        "nc2_etf_end": (
            "distance of the class means from a simplex ETF at the end",
            "dimensionless",
        ),
        "nc2_equinorm_end": ("std / mean of the class-mean norms at the end", "ratio"),
        "w_etf_end": (
            "distance of the classifier rows from a simplex ETF at the end",
            "dimensionless",
        ),
        "nc3_end": (
            "distance between classifier rows and class means (NC3) at the end",
            "dimensionless",
        ),
        "nc4_end": ("disagreement of nearest-class-mean and network predictions (NC4)", "fraction"),
        "truncated_*_accuracy_end": (
            "{0} accuracy with the top layer truncated to its numerical rank",
            "fraction",
        ),
        "rank_c_*_accuracy_end": (
            "{0} accuracy with the top layer truncated to rank C",
            "fraction",
        ),
        "*_accuracy_end": ("{0} accuracy at the end", "fraction"),
        "numerical_rank_end.layer*": (
            "numerical rank of weight layer {0} at the end (layers numbered as in the figures, "
            "input first; the last is the output layer)",
            "rank",
        ),
        "stable_rank_end.layer*": ("stable rank of weight layer {0} at the end", "rank"),
        "tail_share_end.layer*": (
            "share of weight layer {0}'s squared spectrum beyond rank C at the end",
            "fraction",
        ),
        "log10_bound_plain_end": ("log10 of the plain low-rank bound at the end", "log10"),
        "log10_bound_collapse_end": ("log10 of the collapse-aware bound at the end", "log10"),
        "log10_bound_best_end": ("log10 of the best collapse-aware bound over splits", "log10"),
        "collapse_split_end": ("hidden layer the collapse-aware bound splits at", "layer"),
        "best_split_end": ("hidden layer of the best split", "layer"),
    },
)
