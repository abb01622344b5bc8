"""``grokking``: delayed generalisation and the three phases of the neighbourhood local
complexity (Humayun, Balestriero & Baraniuk, ICML 2024; Liu et al.'s Omnigrok initialisation;
spec §3.2-3.3, §5 prediction 15).

At quick scale no one small configuration shows both effects clearly, so two are trained per
seed: the *phases* setting (a large-initialisation MLP on digits, whose LC phases are strong but
which generalises at once) and the *delayed* setting (modular addition, where the test accuracy
stays at chance long after interpolation and then rises to 1). At paper scale Humayun et al.'s
one MNIST run is meant to show both (``delayed=false``)."""

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
    MNIST-1D with cross-entropy they do not at any radius), but the test accuracy is ~0.96
    already at interpolation. So a second run per seed (``delayed``, keys ``delayed_*``) trains
    the delayed-generalisation setting: modular addition mod 23 (70 % of the pairs for
    training), one hidden layer of 200, cross-entropy, AdamW lr 3e-3, weight decay 1, 12 000
    steps: it interpolates by step ~200 at test accuracy 0 and reaches test accuracy ~1 only
    after ~6000 steps. Paper: Humayun et al.'s MNIST setup (1000 images, width 200, MSE on
    one-hot targets, AdamW lr 1e-3, weight decay 0.01, batch 200, alpha 8, float64, 1e5 steps),
    one run for both effects."""

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
        "delayed": False,
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
    delayed: bool = Field(
        True,
        description="also train the delayed-generalisation setting (delayed_*) and decide "
        "delayed generalisation and grokking on it; false: on the one run above",
    )
    delayed_data: str = Field("modular:p=23,op=add", description="data of the delayed setting")
    delayed_n_train: int = Field(370, ge=10, description="training points of the delayed setting")
    delayed_n_test: int = Field(159, ge=10, description="test points of the delayed setting")
    delayed_hidden: list[int] = Field([200], min_length=1, description="its hidden widths")
    delayed_train: Annotated[TrainConfig, common.min_steps(10)] = Field(
        TrainConfig(
            optimizer="adamw",
            lr=3e-3,
            weight_decay=1.0,
            batch_size=200,
            steps=12000,
            loss="ce",
            param_scale=1.0,
        ),
        description="training of the delayed setting; seed and device are the experiment's",
    )


#: The numbers of the delayed run among the key numbers (as ``delayed.KEY``).
DELAYED_NUMBERS = (
    "train_step",
    "test_step",
    "test_at_interp",
    "test_gain",
    "test_gain_stderr",
    "test_max",
    "ascent_end_step",
    "weakest_z",
)
#: The two settings of a seed: LC phases, delayed generalisation (see the module docstring).
SETTINGS = ("phases", "delayed")


def run(config: GrokkingConfig, ctx: RunContext) -> Outcome:
    c = config
    seeds = verdict.seed_configs(c)
    frames, per_seed = [], []
    for s in seeds:
        runs = {"phases": _run_seed(s, ctx, "phases")}
        runs["delayed"] = _run_seed(s, ctx, "delayed") if c.delayed else runs["phases"]
        kept = runs.items() if c.delayed else [("phases", runs["phases"])]
        frames += [f.assign(seed=s.seed, setting=k) for k, f in kept]
        per_seed.append({k: _run_numbers(f) for k, f in runs.items()})
    phases, delayed = per_seed[0]["phases"], per_seed[0]["delayed"]
    numbers = dict(phases)
    if c.delayed:
        numbers.update({f"delayed.{k}": delayed[k] for k in DELAYED_NUMBERS})
    first = [f for f in frames if f["seed"].iloc[0] == c.seed]
    figures = [_figure(first[0], phases, ctx, "grokking.png", "")]
    if c.delayed:
        figures.append(_figure(first[1], delayed, ctx, "grokking_delayed.png", "delayed"))
    grok = delayed if c.delayed else phases
    return Outcome(
        records=pd.concat(frames, ignore_index=True),
        figures=figures,
        numbers=numbers,
        predictions=_predictions(per_seed, [s.seed for s in seeds], c.delayed),
        summary=(
            f"Seed {c.seed}: {c.data}, MLP {c.hidden} at init scale {c.train.param_scale:g}, "
            f"{c.train.steps} AdamW steps ({c.train.loss}, weight decay "
            f"{c.train.weight_decay:g}): strongest LC phases: descent to step "
            f"{phases['descent_end_step']:.0f}, ascent to step {phases['ascent_end_step']:.0f}, "
            f"second descent to step {phases['second_descent_end_step']:.0f} (weakest change "
            f"{phases['weakest_z']:.1f} standard errors)"
            + (
                f"; {c.delayed_data}, MLP {c.delayed_hidden}, {c.delayed_train.steps} steps "
                f"({c.delayed_train.loss}, weight decay {c.delayed_train.weight_decay:g}): "
                if c.delayed
                else ": "
            )
            + f"train accuracy >= {INTERPOLATION} at step {grok['train_step']:.0f} (test "
            f"accuracy {grok['test_at_interp']:.3f} there, {grok['test_max']:.3f} at best, "
            f"90 % of the gain at step {grok['test_step']:.0f})."
        ),
    )


def _run_numbers(frame: pd.DataFrame) -> dict[str, float]:
    """The accuracy steps (:func:`grokking_steps`) and LC phases of one training run."""
    acc = grokking_steps(frame)
    phases = common.lc_phases(common.point_matrix(frame, "neighborhood_point"))
    return {**{k: float(v) for k, v in acc.items()}, **_phase_numbers(phases)}


def _run_seed(c: GrokkingConfig, ctx: RunContext, setting: str) -> pd.DataFrame:
    """Train one seed in ``setting`` ("phases": the keys without a prefix; "delayed": the
    ``delayed_*`` keys) with the accuracy, neighbourhood-LC and weight-norm probes."""
    if setting == "delayed":
        data, n_train, n_test, hidden = (
            c.delayed_data,
            c.delayed_n_train,
            c.delayed_n_test,
            c.delayed_hidden,
        )
        section = c.delayed_train
        every = max(1000, section.steps // 20)
        train_config = TrainConfig(
            **{
                **section.model_dump(),
                "seed": c.seed,
                "device": c.device,
                "checkpoint_every": every,
            }
        )
    else:
        data, n_train, n_test, hidden = c.data, c.n_train, c.n_test, c.hidden
        train_config = common.train_config(c)
    train, test = common.load_splits(data, n_train, n_test, c.data_dir, c.seed)
    model = common.data_mlp(train, hidden, c.init_gain, c.seed)
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
    name = "train" if setting == "phases" else setting
    name = name if c.seeds == 1 else f"{name}_seed_{c.seed}"
    records, _ = common.train_run(
        ctx,
        name,
        model,
        train,
        test,
        train_config,
        probe_list,
        log_steps(train_config.steps, c.n_probes),
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


def _predictions(
    per_seed: list[dict[str, dict[str, float]]], seeds: list[int], two_runs: bool
) -> list[Prediction]:
    """The three predictions over the seeds: delayed generalisation on each seed's "delayed"
    run, the LC phases on its "phases" run, and grokking during the second descent on the
    "delayed" run, which needs both of the others for that seed and the phases in that run
    (without ``two_runs`` the "delayed" run is the "phases" run)."""
    delayed, phases, grok = [], [], []
    for runs in per_seed:
        n = runs["delayed"]
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
        phases.append(_phase_check(runs["phases"]))
        here = _phase_check(n)
        after = math.isfinite(t_test) and t_test > n["ascent_end_step"]
        missing = [
            what
            for what, ok in (
                ("the three phases of the phases run (prediction 2)", phases[-1].holds),
                ("delayed generalisation (prediction 1)", delayed[-1].holds),
                ("the three phases in this run", here.holds),
            )
            if not ok
        ]
        grok.append(
            verdict.check(
                not missing and after,
                f"LC peak at step {n['ascent_end_step']:.0f}, {GAIN_FRACTION:.0%} of the test "
                f"gain at step {t_test:.0f}; phases here {'seen' if here.holds else 'not seen'} "
                f"(weakest {n['weakest_z']:.1f} stderr)",
                n["ascent_end_step"],
                t_test,
                margin=t_test - n["ascent_end_step"] if math.isfinite(t_test) else math.nan,
                why=f"missing: {'; '.join(missing)}"
                if missing
                else f"the test-accuracy gain (step {t_test:.0f}) comes before the LC peak "
                f"(step {n['ascent_end_step']:.0f})",
            )
        )
    url = verdict.HUMAYUN
    return [
        verdict.decide(
            "Delayed generalisation"
            + (
                " (the delayed run; at quick scale modular addition, the task where grokking "
                "was first seen, Power et al. 2022)"
                if two_runs
                else ""
            )
            + ": after interpolation the test "
            f"accuracy still gains at least {MIN_GAIN:g} (and more than 2 standard errors), and "
            f"makes {GAIN_FRACTION:.0%} of that gain only at >= {DELAY_FACTOR:g}x the "
            "interpolation step",
            delayed,
            source="Sec. 1 and Fig. 1 (grokking: generalisation long after interpolation)",
            url=url,
            threshold=f"a gain of {MIN_GAIN:g} in accuracy: far beyond the few points an "
            f"already generalising network still adds (the digits run gains ~0.02); "
            f"{DELAY_FACTOR:g}x: a band well below the orders of magnitude between "
            "interpolation and generalisation in the paper's Fig. 1",
            seeds=seeds,
        ),
        verdict.decide(
            "The neighbourhood LC at training points goes through descent, ascent and a second "
            f"descent{' (the phases run)' if two_runs else ''}: at the best (start, minimum, peak, end) steps each "
            f"change exceeds {common.PHASE_Z:g} standard errors of its per-point paired "
            "differences",
            phases,
            source="Sec. 4 and Fig. 1 (three phases of the local complexity)",
            url=url,
            threshold=f"{common.PHASE_Z:g} paired standard errors for the weakest of the three",
            seeds=seeds,
        ),
        verdict.decide(
            "Grokking happens during the second descent: "
            + ("in the delayed run, " if two_runs else "")
            + "with delayed generalisation (prediction 1) and the three phases (prediction 2"
            + (", and the same test on this run" if two_runs else "")
            + "), the test-accuracy gain is reached after the LC peak",
            grok,
            source="Sec. 4 and Fig. 1 (generalisation during the second descent, region migration)",
            url=url,
            threshold="ordering of steps (no band), only where predictions 1 and 2 hold",
            seeds=seeds,
        ),
    ]


def _phase_check(n: dict[str, float]) -> verdict.Check:
    """Whether the three LC phases of one run are seen (weakest change > PHASE_Z)."""
    weakest = n["weakest_z"]
    text = "; ".join(
        f"{k.replace('_', ' ')} {n.get(k, math.nan):.3g} ({n.get(k + '_z', math.nan):.1f} stderr)"
        for k in ("descent", "ascent", "second_descent")
    )
    return verdict.check(
        weakest > common.PHASE_Z,
        f"steps {n['descent_start_step']:.0f} -> {n['descent_end_step']:.0f} -> "
        f"{n['ascent_end_step']:.0f} -> {n['second_descent_end_step']:.0f}: {text}",
        weakest,
        margin=weakest - common.PHASE_Z,
        why=f"the best (start, minimum, peak, end) steps leave the weakest phase at "
        f"{weakest:.1f} paired standard errors",
    )


def _figure(
    records: pd.DataFrame, numbers: dict[str, float], ctx: RunContext, name: str, setting: str
) -> Figure:
    """The accuracies, neighbourhood LCs and weight norm of one run (``setting``: "" for the
    phases run, "delayed" for the delayed-generalisation run) as the PNG ``name``."""
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
    which = "The delayed-generalisation run. " if setting == "delayed" else "The LC-phases run. "
    return ctx.figure(
        fig,
        name,
        which + "Left: train and test accuracy (log step axis; bands +-1 standard error). Middle: "
        "Humayun et al.'s neighbourhood local complexity, the mean number of neurons whose "
        "boundary crosses a cross-polytope of the configured radius around training, test "
        "and random points. Right: the weights' total Frobenius norm, which weight decay "
        "shrinks from its large initial value. Grey dashed: interpolation; green: end of the "
        "first LC descent; red: the LC peak, where the second descent (region migration) "
        "starts (the steps whose paired per-point changes are strongest). Grokking predicts "
        "the test-accuracy rise after the red line.",
    )


EXPERIMENT = Experiment(
    name="grokking",
    title="Grokking and the three phases of local complexity",
    paper="local_complexity",
    description=(
        "Trains MLPs with weight decay (a large-initialisation one for the LC phases, one on "
        "modular addition for delayed generalisation) and logs accuracy, weight norms and the "
        "neighbourhood LC at train, test and random points: test accuracy rises long after "
        "interpolation, during the LC's second descent."
    ),
    config=GrokkingConfig,
    run=run,
    order=4,
    key_numbers={
        "delayed.*_step": ("the delayed-generalisation run's {0} step", "steps"),
        "delayed.weakest_z": ("the delayed run's weakest LC phase change", "z-score"),
        "delayed.*": ("the delayed-generalisation run's {0}", "fraction"),
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
