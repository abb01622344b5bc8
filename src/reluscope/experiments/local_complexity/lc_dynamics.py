"""``lc-dynamics``: local complexity, local rank, total variation, accuracy and adversarial
accuracy of an MLP over training (Patel & Montufar, Sec. 4 and Fig. 3; spec §4.1-4.2)."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

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
from reluscope.measures.local_complexity import LocalComplexityMeter
from reluscope.train import Probe, ProbeContext, TrainConfig, log_steps, probes

#: Train accuracy from which the run counts as interpolating.
INTERPOLATION = 0.99
#: Relative local-rank drop of the deepest layer that counts as a collapse.
COLLAPSE = 0.2
#: Median relative train/test LC gap under which the two count as tracking each other.
TRACKING = 0.1


class LCDynamicsConfig(ExperimentConfig):
    """Quick: scikit-learn digits, a 4x64 MLP at twice the He initialisation, AdamW with strong
    weight decay so that the late phase arrives within a few thousand steps. Paper: the authors'
    MNIST MLP (1000 training images, 4x200, AdamW lr 1e-4, weight decay 0.01, batch 64, 1e6
    steps, PGD eps 80/255 in normalised units)."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 1000,
        "n_test": 1000,
        "hidden": [200, 200, 200, 200],
        "train.lr": 1e-4,
        "train.weight_decay": 0.01,
        "train.steps": 1_000_000,
        "n_probes": 50,
        "n_points": 1000,
        "adv_eps": 80 / 255,
        "adv_step": 10 / 255,
        "seeds": 3,
    }

    data: str = Field("digits", description="data spec; mnist/cifar10 are read from data_dir")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10, description="training points")
    n_test: int = Field(500, ge=10, description="test points")
    hidden: list[int] = Field([64, 64, 64, 64], min_length=2, description="hidden widths")
    init_gain: float = Field(
        2 * math.sqrt(2), gt=0, description="weights ~ N(0, gain^2/fan_in); 2x He as in Fig. 3"
    )
    train: Annotated[TrainConfig, common.min_steps(10)] = Field(
        TrainConfig(
            optimizer="adamw", lr=1e-3, weight_decay=0.5, batch_size=64, steps=6000, loss="ce"
        ),
        description="AdamW training (decoupled decay of the weights only); seed and device are the experiment's",
    )
    n_probes: int = Field(30, ge=5, description="log-spaced probe steps")
    n_points: int = Field(256, ge=8, description="points per split for LC, rank, TV, PGD")
    sigma: float = Field(0.01, gt=0, description="LC bias-noise scale")
    rank_atol: float = Field(0.01, gt=0, description="local-rank tolerance (authors' 0.01)")
    adv_eps: float = Field(0.1, gt=0, description="PGD L_inf radius, input units")
    adv_step: float = Field(0.025, gt=0, description="PGD step size, input units")
    adv_iters: int = Field(10, ge=1)
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")


def run(config: LCDynamicsConfig, ctx: RunContext) -> Outcome:
    seeds = verdict.seed_configs(config)
    frames = [_run_seed(c, ctx).assign(seed=c.seed) for c in seeds]
    per_seed = [analyse(f) for f in frames]
    facts = per_seed[0]
    figure = _figure(frames[0], facts, ctx)
    c = config
    return Outcome(
        records=pd.concat(frames, ignore_index=True),
        figures=[figure],
        numbers=facts["numbers"],
        predictions=_predictions(per_seed, [s.seed for s in seeds]),
        summary=(
            f"Seed {c.seed}: {c.data}, {c.n_train} training points, MLP {c.hidden}, "
            f"{c.train.steps} AdamW steps (weight decay {c.train.weight_decay}). Train LC goes from "
            f"{facts['numbers']['lc_train_init']:.3g} at init to "
            f"{facts['numbers']['lc_train_end']:.3g} at the end; interpolation at step "
            f"{facts['interp']}."
        ),
    )


