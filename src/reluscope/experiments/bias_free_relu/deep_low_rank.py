"""``deep-low-rank``: deep bias-free ReLU networks against deep linear networks from a small
start on symmetric data: the singular-value structure of every layer over training (spec
sections 3 and 4).

Both networks start from the same small random weights and train at the same step on the
spec's symmetric cubic-teacher data. The deep linear network learns the linear part in one drop
and ends with nearly rank-one layers. The deep ReLU network stays longer on its first plateau,
then reaches the linear floor (its linear-like stage), then learns the nonlinear odd part of the
target and goes below the floor. The stage is the first weight snapshot at which the ReLU loss
is within ``STAGE_TOLERANCE`` of the floor.

In the linear-like stage a bias-free ReLU network computes an odd linear function, which it
can only route through ReLU layers as two paths, ReLU(v^T x) - ReLU(-v^T x); so we expect the
first layer to be rank one like the linear network's but each middle layer to carry the two
paths as two equally strong directions (rank two) [derived here, not in the spec].
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from reluscope.dynamics import (
    compare,
    half_way_step,
    layer_spectra,
    linear_floor,
    random_init,
)
from reluscope.dynamics.deep import LayerSpectra
from reluscope.experiments import Experiment, Figure, Outcome, Prediction, RunContext, verdict
from reluscope.experiments.bias_free_relu.common import (
    InitStd,
    Slope,
    Steps,
    StepSize,
    TeacherConfig,
    curve_rows,
    snapshot_steps,
)
from reluscope.figures import log_axis, new_figure

STAGE_TOLERANCE = 0.01  # relative distance of the ReLU loss from the floor in its linear stage
RANK_ONE = 0.12  # sigma_2 / sigma_1 below this: rank one (spec: linear nets end at 0.08-0.10)
TWO_PATHS = 0.8  # middle layers: sigma_2 / sigma_1 above this (two equal directions)
PLATEAU_RATIO = (2.5, 3.5)  # ReLU / linear half-way steps (spec: 1695 / 569 = 2.98)
BELOW = 0.5  # the ReLU net ends below BELOW x floor (spec: 0.20 / 0.601)
SPREAD = 0.3  # ... with a first layer no longer rank one (spec: sigma_2 / sigma_1 ~ 0.6)
SHOWN = 10  # singular values drawn per layer
NETS = {"relu": "bias-free ReLU", "linear": "linear"}
COLOURS = {"relu": "tab:red", "linear": "tab:blue"}


class DeepLowRankConfig(TeacherConfig):
    """Quick scale: d = 10, 400 points, lr = 0.03, 3000 steps. Paper scale: the spec's
    section 4 (d = 20, 1000 points, depth 3 with 50 units per hidden layer, s0 = 0.01,
    lr = 0.01, 6000 steps)."""

    PAPER: ClassVar[dict[str, Any]] = {"n": 500, "d": 20, "lr": 0.01, "steps": 6000, "seeds": 5}

    d: int = Field(10, ge=2, description="input dimension")
    depth: int = Field(3, ge=3, description="weight layers (3: two hidden layers)")
    hidden: int = Field(50, ge=3, description="units in every hidden layer")
    init_std: InitStd = 0.01
    lr: StepSize = 0.03
    steps: Steps = 3000
    snapshots: int = Field(61, ge=2, description="times at which the spectra are taken")
    alpha: Slope = Field(0.0, description="slope of the 'ReLU' net (0: ReLU; 1: linear, a control)")
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")


def run(config: DeepLowRankConfig, ctx: RunContext) -> Outcome:
    """Train both deep networks side by side at every seed and take every layer's spectrum
    over training; figures and key numbers are those of the first seed."""
    seeds = verdict.seed_configs(config)
    results = [_run_seed(c, ctx) for c in seeds]
    numbers, figures = results[0]["numbers"], results[0]["draw"]()
    records = verdict.seed_records([r["rows"] for r in results], seeds)
    return Outcome(
        records=records,
        figures=figures,
        numbers=numbers,
        predictions=_predictions(
            [r["numbers"] for r in results], config.depth, [c.seed for c in seeds]
        ),
        summary=f"Seed {config.seed}: " + _summary(numbers, config.depth),
    )


def _run_seed(config: DeepLowRankConfig, ctx: RunContext) -> dict[str, Any]:
    x, y = config.teacher()
    floor = linear_floor(x, y)
    widths = (config.d, *[config.hidden] * (config.depth - 1), 1)
    steps = snapshot_steps(config.steps, config.snapshots)
    ctx.say(f"deep-low-rank: seed {config.seed}, depth {config.depth}, {config.steps} steps")
    cmp = compare(
        x,
        y,
        random_init(widths, config.init_std, seed=config.seed + 1),
        alpha=config.alpha,
        lr=config.lr,
        steps=config.steps,
        linear="same",
        snapshots=steps,
        device=config.device,
    )
    losses = {"relu": cmp.bias_free.loss, "linear": cmp.linear.loss}
    spectra = {"relu": layer_spectra(cmp.bias_free), "linear": layer_spectra(cmp.linear)}
    near = [i for i, s in enumerate(steps) if abs(losses["relu"][s] / floor - 1) < STAGE_TOLERANCE]
    stage = near[0] if near else None

    rows: list[dict[str, Any]] = []
    for net in NETS:
        rows += curve_rows(losses[net], net=net)
        rows += spectra[net].to_records(net=net)

    def draw() -> list[Figure]:
        return [
            _ratio_figure(ctx, losses, spectra, floor, stage, steps),
            _spectrum_figure(ctx, spectra, stage, steps),
        ]

    return dict(numbers=_numbers(losses, spectra, floor, stage, steps), rows=rows, draw=draw)


def _summary(numbers: dict[str, float], depth: int) -> str:
    """What the run shows, in numbers."""
    layers = _layers(depth)
    floor = numbers["linear_floor"]
    linear = max(numbers[f"final_ratio2_linear_layer{layer}"] for layer in layers)
    text = (
        f"Deep linear: final loss {numbers['final_loss_linear'] / floor:.4f} x the floor, largest "
        f"final sigma_2/sigma_1 {linear:.3f}. Deep ReLU: half-way {numbers['half_way_ratio']:.2f} "
        "x later; "
    )
    if np.isnan(numbers["stage_step"]):
        text += "never within 1 % of the floor; "
    else:
        middle = [numbers[f"stage_ratio2_relu_layer{layer}"] for layer in layers[1:]]
        text += (
            f"at the floor (step {numbers['stage_step']:.0f}) first-layer sigma_2/sigma_1 "
            f"{numbers['stage_ratio2_relu_layer1']:.3f}, middle-layer "
            f"{', '.join(f'{v:.3f}' for v in middle)}; "
        )
    return text + f"final loss {numbers['final_loss_relu'] / floor:.3f} x the floor."


def _layers(depth: int) -> range:
    """The layers with at least two singular values (all but the scalar-output last)."""
    return range(1, depth)


def _numbers(
    losses: dict[str, np.ndarray],
    spectra: dict[str, LayerSpectra],
    floor: float,
    stage: int | None,
    steps: list[int],
) -> dict[str, float]:
    depth = len(spectra["relu"].values)
    numbers: dict[str, float] = {"linear_floor": floor}
    for net in NETS:
        numbers[f"final_loss_{net}"] = float(losses[net][-1])
        numbers[f"half_way_step_{net}"] = half_way_step(
            np.arange(len(losses[net])), losses[net], floor
        )
        for layer in _layers(depth):
            for k in (2, 3):
                numbers[f"final_ratio{k}_{net}_layer{layer}"] = float(
                    spectra[net].ratio(layer, k)[-1]
                )
    numbers["half_way_ratio"] = numbers["half_way_step_relu"] / numbers["half_way_step_linear"]
    numbers["stage_step"] = float(steps[stage]) if stage is not None else float("nan")
    for layer in _layers(depth):
        for k in (2, 3):
            value = spectra["relu"].ratio(layer, k)[stage] if stage is not None else np.nan
            numbers[f"stage_ratio{k}_relu_layer{layer}"] = float(value)
    return numbers


def _predictions(
    per_seed: list[dict[str, float]], depth: int, seeds: list[int]
) -> list[Prediction]:
    layers = list(_layers(depth))
    middle = layers[1:]
    checks: dict[str, list[verdict.Check]] = {k: [] for k in ("linear", "plateau", "low", "end")}
    checks["paths"] = []
    for numbers in per_seed:
        floor = numbers["linear_floor"]
        linear = max(numbers[f"final_ratio2_linear_layer{layer}"] for layer in layers)
        lin_gap = abs(numbers["final_loss_linear"] / floor - 1)
        ratio = numbers["half_way_ratio"]
        reached = not np.isnan(numbers["stage_step"])
        at = f"at step {numbers['stage_step']:.0f}" if reached else "never within 1 % of the floor"
        first = numbers["stage_ratio2_relu_layer1"]
        third = max(numbers[f"stage_ratio3_relu_layer{layer}"] for layer in layers)
        paths = min(numbers[f"stage_ratio2_relu_layer{layer}"] for layer in middle)
        final = numbers["final_loss_relu"]
        spread = numbers["final_ratio2_relu_layer1"]
        checks["linear"].append(
            verdict.check(
                linear < RANK_ONE and lin_gap < STAGE_TOLERANCE,
                f"largest final sigma_2/sigma_1 {linear:.3f}; final loss {lin_gap:.1e} from the "
                "floor (relative)",
                linear,
                lin_gap,
                margin=min(RANK_ONE - linear, STAGE_TOLERANCE - lin_gap),
                why=f"the deep linear network ends with sigma_2/sigma_1 {linear:.3f} and "
                f"{lin_gap:.1e} from the floor",
            )
        )
        in_band = PLATEAU_RATIO[0] <= ratio <= PLATEAU_RATIO[1]
        checks["plateau"].append(
            verdict.check(
                in_band,
                f"{numbers['half_way_step_relu']:.0f} against "
                f"{numbers['half_way_step_linear']:.0f} steps, ratio {ratio:.2f}",
                ratio,
                margin=min(ratio - PLATEAU_RATIO[0], PLATEAU_RATIO[1] - ratio),
                why=f"the ReLU/linear half-way ratio is {ratio:.2f}, outside "
                f"{PLATEAU_RATIO[0]:g}-{PLATEAU_RATIO[1]:g}",
            )
        )
        two_paths = reached and paths > TWO_PATHS
        checks["paths"].append(
            verdict.check(
                two_paths,
                f"{at}: smallest middle-layer sigma_2/sigma_1 {paths:.3f}",
                paths,
                margin=paths - TWO_PATHS,
                why=f"{at} the weakest middle layer has sigma_2/sigma_1 {paths:.3f}",
            )
        )
        low = reached and third < RANK_ONE and first < RANK_ONE
        checks["low"].append(
            verdict.check(
                low and in_band and two_paths,
                f"{at}: largest sigma_3/sigma_1 {third:.3f}, first-layer sigma_2/sigma_1 "
                f"{first:.3f}; longer plateau {'yes' if in_band else 'no'}, two paths "
                f"{'yes' if two_paths else 'no'}",
                third,
                first,
                margin=min(RANK_ONE - third, RANK_ONE - first),
                why=f"{at}: sigma_3/sigma_1 {third:.3f}, first layer sigma_2/sigma_1 {first:.3f}"
                + (
                    ""
                    if in_band and two_paths
                    else ", and the longer plateau or the two paths are missing"
                ),
            )
        )
        checks["end"].append(
            verdict.check(
                final < BELOW * floor and spread > SPREAD,
                f"final loss {final / floor:.3f} x floor, first-layer sigma_2/sigma_1 {spread:.3f}",
                final,
                spread,
                margin=min(BELOW - final / floor, spread - SPREAD),
                why=f"the ReLU network ends at {final / floor:.3f} x the floor with first-layer "
                f"sigma_2/sigma_1 {spread:.3f}",
            )
        )
    url, fig = verdict.ZHANG, "Sec. 4 (deep bias-free ReLU networks), depth-3 learning curves"
    return [
        verdict.decide(
            f"The deep linear network ends at the linear floor with nearly rank-one layers: "
            f"sigma_2/sigma_1 < {RANK_ONE:g} in every layer",
            checks["linear"],
            source=fig,
            url=url,
            threshold=f"{RANK_ONE:g}: just above the 0.08-0.10 our reference depth-3 deep linear nets "
            "end at; floor within 1 % (relative)",
            seeds=seeds,
        ),
        verdict.decide(
            "The deep ReLU network stays longer on its first plateau: half-way step "
            f"{PLATEAU_RATIO[0]:g}-{PLATEAU_RATIO[1]:g} x the deep linear network's",
            checks["plateau"],
            source=fig,
            url=url,
            threshold="a band around the single observation 1695 / 569 = 2.98 of our reference "
            "depth-3 simulation (not a derived bound; the paper's number is not known)",
            seeds=seeds,
        ),
        verdict.decide(
            "Where the linear network is rank one, each middle ReLU layer carries two "
            f"equally strong directions, sigma_2/sigma_1 > {TWO_PATHS:g}: the paths "
            "ReLU(vᵀx) and ReLU(−vᵀx) of an odd linear function [derived here]",
            checks["paths"],
            source="derived here from the bias-free network's odd symmetry (Sec. 2)",
            url=url,
            threshold=f"{TWO_PATHS:g}: two equal directions give 1, one gives 0",
            seeds=seeds,
        ),
        verdict.decide(
            "In its linear-like stage (first at the linear floor) the deep ReLU network's "
            f"weights are low-rank like the deep linear network's: sigma_3/sigma_1 < {RANK_ONE:g} "
            f"in every layer, the first layer rank one (sigma_2/sigma_1 < {RANK_ONE:g}); counted "
            "only together with the longer plateau and the two paths of the middle layers",
            checks["low"],
            source="Abstract and Sec. 4: low-rank structure resembling deep linear networks",
            url=url,
            threshold=f"{RANK_ONE:g}: the deep linear networks' own final ratio band",
            seeds=seeds,
        ),
        verdict.decide(
            f"After its nonlinear stage the deep ReLU network ends below {BELOW:g} x the "
            f"floor, with a first layer no longer rank one (sigma_2/sigma_1 > {SPREAD:g})",
            checks["end"],
            source=fig,
            url=url,
            threshold="bands around our reference simulation's 0.20 / 0.601 of the floor and "
            "sigma_2/sigma_1 "
            "about 0.6",
            seeds=seeds,
        ),
    ]


def _ratio_figure(
    ctx: RunContext,
    losses: dict[str, np.ndarray],
    spectra: dict[str, LayerSpectra],
    floor: float,
    stage: int | None,
    steps: list[int],
) -> Figure:
    layers = list(_layers(len(spectra["relu"].values)))
    fig, axes = new_figure(1 + len(layers), 1, size=(3.8, 3.2))
    for net in NETS:
        axes[0].plot(losses[net], color=COLOURS[net], label=NETS[net])
        for ax, layer in zip(axes[1:], layers, strict=True):
            ax.plot(
                steps, spectra[net].ratio(layer, 2), color=COLOURS[net], label=f"{NETS[net]} σ₂/σ₁"
            )
            ax.plot(
                steps,
                spectra[net].ratio(layer, 3),
                color=COLOURS[net],
                ls=":",
                label=f"{NETS[net]} σ₃/σ₁",
            )
    axes[0].axhline(floor, color="k", lw=0.8, ls="--", label="linear floor")
    log_axis(axes[0], "y")
    axes[0].set_ylabel("loss")
    for ax, layer in zip(axes[1:], layers, strict=True):
        ax.set_title(f"layer {layer}")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("singular-value ratio")
    for ax in axes:
        ax.set_xlabel("step")
        if stage is not None:
            ax.axvline(steps[stage], color="grey", lw=0.8, ls="-.")
    if stage is not None:
        axes[0].plot(
            [], [], color="grey", lw=0.8, ls="-.", label=f"ReLU at the floor (step {steps[stage]})"
        )
    (h0, l0), (h1, l1) = (ax.get_legend_handles_labels() for ax in axes[:2])
    fig.legend(h0 + h1, l0 + l1, loc="outside lower center", ncols=4)
    return ctx.figure(
        fig,
        "singular_value_ratios.png",
        "Deep bias-free ReLU (red) and deep linear (blue) networks from the same small start. "
        "Left: training loss (log scale) and the linear-regression floor (dashed). Other panels: "
        "σ₂/σ₁ (solid) and σ₃/σ₁ (dotted) of each weight matrix with more than one singular "
        "value, over training; near 0 means rank one. The dash-dotted line marks the ReLU "
        "network's linear-like stage (first within 1 % of the floor), where its first layer "
        "should be rank one like the linear network's and its middle layers rank two (σ₂ ≈ σ₁, "
        "σ₃ small); later, learning the nonlinear odd part raises the ratios again.",
    )


def _spectrum_figure(
    ctx: RunContext, spectra: dict[str, LayerSpectra], stage: int | None, steps: list[int]
) -> Figure:
    layers = list(_layers(len(spectra["relu"].values)))
    fig, axes = new_figure(len(layers), 1, size=(3.8, 3.0))
    picks = [("linear", -1, "linear, end", "-")]
    if stage is not None:
        picks.append(("relu", stage, f"ReLU, step {steps[stage]} (linear-like)", "--"))
    picks.append(("relu", -1, "ReLU, end", "-"))
    for ax, layer in zip(axes, layers, strict=True):
        for net, at, label, style in picks:
            values = spectra[net].values[layer - 1][at][:SHOWN]
            ax.plot(
                np.arange(1, len(values) + 1),
                values / values[0],
                style,
                marker="o",
                ms=3,
                color=COLOURS[net],
                label=label,
            )
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("index k")
        ax.set_ylabel("σ_k / σ₁")
        ax.set_ylim(0, 1.05)
    axes[0].legend()
    return ctx.figure(
        fig,
        "spectra.png",
        f"The largest {SHOWN} singular values of each weight matrix, divided by the largest: the "
        "deep linear network at the end (blue), the deep ReLU network in its linear-like stage "
        "(red dashed) and at the end (red solid). One large value means rank one; the ReLU "
        "network's middle layers show two equal values in the linear-like stage.",
    )


EXPERIMENT = Experiment(
    name="deep-low-rank",
    title="Low-rank weights of deep bias-free ReLU networks vs deep linear networks",
    paper="bias_free_relu",
    description="Deep bias-free ReLU and deep linear networks from the same small start on "
    "symmetric data: loss and singular-value ratios of every layer over training.",
    config=DeepLowRankConfig,
    run=run,
    order=4,
    key_numbers={
        "linear_floor": ("lowest loss a linear map reaches", "loss"),
        "final_loss_relu": ("final loss, deep bias-free ReLU", "loss"),
        "final_loss_linear": ("final loss, deep linear", "loss"),
        "half_way_step_relu": ("step at which the ReLU loss is half-way to the floor", "steps"),
        "half_way_step_linear": ("step at which the linear loss is half-way to the floor", "steps"),
        "final_ratio*_relu_layer*": ("final sigma_{0} / sigma_1 of ReLU layer {1}", "ratio"),
        "final_ratio*_linear_layer*": ("final sigma_{0} / sigma_1 of linear layer {1}", "ratio"),
        "half_way_ratio": ("ReLU half-way step / linear half-way step", "ratio"),
        "stage_step": ("first step with the ReLU loss within 1 % of the linear floor", "steps"),
        "stage_ratio*_relu_layer*": (
            "sigma_{0} / sigma_1 of ReLU layer {1} at that step",
            "ratio",
        ),
    },
)
