"""``weight-decay``: local complexity at the end of training against log(1/lambda) over a sweep
of the weight decay lambda (Patel & Montufar, Sec. 6.2 and Fig. 12; spec §2 item 7, §4.5)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

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
from reluscope.figures import log_axis, new_figure
from reluscope.train import Schedule, TrainConfig, probes

#: The paper's R^2 of the linear fit is 0.6972; the linearity claim asks for at least this.
R2_MIN = 0.5
#: Decay has acted at a weight decay when lr x lambda x steps >= this (exp(-3) = 5 %).
MIN_DECAY = 3.0
#: The linearity claim needs the fitted LCs to span at least this fraction of their mean.
EFFECT = 0.2


class WeightDecayConfig(ExperimentConfig):
    """Quick: scikit-learn digits, a 4x64 He-initialised MLP, AdamW for a few thousand steps at
    each lambda. Paper: the authors' MNIST MLP (1000 images, 4x200, AdamW lr 1e-4, batch 64)
    trained 1e5 steps at each lambda (the paper does not list its sweep; ours keeps
    lr x lambda x steps >= 3, where decay has acted: lambda from 0.3)."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 1000,
        "n_test": 1000,
        "hidden": [200, 200, 200, 200],
        "train.lr": 1e-4,
        "train.steps": 100_000,
        "lambdas": [0.3, 0.5, 1.0, 2.0, 4.0],
        "n_points": 1000,
        "seeds": 5,
    }

    data: str = Field("digits", description="data spec; mnist/cifar10 are read from data_dir")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10)
    n_test: int = Field(500, ge=10)
    hidden: list[int] = Field([64, 64, 64, 64], min_length=1)
    init_gain: float = Field(math.sqrt(2), gt=0, description="weights ~ N(0, gain^2/fan_in)")
    train: TrainConfig = Field(
        TrainConfig(optimizer="adamw", lr=2e-3, batch_size=64, steps=3000, loss="ce"),
        description="AdamW training of each lambda (its weight_decay is the lambda); seed and device are the experiment's",
    )
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")
    lambdas: common.DistinctPositive[float] = Field(
        [0.5, 1.0, 2.0, 4.0, 8.0],
        min_length=3,
        description="weight decays (> 0: log(1/lambda) is fitted)",
    )
    n_points: int = Field(256, ge=8, description="training points the final LC is measured on")
    sigma: float = Field(0.01, gt=0, description="LC bias-noise scale")


def run(config: WeightDecayConfig, ctx: RunContext) -> Outcome:
    c = config
    seeds = verdict.seed_configs(c)
    frames = [_run_seed(s, ctx).assign(seed=s.seed) for s in seeds]
    used = used_lambdas(c)
    per_seed = [_seed_numbers(f, c, used) for f in frames]
    numbers, table, fit = per_seed[0]
    figure = _figure(table, fit, used, ctx)
    return Outcome(
        records=pd.concat(frames, ignore_index=True),
        figures=[figure],
        numbers=numbers,
        predictions=_predictions([n for n, _, _ in per_seed], c, used, [s.seed for s in seeds]),
        summary=(
            f"Seed {c.seed}: {len(table)} weight decays from {min(c.lambdas):g} to "
            f"{max(c.lambdas):g}, {c.train.steps} AdamW steps each; fitted on the {len(used)} with "
            f"lr x lambda x steps >= {MIN_DECAY:g}: final LC = {fit['intercept']:.3g} + "
            f"{fit['slope']:.3g} ln(1/lambda), R^2 = {fit['r2']:.3f}."
        ),
    )


def used_lambdas(config: WeightDecayConfig) -> list[float]:
    """The weight decays at which decay has acted: lr x lambda x steps >= MIN_DECAY (the
    weights' decay factor exp(-lr lambda steps) below about 5 %)."""
    return [
        lam for lam in config.lambdas if config.train.lr * lam * config.train.steps >= MIN_DECAY
    ]


def _run_seed(c: WeightDecayConfig, ctx: RunContext) -> pd.DataFrame:
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    schedule = Schedule(frozenset({0, c.train.steps}))
    frames = []
    for lam in c.lambdas:
        model = common.data_mlp(train, c.hidden, c.init_gain, c.seed)
        train_config = common.train_config(c, weight_decay=lam)
        probe_list = [
            probes.accuracy_loss(),
            probes.local_complexity(c.sigma, splits=("train",), n_points=c.n_points),
        ]
        name = f"lambda_{lam:g}" if c.seeds == 1 else f"seed_{c.seed}_lambda_{lam:g}"
        records, _ = common.train_run(
            ctx, name, model, train, test, train_config, probe_list, schedule
        )
        frames.append(records.assign(weight_decay=lam))
    return pd.concat(frames, ignore_index=True)