def _run_seed(c: LCDynamicsConfig, ctx: RunContext) -> pd.DataFrame:
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    lo, hi = float(min(train.x.min(), test.x.min())), float(max(train.x.max(), test.x.max()))
    model = common.data_mlp(train, c.hidden, c.init_gain, c.seed)
    train_config = common.train_config(c)
    n = c.n_points
    probe_list = [
        probes.accuracy_loss(),
        lc_points_probe(c.sigma, n, c.seed),
        probes.local_complexity(c.sigma, splits=("test",), n_points=n, seed=c.seed),
        probes.local_rank(c.rank_atol, splits=("train",), n_points=n),
        probes.total_variation(c.sigma, splits=("train",), n_points=n, bound=False),
        probes.adversarial(
            c.adv_eps, c.adv_step, c.adv_iters, bounds=(lo, hi), splits=("test",), n_points=n
        ),
    ]
    name = "train" if c.seeds == 1 else f"train_seed_{c.seed}"
    records, _ = common.train_run(
        ctx,
        name,
        model,
        train,
        test,
        train_config,
        probe_list,
        log_steps(c.train.steps, c.n_probes),
    )
    return records


def lc_points_probe(sigma: float, n_points: int, seed: int) -> Probe:
    """The LC at ``n_points`` training points with the noise of ``seed`` at every step (so two
    steps can be compared point by point): metric "lc" (mean and standard error) and, per
    point i, metric "lc_point" with layer "point_i"."""

    def measure(ctx: ProbeContext) -> list[dict[str, Any]]:
        x, _ = ctx.points("train", n_points)
        values = (
            LocalComplexityMeter(ctx.net(), sigma=sigma, seed=seed).point_values(x)["lc"].numpy()
        )
        stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        rows = [dict(metric="lc", value=float(values.mean()), stderr=stderr, split="train")]
        rows += [
            dict(metric="lc_point", layer=f"point_{i}", value=float(v), split="train")
            for i, v in enumerate(values)
        ]
        return rows

    return Probe("lc_points", measure)


def paired_drop(records: pd.DataFrame, start: int, end: int) -> tuple[float, float]:
    """Mean and standard error of the per-point LC differences LC_i(start) - LC_i(end) at
    the same training points with the same noise (NaN when a step lacks the values)."""
    rows = records[records["metric"] == "lc_point"]
    a = rows[rows["step"] == start].set_index("layer")["value"]
    b = rows[rows["step"] == end].set_index("layer")["value"]
    d = (a - b).dropna().to_numpy()
    if len(d) < 2:
        return math.nan, math.nan
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def analyse(records: pd.DataFrame) -> dict[str, Any]:
    """Interpolation step, late LC drop (paired, from interpolation to the end), local-rank
    change of every layer, adversarial accuracy and the train/test LC gap, from one run."""
    acc = common.series(records, "accuracy", "train")["value"]
    lc = common.series(records, "lc", "train")
    lc_test = common.series(records, "lc", "test")
    adv = common.series(records, "adv_accuracy", "test")
    interp = common.first_step_at_least(acc, INTERPOLATION)
    end = int(lc.index[-1])
    numbers: dict[str, float] = {
        "lc_train_init": float(lc["value"].iloc[0]),
        "lc_train_end": float(lc["value"].iloc[-1]),
        "lc_test_end": float(lc_test["value"].iloc[-1]),
        "train_accuracy_end": float(acc.iloc[-1]),
        "test_accuracy_end": float(common.series(records, "accuracy", "test")["value"].iloc[-1]),
        "adv_accuracy_end": float(adv["value"].iloc[-1]),
        "interpolation_step": float("nan") if interp is None else float(interp),
    }
    gap = (lc["value"] - lc_test["value"]).abs() / (0.5 * (lc["value"] + lc_test["value"]))
    numbers["lc_train_test_median_rel_gap"] = float(gap.median())
    facts: dict[str, Any] = {"interp": interp, "end": end, "numbers": numbers}
    if interp is None:
        return facts
    numbers["lc_at_interp"] = float(lc.loc[interp, "value"])
    numbers["lc_drop"], numbers["lc_drop_stderr"] = paired_drop(records, interp, end)
    sites = common.layers(records, "local_rank")
    for i, site in enumerate(sites, 1):
        rank = common.series(records, "local_rank", "train", site)["value"]
        numbers[f"rank_at_interp.layer{i}"] = float(rank.loc[interp])
        numbers[f"rank_end.layer{i}"] = float(rank.iloc[-1])
        numbers[f"rank_rel_drop.layer{i}"] = float(1 - rank.iloc[-1] / rank.loc[interp])
    numbers["adv_accuracy_at_interp"] = float(adv.loc[interp, "value"])
    numbers["adv_accuracy_max_after_interp"] = float(adv.loc[interp:, "value"].max())
    numbers["adv_rise_stderr"] = float(np.hypot(adv.loc[interp, "stderr"], adv["stderr"].iloc[-1]))
    facts["depth"] = len(sites)
    return facts


