"""``grokking``: delayed generalisation of a large-initialisation MLP and the three phases of
the neighbourhood local complexity (Humayun, Balestriero & Baraniuk, ICML 2024; Liu et al.'s
Omnigrok initialisation; spec §3.2-3.3, §5 prediction 15)."""

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
from reluscope.train import TrainConfig, log_steps, probes

#: Train accuracy from which the run counts as interpolating.
INTERPOLATION = 0.99
#: Fraction of the post-interpolation test-accuracy gain that marks generalisation.
GAIN_FRACTION = 0.9
#: "Well after": generalisation at least this many times later than interpolation.
DELAY_FACTOR = 3.0
#: Delayed generalisation needs at least this test-accuracy gain after interpolation.
MIN_GAIN = 0.2


class GrokkingConfig(ExperimentConfig):
    """Every parameter of the MLP is multiplied by ``train.param_scale`` (Omnigrok's alpha) and
    it is trained with AdamW and weight decay. Quick: scikit-learn digits, 3x100, MSE on one-hot
    targets, alpha = 8, weight decay 0.1: the three LC phases appear within 4e4 steps (on
    MNIST-1D with cross-entropy they do not at any radius). Paper: Humayun et al.'s MNIST setup (1000 images, width 200, MSE on one-hot
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
        "seeds": 3,
    }

    data: str = Field("digits", description="data spec (e.g. modular:p=97, mnist)")
    data_dir: str | None = Field(None, description="directory holding MNIST / CIFAR-10 files")
    n_train: int = Field(1000, ge=10)
    n_test: int = Field(500, ge=10)
    hidden: list[int] = Field([100, 100, 100], min_length=1)
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
            weight_decay=0.1,
            batch_size=200,
            steps=40000,
            loss="mse",
            param_scale=8.0,
        ),
        description="AdamW training; param_scale is Omnigrok's alpha; seed and device are the experiment's",
    )
    n_probes: int = Field(30, ge=5, description="log-spaced probe steps")
    radius: float = Field(0.5, gt=0, description="cross-polytope radius r, input units")
    n_vertices: int = Field(50, ge=2, description="cross-polytope vertices (2P)")
    n_points: int = Field(128, ge=8, description="points per split for the neighbourhood LC")
    include_output: bool = Field(
        True, description="count the output layer's neurons too (as Humayun et al. do)"
    )
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")


def run(config: GrokkingConfig, ctx: RunContext) -> Outcome:
    c = config
    seeds = verdict.seed_configs(c)
    frames = [_run_seed(s, ctx).assign(seed=s.seed) for s in seeds]
    per_seed = []
    for frame in frames:
        acc = grokking_steps(frame)
        phases = common.lc_phases(common.point_matrix(frame, "neighborhood_point"))
        per_seed.append({**{k: float(v) for k, v in acc.items()}, **_phase_numbers(phases)})
    numbers = per_seed[0]
    figure = _figure(frames[0], numbers, ctx)
    return Outcome(
        records=pd.concat(frames, ignore_index=True),
        figures=[figure],
        numbers=numbers,
        predictions=_predictions(per_seed, [s.seed for s in seeds]),
        summary=(
            f"Seed {c.seed}: {c.data}, MLP {c.hidden} at init scale {c.train.param_scale:g}, {c.train.steps} "
            f"AdamW steps ({c.train.loss}, weight decay {c.train.weight_decay:g}): train accuracy >= "
            f"{INTERPOLATION} at step {numbers['train_step']:.0f} (test accuracy "
            f"{numbers['test_at_interp']:.3f} there, {numbers['test_max']:.3f} at best); "
            f"strongest LC phases: descent to step {numbers['descent_end_step']:.0f}, ascent "
            f"to step {numbers['ascent_end_step']:.0f}, second descent to step "
            f"{numbers['second_descent_end_step']:.0f} (weakest change "
            f"{numbers['weakest_z']:.1f} standard errors)."
        ),
    )


def _run_seed(c: GrokkingConfig, ctx: RunContext) -> pd.DataFrame:
    train, test = common.load_splits(c.data, c.n_train, c.n_test, c.data_dir, c.seed)
    model = common.data_mlp(train, c.hidden, c.init_gain, c.seed)
    train_config = common.train_config(c)
    probe_list = [
        probes.accuracy_loss(),
        common.neighborhood_points_probe(
            c.radius, c.n_vertices, c.n_points, c.seed, include_output=c.include_output
        ),
        probes.neighborhood(
            c.radius,
            c.n_vertices,
            splits=("test", "random"),
            n_points=c.n_points,
            seed=c.seed,
            include_output=c.include_output,
        ),
        probes.weight_norms(),
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
    reached = math.nan if t_test is None else t_test
    out.update(train_step=t_train, test_step=reached, test_at_interp=start, test_gain=gain)
    out["test_gain_stderr"] = float(np.hypot(after["stderr"].iloc[0], after.loc[best, "stderr"]))
    return out


def _phase_numbers(phases: dict[str, float]) -> dict[str, float]:
    """The phases of :func:`common.lc_phases` under the names of the key numbers."""
    renamed = {
        "start": "descent_start_step",
        "descent_end": "descent_end_step",
        "ascent_end": "ascent_end_step",
        "end": "second_descent_end_step",
    }
    return {renamed.get(k, k): v for k, v in phases.items()}


def _predictions(per_seed: list[dict[str, float]], seeds: list[int]) -> list[Prediction]:
    delayed, phases, grok = [], [], []
    for n in per_seed:
        t_train, t_test = n["train_step"], n["test_step"]
        gain, gain_err = n["test_gain"], n["test_gain_stderr"]
        late = math.isfinite(t_test) and t_test >= DELAY_FACTOR * max(t_train, 1)
        big = gain >= MIN_GAIN and gain > 2 * gain_err
        delayed.append(
            verdict.check(
                late and big,
                f"train accuracy >= {INTERPOLATION} at step {t_train:.0f}; test accuracy "
                f"{n['test_at_interp']:.3f} there, gain {gain:.3f} (2 x stderr "
                f"{2 * gain_err:.3f}), {GAIN_FRACTION:.0%} of it at step {t_test:.0f}",
                t_train,
                gain,
                margin=min(gain - MIN_GAIN, (t_test / max(t_train, 1)) - DELAY_FACTOR)
                if math.isfinite(t_test)
                else math.nan,
                why=(
                    "the run never interpolates"
                    if math.isnan(t_train)
                    else f"after interpolation the test accuracy gains only {gain:.3f}"
                    if not big
                    else f"the gain is made by step {t_test:.0f}, under {DELAY_FACTOR:g}x the "
                    f"interpolation step {t_train:.0f}"
                ),
            )
        )
        weakest = n["weakest_z"]
        seen = weakest > common.PHASE_Z
        text = "; ".join(
            f"{k.replace('_', ' ')} {n.get(k, math.nan):.3g} ({n.get(k + '_z', math.nan):.1f} "
            "stderr)"
            for k in ("descent", "ascent", "second_descent")
        )
        phases.append(
            verdict.check(
                seen,
                f"steps {n['descent_start_step']:.0f} -> {n['descent_end_step']:.0f} -> "
                f"{n['ascent_end_step']:.0f} -> {n['second_descent_end_step']:.0f}: {text}",
                weakest,
                margin=weakest - common.PHASE_Z,
                why=f"the best (start, minimum, peak, end) steps leave the weakest phase at "
                f"{weakest:.1f} paired standard errors",
            )
        )
        after = math.isfinite(t_test) and t_test > n["ascent_end_step"]
        grok.append(
            verdict.check(
                seen and after,
                f"LC peak at step {n['ascent_end_step']:.0f}, test gain at step {t_test:.0f}; "
                f"three phases {'seen' if seen else 'not seen'}",
                n["ascent_end_step"],
                t_test,
                margin=t_test - n["ascent_end_step"] if math.isfinite(t_test) else math.nan,
                why="the three LC phases are not seen, so there is no second descent"
                if not seen
                else f"the test-accuracy gain (step {t_test:.0f}) comes before the LC peak "
                f"(step {n['ascent_end_step']:.0f})",
            )
        )
    url = verdict.HUMAYUN
    return [
        verdict.decide(
            "Delayed generalisation: after interpolation the test accuracy still gains at "
            f"least {MIN_GAIN:g} (and more than 2 standard errors), and makes "
            f"{GAIN_FRACTION:.0%} of that gain only at >= {DELAY_FACTOR:g}x the interpolation "
            "step",
            delayed,
            source="Sec. 4 (grokking), Fig. 1",
            url=url,
            threshold=f"a gain of {MIN_GAIN:g} in accuracy: far beyond the few points an "
            f"already generalising network still adds; {DELAY_FACTOR:g}x: 'well after'",
            seeds=seeds,
        ),
        verdict.decide(
            "The neighbourhood LC at training points goes through descent, ascent and a second "
            f"descent: at the best (start, minimum, peak, end) steps each change exceeds "
            f"{common.PHASE_Z:g} standard errors of its per-point paired differences",
            phases,
            source="Sec. 4 and Fig. 1 (three phases of the local complexity)",
            url=url,
            threshold=f"{common.PHASE_Z:g} paired standard errors for the weakest of the three",
            seeds=seeds,
        ),
        verdict.decide(
            "Grokking happens during the second descent: the three phases are seen (the previous "
            "prediction) and the test-accuracy gain is reached after the LC peak",
            grok,
            source="Sec. 4 (region migration during the second descent)",
            url=url,
            threshold="ordering of steps (no band)",
            seeds=seeds,
        ),
    ]


def _figure(records: pd.DataFrame, numbers: dict[str, float], ctx: RunContext) -> Figure:
    fig, axes = new_figure(3, 1, size=(4.0, 4.2))
    ax = axes[0]
    for split in ("train", "test"):
        common.plot_series(ax, common.series(records, "accuracy", split), f"{split} accuracy")
    ax.set_ylabel("accuracy")
    ax = axes[1]
    for split in ("train", "test", "random"):
        common.plot_series(ax, common.series(records, "neighborhood", split), f"{split} points")
    ax.set_ylabel("neighbourhood LC (neurons)")
    ax = axes[2]
    common.plot_series(ax, common.series(records, "weight_fro"), "all weights", band=False)
    ax.set_ylabel("weight norm (Frobenius)")
    marks = common.phase_marks(
        {"descent_end": numbers["descent_end_step"], "ascent_end": numbers["ascent_end_step"]}
    )
    if math.isfinite(numbers["train_step"]):
        marks.append((int(numbers["train_step"]), "interpolation", "0.4"))
    common.finish_step_axes(axes, marks)
    return ctx.figure(
        fig,
        "grokking.png",
        "Left: train and test accuracy (log step axis; bands +-1 standard error). Middle: "
        "Humayun et al.'s neighbourhood local complexity, the mean number of neurons whose "
        "boundary crosses a cross-polytope of the configured radius around training, test "
        "and random points. Right: the weights' total Frobenius norm, which weight decay "
        "shrinks from its large initial value. Grey dashed: interpolation; green: end of the "
        "first LC descent; red: the LC peak, where the second descent (region migration) "
        "starts (the steps whose paired per-point changes are strongest). Grokking predicts the test-accuracy rise after the red line.",
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
    key_numbers={
        "train_step": ("first step with train accuracy >= 0.99", "steps"),
        "test_step": ("first step with 90 % of the later test-accuracy gain made", "steps"),
        "test_at_interp": ("test accuracy when train accuracy first reaches 0.99", "fraction"),
        "test_gain": ("test-accuracy gain from then to its maximum", "fraction"),
        "test_gain_stderr": ("standard error of that gain", "fraction"),
        "test_max": ("highest test accuracy", "fraction"),
        "test_end": ("test accuracy at the end", "fraction"),
        "descent_start_step": ("start of the first LC descent", "steps"),
        "descent_end_step": ("end of the first LC descent (LC minimum)", "steps"),
        "ascent_end_step": ("end of the LC ascent (LC peak)", "steps"),
        "second_descent_end_step": ("end of the second LC descent", "steps"),
        "weakest_z": ("weakest of the three phase changes, in standard errors", "z-score"),
        "*_stderr": ("standard error of the {0} change (paired over points)", "neurons"),
        "*_z": ("{0} change over its standard error", "z-score"),
        "*descent": ("neighbourhood-LC {0}descent, paired over points", "neurons"),
        "ascent": ("neighbourhood-LC ascent, paired over points", "neurons"),
    },
)