def _seed_numbers(
    records: pd.DataFrame, c: WeightDecayConfig, used: list[float]
) -> tuple[dict[str, float], pd.DataFrame, dict[str, float]]:
    table = final_table(records, c.train.steps)
    fitted = table.loc[used] if len(used) >= 3 else table.iloc[:0]
    if len(fitted) >= 3:
        fit = fit_line(fitted["log_inv_lambda"].to_numpy(), fitted["lc"].to_numpy())
        effect = float(np.ptp(fitted["lc"]) / fitted["lc"].mean())
    else:
        fit = dict.fromkeys(("slope", "intercept", "r2", "slope_stderr"), math.nan)
        effect = math.nan
    numbers = {
        "slope": fit["slope"],
        "slope_stderr": fit["slope_stderr"],
        "intercept": fit["intercept"],
        "r2": fit["r2"],
        "relative_lc_range": effect,
        "lambdas_fitted": float(len(fitted)),
        "lc_init": float(common.series(records, "lc", "train")["value"].loc[0].iloc[0]),
        **{
            f"lc_final.lambda_{lam:g}": float(v)
            for lam, v in zip(table.index, table["lc"], strict=True)
        },
    }
    return numbers, table, fit


def _predictions(
    per_seed: list[dict[str, float]], c: WeightDecayConfig, used: list[float], seeds: list[int]
) -> list[Prediction]:
    slope_checks, line_checks = [], []
    few = (
        f"only {len(used)} weight decays have lr x lambda x steps >= {MIN_DECAY:g} "
        "(at least 3 are needed for a fit)"
    )
    for n in per_seed:
        slope, err, r2, effect = n["slope"], n["slope_stderr"], n["r2"], n["relative_lc_range"]
        sloped = slope > 2 * err
        slope_checks.append(
            verdict.check(
                sloped,
                f"slope {slope:.4g} +- {err:.3g} per unit of ln(1/lambda)",
                slope,
                err,
                margin=(slope - 2 * err) / err if err > 0 else math.nan,
                why=few
                if len(used) < 3
                else f"the slope {slope:.3g} is not 2 standard errors ({2 * err:.3g}) above 0",
            )
        )
        line_checks.append(
            verdict.check(
                sloped and effect >= EFFECT and r2 >= R2_MIN,
                f"R^2 = {r2:.3f}, LC range {effect:.1%} of its mean over {len(used)} weight "
                f"decays; slope check {'passed' if sloped else 'failed'}",
                r2,
                effect,
                margin=min(r2 - R2_MIN, effect - EFFECT),
                why=few
                if len(used) < 3
                else (
                    "the slope check fails, so linearity in log(1/lambda) is not at issue"
                    if not sloped
                    else f"R^2 {r2:.3f} with an LC range of {effect:.1%} of its mean"
                ),
            )
        )
    source = "Sec. 6.2 and Fig. 12 (final LC against log(1/lambda))"
    return [
        verdict.decide(
            "Final LC decreases as the weight decay grows: the slope of LC against "
            f"log(1/lambda), over the weight decays with lr x lambda x steps >= {MIN_DECAY:g}, "
            "is positive by more than 2 standard errors",
            slope_checks,
            source=source,
            url=verdict.PATEL_MONTUFAR,
            threshold="2 standard errors of the least-squares slope",
            seeds=seeds,
        ),
        verdict.decide(
            f"Final LC is roughly linear in log(1/lambda): R^2 >= {R2_MIN} of the same fit, "
            f"counted only when the slope check holds and LC varies by >= {EFFECT:.0%} of its "
            "mean across the fitted weight decays",
            line_checks,
            source=source + "; the paper reports R^2 = 0.6972",
            url=verdict.PATEL_MONTUFAR,
            threshold=f"R^2 {R2_MIN}: below the paper's 0.70; effect size {EFFECT:.0%}: far "
            "above the 1 % variation of undertrained runs",
            seeds=seeds,
        ),
    ]