def _predictions(per_seed: list[dict[str, Any]], seeds: list[int]) -> list[Prediction]:
    falls: list[verdict.Check] = []
    collapse: list[verdict.Check] = []
    robust: list[verdict.Check] = []
    track: list[verdict.Check] = []
    for facts in per_seed:
        num = facts["numbers"]
        gap = num["lc_train_test_median_rel_gap"]
        track.append(
            verdict.check(
                gap < TRACKING,
                f"median |LC_train - LC_test| / mean = {gap:.1%}",
                gap,
                margin=TRACKING - gap,
                why=f"train and test LC differ by a median {gap:.1%}",
            )
        )
        if facts["interp"] is None:
            missing = f"the run never reached {INTERPOLATION:.0%} train accuracy"
            for checks in (falls, collapse, robust):
                checks.append(verdict.check(False, missing, why=missing))
            continue
        drop, err = num["lc_drop"], num["lc_drop_stderr"]
        fell = drop > 2 * err
        falls.append(
            verdict.check(
                fell,
                f"LC {num['lc_at_interp']:.4g} at interpolation (step {facts['interp']}), "
                f"{num['lc_train_end']:.4g} at the end: paired drop {drop:.4g} +- {err:.3g}",
                drop,
                err,
                margin=(drop - 2 * err) / err if err > 0 else math.nan,
                why=f"the paired LC change from interpolation to the end is {drop:.3g} +- "
                f"{err:.2g}, not a drop beyond 2 standard errors",
            )
        )
        last = f"layer{facts['depth']}"
        deep, shallow = num[f"rank_rel_drop.{last}"], num["rank_rel_drop.layer1"]
        collapse.append(
            verdict.check(
                deep > COLLAPSE and deep > shallow,
                f"relative rank drop: hidden {last} {deep:.1%} "
                f"({num[f'rank_at_interp.{last}']:.1f} -> {num[f'rank_end.{last}']:.1f}), "
                f"layer1 {shallow:.1%}",
                deep,
                shallow,
                margin=min(deep - COLLAPSE, deep - shallow),
                why=f"the deepest layer's local rank falls by {deep:.1%} (layer 1: {shallow:.1%})",
            )
        )
        a_int, a_end = num["adv_accuracy_at_interp"], num["adv_accuracy_end"]
        rise_err = num["adv_rise_stderr"]
        rose = a_end - a_int > 2 * rise_err
        robust.append(
            verdict.check(
                rose and fell,
                f"adversarial accuracy {a_int:.3f} at interpolation, {a_end:.3f} at the end "
                f"(2 x stderr {2 * rise_err:.3f}); LC drop {'yes' if fell else 'no'}",
                a_int,
                a_end,
                margin=a_end - a_int - 2 * rise_err,
                why=(
                    f"PGD accuracy goes {a_int:.3f} -> {a_end:.3f} (2 x stderr {2 * rise_err:.3f})"
                )
                + ("" if fell else " and the LC does not drop"),
            )
        )
    url, source = verdict.PATEL_MONTUFAR, "Sec. 4 and Fig. 3 (LC, local rank and robustness)"
    return [
        verdict.decide(
            "LC falls late in training: from interpolation (train accuracy >= "
            f"{INTERPOLATION}) to the end, the LC at the same training points (same noise) "
            "drops by more than 2 standard errors of the paired differences",
            falls,
            source=source,
            url=url,
            threshold="2 standard errors of the per-point paired differences",
            seeds=seeds,
        ),
        verdict.decide(
            "The late LC drop coincides with a local-rank collapse of the deep layers: "
            f"between interpolation and the end, the deepest hidden layer's local rank falls "
            f"by more than {COLLAPSE:.0%}, and by more than the first layer's",
            collapse,
            source=source + "; Sec. 5 (LC bounded by local rank)",
            url=url,
            threshold=f"{COLLAPSE:.0%}: a band below the collapse seen in the paper's Fig. 3",
            seeds=seeds,
        ),
        verdict.decide(
            "Delayed robustness comes with the LC drop: the LC falls after interpolation (the "
            "first prediction) and PGD accuracy at the end is higher than at interpolation by "
            "more than 2 standard errors",
            robust,
            source="Sec. 4, Fig. 3 (delayed robustness as LC falls)",
            url=url,
            threshold="2 standard errors of the two accuracies, combined",
            seeds=seeds,
        ),
        verdict.decide(
            f"Train and test LC track each other: median relative gap over the probed steps "
            f"below {TRACKING:.0%}",
            track,
            source="Sec. 4 (LC at train and test points)",
            url=url,
            threshold=f"{TRACKING:.0%}: a band around the near-equal curves of Fig. 3",
            seeds=seeds,
        ),
    ]


