"""``grokking``: delayed generalisation of a large-initialisation MLP and the three phases of
the neighbourhood local complexity (Humayun, Balestriero & Baraniuk, ICML 2024; Liu et al.'s
Omnigrok initialisation; spec §3.2-3.3, §5 prediction 15)."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from reluscope.experiments import Experiment, ExperimentConfig, Figure, Outcome, Prediction
from reluscope.experiments.local_complexity import common
from reluscope.experiments.runner import RunContext
from reluscope.report.figures import new_figure
from reluscope.train import TrainConfig, log_steps, probes

SOURCE = "spec local_complexity.md §5, prediction 15 (Humayun et al. 2024)"
#: Train accuracy from which the run counts as interpolating.
INTERPOLATION = 0.99
#: Fraction of the post-interpolation test-accuracy gain that marks generalisation.
GAIN_FRACTION = 0.9
#: "Well after": generalisation at least this many times later than interpolation.
DELAY_FACTOR = 3.0


class GrokkingConfig(ExperimentConfig):
    """Every parameter of the MLP is multiplied by ``train.param_scale`` (Omnigrok's alpha) and it is
    trained with AdamW and weight decay. Quick: MNIST-1D (1000 training signals), 2x200,
    cross-entropy and strong weight decay so that the late phase arrives within a few thousand
    steps. Paper: Humayun et al.'s MNIST setup (1000 images, width 200, MSE on one-hot
    targets, AdamW lr 1e-3, weight decay 0.01, batch 200, alpha 8, float64, 1e5 steps)."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 1000,
        "n_test": 1000,
        "hidden": [200, 200, 200],
        "train.loss": "mse",
        "train.weight_decay": 0.01,
        "train.steps": 100_000,
        "n_probes": 50,
        "n_points": 1000,
        "train.dtype": "float64",
    }

    data: str = Field("mnist1d:n=2000", description="data spec (e.g. modular:p=97, mnist)")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10)
    n_test: int = Field(1000, ge=10)
    hidden: list[int] = Field([200, 200], min_length=1)
    init_gain: float = Field(
        1 / math.sqrt(3),
        gt=0,
        description="weights ~ N(0, gain^2/fan_in) before alpha; 1/sqrt(3) is the standard "
        "deviation of PyTorch's default Linear init that Omnigrok rescales",
    )
    train: Annotated[TrainConfig, common.min_steps(10)] = Field(
        TrainConfig(
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1.0,
            batch_size=200,
            steps=5000,
            loss="ce",
            param_scale=8.0,
        ),
        description="AdamW training; param_scale is Omnigrok's alpha; seed and device are the experiment's",
    )
    n_probes: int = Field(30, ge=5, description="log-spaced probe steps")
    radius: float = Field(0.5, gt=0, description="cross-polytope radius r, input units")
    n_vertices: int = Field(50, ge=2, description="cross-polytope vertices (2P)")
    n_points: int = Field(128, ge=8, description="points per split for the neighbourhood LC")


def run(config: GrokkingConfig, ctx: RunContext) -> Outcome:
    c = config
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    model = common.data_mlp(train, c.hidden, c.init_gain, c.seed)
    train_config = common.train_config(c)
    probe_list = [
        probes.accuracy_loss(),
        probes.neighborhood(c.radius, c.n_vertices, n_points=c.n_points, seed=c.seed),
        probes.weight_norms(),
    ]
    records, _ = common.train_run(
        ctx,
        "train",
        model,
        train,
        test,
        train_config,
        probe_list,
        log_steps(c.train.steps, c.n_probes),
    )
    acc = grokking_steps(records)
    lc = common.series(records, "neighborhood", "train")
    phases = common.lc_phases(lc["value"])
    figure = _figure(records, acc, phases, ctx)
    numbers = {**{k: float(v) for k, v in acc.items()}, **_phase_numbers(lc, phases)}
    return Outcome(
        records=records,
        figures=[figure],
        numbers=numbers,
        predictions=_predictions(numbers),
        summary=(
            f"{c.data}, MLP {c.hidden} at init scale {c.train.param_scale:g}, {c.train.steps} AdamW steps "
            f"({c.train.loss}, weight decay {c.train.weight_decay:g}): train accuracy >= {INTERPOLATION} "
            f"at step {acc['train_step']:.0f}, test accuracy gain reached at step "
            f"{acc['test_step']:.0f}; LC phases end at steps {phases['descent_end']} "
            f"(descent) and {phases['ascent_end']} (ascent)."
        ),
    )


def grokking_steps(records: pd.DataFrame) -> dict[str, float]:
    """``train_step``: first step with train accuracy >= INTERPOLATION; ``test_step``: first
    step at which the test accuracy has made GAIN_FRACTION of its gain from that step to its
    later maximum (NaN when either never happens); ``test_gain`` that gain and
    ``test_gain_stderr`` its standard error (from the accuracies' standard errors)."""
    train = common.series(records, "accuracy", "train")["value"]
    test = common.series(records, "accuracy", "test")
    out = dict.fromkeys(("train_step", "test_step", "test_at_interp", "test_gain"), math.nan)
    out.update(test_max=float(test["value"].max()), test_end=float(test["value"].iloc[-1]))
    out["test_gain_stderr"] = math.nan
    t_train = common.first_step_at_least(train, INTERPOLATION)
    if t_train is None:
        return out
    after = test.loc[t_train:]
    start, best = float(after["value"].iloc[0]), int(after["value"].idxmax())
    gain = float(after.loc[best, "value"]) - start
    t_test = common.first_step_at_least(after["value"], start + GAIN_FRACTION * gain)
    out.update(train_step=t_train, test_step=t_test, test_at_interp=start, test_gain=gain)
    out["test_gain_stderr"] = float(np.hypot(after["stderr"].iloc[0], after.loc[best, "stderr"]))
    return out