def final_table(records: pd.DataFrame, steps: int) -> pd.DataFrame:
    """One row per weight decay (the index): final train LC and its standard error, train and
    test accuracy, and ln(1/lambda)."""
    last = records[(records["step"] == steps) & records["layer"].isna()]
    rows = {}
    for lam, group in last.groupby("weight_decay"):
        get = group.set_index(["metric", "split"])
        rows[lam] = {
            "log_inv_lambda": math.log(1 / lam),
            "lc": get.loc[("lc", "train"), "value"],
            "lc_stderr": get.loc[("lc", "train"), "stderr"],
            "train_accuracy": get.loc[("accuracy", "train"), "value"],
            "test_accuracy": get.loc[("accuracy", "test"), "value"],
        }
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def fit_line(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares line y = intercept + slope x: the slope's standard error and R^2."""
    n = len(x)
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    ss_res, ss_tot = float((resid**2).sum()), float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    stderr = math.sqrt(ss_res / (n - 2) / (xc**2).sum()) if n > 2 else float("nan")
    return {"slope": slope, "intercept": intercept, "r2": r2, "slope_stderr": stderr}


def _figure(
    table: pd.DataFrame, fit: dict[str, float], used: list[float], ctx: RunContext
) -> Figure:
    fig, axes = new_figure(2, 1, size=(4.6, 3.4))
    ax = axes[0]
    fitted = table.index.isin(used)
    for keep, label, style in ((fitted, "fitted runs", "o"), (~fitted, "decay too weak", "x")):
        part = table[keep]
        if len(part):
            ax.errorbar(
                part["log_inv_lambda"],
                part["lc"],
                yerr=part["lc_stderr"],
                fmt=style,
                ms=4,
                capsize=2,
                label=label,
            )
    x = (
        table.loc[fitted, "log_inv_lambda"].to_numpy()
        if fitted.any()
        else table["log_inv_lambda"].to_numpy()
    )
    grid = np.linspace(x.min(), x.max(), 50)
    ax.plot(
        grid,
        fit["intercept"] + fit["slope"] * grid,
        "--",
        label=f"fit: slope {fit['slope']:.3g}, R^2 {fit['r2']:.2f}",
    )
    ax.set_xlabel("ln(1 / weight decay)")
    ax.set_ylabel("final LC, train points (1 / input unit)")
    ax.legend(fontsize="small")
    ax = axes[1]
    ax.plot(table.index, table["train_accuracy"], "o-", label="train")
    ax.plot(table.index, table["test_accuracy"], "s-", label="test")
    log_axis(ax, "x", table.index)
    ax.set_xlabel("weight decay lambda")
    ax.set_ylabel("final accuracy")
    ax.legend(fontsize="small")
    return ctx.figure(
        fig,
        "weight_decay.png",
        "Left: local complexity at the training points at the end of training (error bars: "
        "+-1 standard error over points) against ln(1/lambda), one run per weight decay "
        "lambda, with the least-squares line over the runs where decay has acted (lr x lambda x "
        f"steps >= {MIN_DECAY:g}; crosses: excluded). The paper finds a linear relation with R^2 = "
        "0.70 and LC growing with ln(1/lambda), i.e. shrinking as lambda grows. Right: final "
        "train and test accuracy of the same runs (a run that no longer fits its data at large "
        "lambda makes the LC comparison less meaningful).",
    )


EXPERIMENT = Experiment(
    name="weight-decay",
    title="Weight decay lowers the final local complexity",
    paper="local_complexity",
    description=(
        "Trains the same MLP at a sweep of weight decays and fits the final LC against "
        "log(1/lambda): the paper's representation-cost argument predicts LC <= Theta(log "
        "1/lambda) and finds a linear fit with R^2 = 0.70."
    ),
    config=WeightDecayConfig,
    run=run,
    order=2,
    key_numbers={
        "slope": ("slope of the final LC against ln(1/lambda)", "LC per unit of ln(1/lambda)"),
        "slope_stderr": ("standard error of that slope", "LC per unit of ln(1/lambda)"),
        "intercept": ("intercept of that fit", "1 / input unit"),
        "r2": ("R^2 of that linear fit", "dimensionless"),
        "relative_lc_range": (
            "(max - min) / mean of the final LC over the fitted weight decays",
            "fraction",
        ),
        "lambdas_fitted": ("weight decays in the fit (those where decay has acted)", "count"),
        "lc_init": ("local complexity at initialisation", "1 / input unit"),
        "lc_final.lambda_*": (
            "final local complexity at weight decay lambda = {0}",
            "1 / input unit",
        ),
    },
)