def _figure(records: pd.DataFrame, facts: dict[str, Any], ctx: RunContext) -> Figure:
    fig, axes = new_figure(2, 2, size=(4.6, 3.3))
    ax = axes[0]
    for split in ("train", "test"):
        common.plot_series(ax, common.series(records, "lc", split), f"LC {split}")
    ax.set_ylabel("local complexity (1 / input unit)")
    ax = axes[1]
    for i, site in enumerate(common.layers(records, "local_rank"), 1):
        common.plot_series(ax, common.series(records, "local_rank", "train", site), f"layer {i}")
    ax.set_ylabel("local rank (train points)")
    ax = axes[2]
    common.plot_series(ax, common.series(records, "tv", "train"), "TV (logits)")
    ax.set_ylabel("total variation E||df/dx||_F")
    ax = axes[3]
    for metric, split, label in (
        ("accuracy", "train", "train accuracy"),
        ("accuracy", "test", "test accuracy"),
        ("adv_accuracy", "test", "PGD accuracy (test)"),
    ):
        common.plot_series(ax, common.series(records, metric, split), label)
    ax.set_ylabel("accuracy")
    marks = [(facts["interp"], "interpolation", "0.4")]
    common.finish_step_axes(axes, marks)
    axes[1].set_ylim(bottom=0)  # room below the ranks for their legend
    axes[1].legend(loc="lower left", ncols=2)
    return ctx.figure(
        fig,
        "lc_dynamics.png",
        "Training dynamics of the MLP against step + 1 (log scale), bands = +-1 standard error "
        "over points. Top left: local complexity (theory preset, sigma as configured) at train "
        "and test points; top right: local rank of each hidden layer's pre-activation "
        "Jacobian; bottom left: total variation of the logits; bottom right: train, test and "
        "PGD adversarial accuracy. Vertical line (legend below): the first step with train "
        f"accuracy >= {INTERPOLATION}. Look for LC falling after it while the deep layers' rank "
        "collapses and the PGD accuracy rises. The train-point LC uses the same noise at every "
        "step.",
    )


EXPERIMENT = Experiment(
    name="lc-dynamics",
    title="Local complexity, local rank and robustness over training",
    paper="local_complexity",
    description=(
        "Trains an MLP and logs LC (train and test points), per-layer local rank, total "
        "variation, accuracy and PGD adversarial accuracy at log-spaced steps: LC drops late "
        "in training, together with the deep layers' local rank, and robustness arrives late."
    ),
    config=LCDynamicsConfig,
    run=run,
    order=1,
    key_numbers={
        "lc_train_init": ("local complexity at the training points at step 0", "1 / input unit"),
        "lc_train_end": ("local complexity at the training points at the end", "1 / input unit"),
        "lc_test_end": ("local complexity at the test points at the end", "1 / input unit"),
        "adv_accuracy_end": ("PGD adversarial accuracy at the end", "fraction"),
        "*_accuracy_end": ("{0} accuracy at the end", "fraction"),
        "interpolation_step": (
            "first step with train accuracy at the interpolation level",
            "steps",
        ),
        "lc_train_test_median_rel_gap": ("median |LC train - LC test| / mean LC", "fraction"),
        "lc_at_interp": ("LC at the training points at interpolation", "1 / input unit"),
        "lc_drop": ("LC drop from interpolation to the end, paired over points", "1 / input unit"),
        "lc_drop_stderr": ("standard error of the LC drop", "1 / input unit"),
        "rank_at_interp.layer*": ("local rank of layer {0} at interpolation", "dimensions"),
        "rank_end.layer*": ("local rank of layer {0} at the end", "dimensions"),
        "rank_rel_drop.layer*": (
            "relative drop of layer {0}'s local rank after interpolation",
            "fraction",
        ),
        "adv_accuracy_at_interp": ("PGD accuracy at interpolation", "fraction"),
        "adv_accuracy_max_after_interp": ("highest PGD accuracy after interpolation", "fraction"),
        "adv_rise_stderr": ("standard error of the PGD accuracy rise", "fraction"),
    },
)