def _phase_numbers(lc: pd.DataFrame, phases: dict[str, int]) -> dict[str, float]:
    v, e = lc["value"], lc["stderr"].fillna(0.0)
    p0, p1, p2, p3 = (int(lc.index[0]), phases["descent_end"], phases["ascent_end"], phases["end"])
    return {
        "descent_end_step": float(p1),
        "ascent_end_step": float(p2),
        "lc_init": float(v.loc[p0]),
        "lc_descent_end": float(v.loc[p1]),
        "lc_ascent_end": float(v.loc[p2]),
        "lc_end": float(v.loc[p3]),
        "descent": float(v.loc[p0] - v.loc[p1]),
        "descent_stderr": float(np.hypot(e.loc[p0], e.loc[p1])),
        "ascent": float(v.loc[p2] - v.loc[p1]),
        "ascent_stderr": float(np.hypot(e.loc[p2], e.loc[p1])),
        "second_descent": float(v.loc[p2] - v.loc[p3]),
        "second_descent_stderr": float(np.hypot(e.loc[p2], e.loc[p3])),
    }


def _predictions(n: dict[str, float]) -> list[Prediction]:
    t_train, t_test = n["train_step"], n["test_step"]
    gain, gain_err = n["test_gain"], n["test_gain_stderr"]
    delayed = (
        math.isfinite(t_test) and t_test >= DELAY_FACTOR * max(t_train, 1) and gain > 2 * gain_err
    )
    significant = {k: n[k] > 2 * n[f"{k}_stderr"] for k in ("descent", "ascent", "second_descent")}
    in_phase3 = math.isfinite(t_test) and t_test > n["ascent_end_step"]
    return [
        Prediction(
            "Delayed generalisation: after interpolation the test accuracy still gains more "
            f"than 2 standard errors, and makes {GAIN_FRACTION:.0%} of that gain only at >= "
            f"{DELAY_FACTOR:g}x the interpolation step",
            bool(delayed),
            f"train accuracy >= {INTERPOLATION} at step {t_train:.0f}; test accuracy "
            f"{n['test_at_interp']:.3f} there, gain {gain:.3f} (2 x stderr {2 * gain_err:.3f}), "
            f"{GAIN_FRACTION:.0%} of it at step {t_test:.0f}",
            SOURCE,
        ),
        Prediction(
            "The neighbourhood LC at training points goes through descent, ascent and a second "
            "descent, each change larger than 2 standard errors",
            bool(all(significant.values())),
            "; ".join(
                f"{k.replace('_', ' ')} {n[k]:.3g} (2 x stderr {2 * n[k + '_stderr']:.2g})"
                for k in significant
            ),
            SOURCE,
        ),
        Prediction(
            "Grokking happens during the second descent: the test-accuracy gain is reached "
            "after the LC maximum",
            bool(in_phase3),
            f"LC maximum at step {n['ascent_end_step']:.0f}, test gain at step {t_test:.0f}",
            SOURCE,
        ),
    ]


def _figure(
    records: pd.DataFrame, acc: dict[str, float], phases: dict[str, int], ctx: RunContext
) -> Figure:
    fig, axes = new_figure(3, 1, size=(4.2, 3.4))
    ax = axes[0]
    for split in ("train", "test"):
        common.plot_series(ax, common.series(records, "accuracy", split), f"{split} accuracy")
    ax.set_ylabel("accuracy")
    ax = axes[1]
    for split in ("train", "test", "random"):
        common.plot_series(ax, common.series(records, "neighborhood", split), f"{split} points")
    ax.set_ylabel("neighbourhood LC (neurons crossing)")
    ax = axes[2]
    common.plot_series(ax, common.series(records, "weight_fro"), "all weights", band=False)
    ax.set_ylabel("Frobenius norm of the weights")
    marks = common.phase_marks(phases)
    if math.isfinite(acc["train_step"]):
        marks.append((int(acc["train_step"]), "interpolation", "0.4"))
    common.finish_step_axes(axes, marks)
    return ctx.figure(
        fig,
        "grokking.png",
        "Left: train and test accuracy (log step axis; bands +-1 standard error). Middle: "
        "Humayun et al.'s neighbourhood local complexity, the mean number of neurons whose "
        "boundary crosses a cross-polytope of the configured radius around training, test "
        "and random points. Right: the weights' total Frobenius norm, which weight decay "
        "shrinks from its large initial value. Grey dashed: interpolation; green: end of the "
        "first LC descent; red: the LC maximum, where the second descent (region migration) "
        "starts. Grokking predicts the test-accuracy rise after the red line.",
    )


EXPERIMENT = Experiment(
    name="grokking",
    title="Grokking and the three phases of local complexity",
    paper="local_complexity",
    description=(
        "Trains a large-initialisation MLP with weight decay and logs accuracy, weight norms "
        "and the neighbourhood LC at train, test and random points: test accuracy rises long "
        "after interpolation, during the LC's second descent."
    ),
    config=GrokkingConfig,
    run=run,
    order=4,
)
