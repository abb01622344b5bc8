"""``breaking-symmetry``: what breaks the equivalence of two-layer bias-free ReLU networks with
linear networks (spec section 4).

A ReLU network (alpha = 0) is trained from a small random start in six settings: the symmetric
control (symmetric whitened data, odd target, no biases, a wide hidden layer), and five
departures from it, one at a time: an even target component |x_2|, inputs shifted off the origin
(not augmented, not whitened), a finite Gaussian sample not augmented with its negatives, hidden
biases, and a hidden layer too narrow to hold units of both signs. Each is set against the
linear-regression floor of its data (the best any linear network can do) and against its
equivalent linear network (weights x 1/sqrt(2), half the step, no biases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator
from torch import Tensor

from reluscope.dynamics import (
    equivalent_linear,
    gradient_descent,
    linear_floor,
    random_biases,
    random_init,
    symmetry_report,
)
from reluscope.experiments import Experiment, Figure, Outcome, Prediction, RunContext, verdict
from reluscope.experiments.bias_free_relu.common import (
    Steps,
    StepSize,
    TeacherConfig,
    curve_rows,
)
from reluscope.figures import log_axis, new_figure

FLOOR_TOLERANCE = 1e-4  # spec 5, prediction 5
LINEAR_TOLERANCE = 0.01  # spec 5, prediction 3
BELOW = 0.95  # a breaking case ends below BELOW x floor (the control sits at it to ~1e-8)
ABOVE = 2.0  # the narrow layer ends above ABOVE x floor (spec: 2.35 against 0.601)
NARROW_TOLERANCE = 1e-3  # relative, against the best single ReLU unit

BREAKERS = ("even_target", "shifted_inputs", "unaugmented", "biases")
CASES = ("symmetric", *BREAKERS, "narrow")
LABELS = {
    "symmetric": "symmetric control",
    "even_target": "even target part",
    "shifted_inputs": "shifted inputs",
    "unaugmented": "unaugmented sample",
    "biases": "biases",
    "narrow": "narrow layer",
}
CAUSES = {
    "even_target": "An even target component breaks",
    "shifted_inputs": "Inputs shifted off the origin break",
    "unaugmented": "A finite sample not augmented with its negatives breaks",
    "biases": "Hidden biases break",
}
DATA_BREAKERS = ("even_target", "shifted_inputs", "unaugmented")


class BreakingConfig(TeacherConfig):
    """Quick scale: d = 10, 400 points, lr = 0.02, 5000 steps. Paper scale: the spec's
    section 4 (d = 20, 1000 points, H = 100, s0 = 1e-3, lr = 0.01, 20,000 steps)."""

    PAPER: ClassVar[dict[str, Any]] = {
        "n": 500,
        "d": 20,
        "lr": 0.01,
        "steps": 20000,
        "seeds": 5,
    }

    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")
    d: int = Field(10, ge=2, description="input dimension (the even part uses x_2)")
    hidden: int = Field(100, ge=2, description="hidden units of the wide networks")
    narrow: int = Field(1, ge=1, description="hidden units of the too-narrow network")
    init_std: float = Field(
        1e-3, gt=0, description="initial weights and hidden biases: init_std * N(0, 1)"
    )
    lr: StepSize = 0.02
    shifted_lr: float = Field(
        0.5, gt=0, le=1, description="step factor for the shifted inputs (not whitened)"
    )
    steps: Steps = 5000
    even: float = Field(1.0, gt=0, description="weight of the even target part |x_2|")
    shift: float = Field(0.5, gt=0, description="input mean in every coordinate")

    @model_validator(mode="after")
    def _check(self) -> BreakingConfig:
        if self.narrow >= self.hidden:
            raise ValueError(f"narrow ({self.narrow}) must be < hidden ({self.hidden})")
        return self


@dataclass(frozen=True)
class Case:
    """One setting: its data, hidden width, step and whether the network has biases."""

    name: str
    x: Tensor
    y: Tensor
    hidden: int
    lr: float
    biases: bool


def _cases(config: BreakingConfig) -> list[Case]:
    x, y = config.teacher()
    xe, ye = config.teacher(even=config.even)
    xs, ys = config.teacher(shift=config.shift, augment=False, whiten=False)
    xu, yu = config.teacher(augment=False)
    wide, lr = config.hidden, config.lr
    return [
        Case("symmetric", x, y, wide, lr, False),
        Case("even_target", xe, ye, wide, lr, False),
        Case("shifted_inputs", xs, ys, wide, lr * config.shifted_lr, False),
        Case("unaugmented", xu, yu, wide, lr, False),
        Case("biases", x, y, wide, lr, True),
        Case("narrow", x, y, config.narrow, lr, False),
    ]


def run(config: BreakingConfig, ctx: RunContext) -> Outcome:
    """Train each case and its equivalent linear network at every seed; compare final losses
    with the floor. Figures and key numbers are those of the first seed."""
    seeds = verdict.seed_configs(config)
    per_seed = [_run_seed(c, ctx) for c in seeds]
    results, numbers = per_seed[0]["results"], per_seed[0]["numbers"]
    records = verdict.seed_records([r["rows"] for r in per_seed], seeds)
    figures = [_final_figure(ctx, results), _curve_figure(ctx, results)]
    broken = [n for n in BREAKERS if numbers[f"final_over_floor_{n}"] < BELOW]
    return Outcome(
        records=records,
        figures=figures,
        numbers=numbers,
        predictions=_predictions(per_seed, config.narrow, [c.seed for c in seeds]),
        sanity_checks=[_symmetry_check(results)],
        summary=(
            f"Seed {config.seed}: the symmetric control ends "
            f"{abs(numbers['final_loss_symmetric'] - numbers['linear_floor_symmetric']):.1e} "
            f"from the linear floor; {len(broken)} of {len(BREAKERS)} symmetry breakers end "
            f"below {BELOW:g} x their floor "
            f"({', '.join(LABELS[n] for n in broken) or 'none'}), and a {config.narrow}-unit "
            f"layer stays at {numbers['final_over_floor_narrow']:.2f} x the floor."
        ),
    )


def _run_seed(config: BreakingConfig, ctx: RunContext) -> dict[str, Any]:
    """Train each case and its equivalent linear network at one seed."""
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    for case in _cases(config):
        ctx.say(f"breaking-symmetry: seed {config.seed}, {case.name}")
        widths = (config.d, case.hidden, 1)
        start = random_init(widths, config.init_std, seed=config.seed + 1)
        biases = (
            random_biases(widths, config.init_std, seed=config.seed + 1) if case.biases else None
        )
        train: dict[str, Any] = dict(steps=config.steps, device=config.device)
        relu = gradient_descent(
            case.x, case.y, start, biases=biases, alpha=0.0, lr=case.lr, **train
        )
        lin_start, lin_lr = equivalent_linear(start, case.lr, 0.0)
        linear = gradient_descent(case.x, case.y, lin_start, alpha=1.0, lr=lin_lr, **train)
        report = symmetry_report(case.x, case.y)
        results[case.name] = dict(
            relu=relu.loss,
            linear=linear.loss,
            floor=linear_floor(case.x, case.y),
            zero_loss=0.5 * float((case.y**2).mean()),
            gap=float(np.max(np.abs(relu.loss - linear.loss)) / relu.loss[0]),
            symmetric=report.symmetric,
            odd_residual=report.odd_residual_corr,
        )
        rows += curve_rows(relu.loss, case=case.name, net="relu")
        rows += curve_rows(linear.loss, case=case.name, net="equivalent_linear")
        rows.append(
            dict(
                case=case.name, net="data", metric="linear_floor", value=results[case.name]["floor"]
            )
        )

    numbers: dict[str, float] = {}
    for name, r in results.items():
        numbers[f"final_loss_{name}"] = float(r["relu"][-1])
        numbers[f"linear_floor_{name}"] = r["floor"]
        numbers[f"final_over_floor_{name}"] = float(r["relu"][-1] / r["floor"])
        numbers[f"max_rel_gap_to_linear_{name}"] = r["gap"]
        numbers[f"data_symmetric_{name}"] = float(r["symmetric"])
    narrow = results["narrow"]
    numbers["narrow_best_single_unit"] = 0.5 * (narrow["zero_loss"] + narrow["floor"])
    return dict(results=results, numbers=numbers, rows=rows)


def _predictions(per_seed: list[dict[str, Any]], narrow: int, seeds: list[int]) -> list[Prediction]:
    url = verdict.ZHANG
    control_checks, narrow_checks, single_checks = [], [], []
    breaker_checks: dict[str, list[verdict.Check]] = {name: [] for name in BREAKERS}
    for seed in per_seed:
        results, numbers = seed["results"], seed["numbers"]
        control = results["symmetric"]
        gap = abs(control["relu"][-1] - control["floor"])
        control_checks.append(
            verdict.check(
                gap < FLOOR_TOLERANCE and control["gap"] <= LINEAR_TOLERANCE,
                f"|L_final - floor| = {gap:.1e} (floor {control['floor']:.4f}); max "
                f"|L_relu - L_lin| / L0 = {control['gap']:.1e}",
                gap,
                control["gap"],
                margin=min(FLOOR_TOLERANCE - gap, LINEAR_TOLERANCE - control["gap"]),
                why=f"the control ends {gap:.1e} from the floor and strays {control['gap']:.1e} "
                "from its equivalent linear network",
            )
        )
        for name in BREAKERS:
            ratio = numbers[f"final_over_floor_{name}"]
            breaker_checks[name].append(
                verdict.check(
                    ratio < BELOW,
                    f"final {results[name]['relu'][-1]:.4f} = {ratio:.3f} x floor "
                    f"{results[name]['floor']:.4f}",
                    ratio,
                    margin=BELOW - ratio,
                    why=f"with {LABELS[name]} the ReLU network ends at {ratio:.3f} x the floor",
                )
            )
        ratio = numbers["final_over_floor_narrow"]
        narrow_checks.append(
            verdict.check(
                ratio > ABOVE,
                f"final {results['narrow']['relu'][-1]:.4f} = {ratio:.2f} x floor",
                ratio,
                margin=ratio - ABOVE,
                why=f"the narrow network ends at only {ratio:.2f} x the floor",
            )
        )
        best = numbers["narrow_best_single_unit"]
        final = float(results["narrow"]["relu"][-1])
        rel = abs(final / best - 1)
        single_checks.append(
            verdict.check(
                rel < NARROW_TOLERANCE,
                f"final {final:.5f}, predicted {best:.5f} (relative gap {rel:.1e})",
                rel,
                margin=NARROW_TOLERANCE - rel,
                why=f"the single unit ends {rel:.1e} (relative) away from the best single-unit "
                "loss",
            )
        )
    section4 = "Sec. 4 (what breaks the equivalence), Fig. 4"
    out = [
        verdict.decide(
            f"Symmetric control: the ReLU network ends at the linear-regression floor, to "
            f"< {FLOOR_TOLERANCE:g}, and stays within {LINEAR_TOLERANCE:.0%} of its equivalent "
            "linear network",
            control_checks,
            source="Sec. 3 (equivalence on symmetric data)",
            url=url,
            threshold="1e-4 in loss units (the even part's residual is about 1e-5) and the "
            "0.7 % for ReLU of our reference simulation (the paper's Fig. 1 shows <= ~0.2 %), "
            "rounded up to 1 %",
            seeds=seeds,
        )
    ]
    for name in BREAKERS:
        out.append(
            verdict.decide(
                f"{CAUSES[name]} the equivalence: the final loss is below {BELOW:g} x "
                "the linear floor",
                breaker_checks[name],
                source=section4,
                url=url,
                threshold=f"{BELOW:g} x floor: 5 % below the best linear loss, far beyond the "
                "control's 1e-8 distance from it",
                seeds=seeds,
            )
        )
    out.append(
        verdict.decide(
            f"A {narrow}-unit hidden layer cannot cancel its even part: the final loss is "
            f"above {ABOVE:g} x the linear floor",
            narrow_checks,
            source=section4 + " (narrow hidden layer)",
            url=url,
            threshold=f"{ABOVE:g} x floor: below the 2.35 / 0.60 = 3.9 of our reference "
            "simulation with one hidden unit (the paper's number is not known)",
            seeds=seeds,
        )
    )
    if narrow == 1:
        out.append(
            verdict.decide(
                "A single ReLU unit on symmetric whitened data ends at the least loss a "
                "single unit can reach, ½⟨y²⟩ − ¼‖Σyx‖² = (½⟨y²⟩ + floor)/2: its odd part is "
                "a linear unit at half strength and its even part only adds loss [derived here "
                "from the paper's odd/even loss split]",
                single_checks,
                source="Sec. 2 (odd/even decomposition of the loss), derived here",
                url=url,
                threshold=f"{NARROW_TOLERANCE:g} relative: the optimum is reached to rounding "
                "after convergence",
                seeds=seeds,
            )
        )
    return out


def _symmetry_check(results: dict[str, dict[str, Any]]) -> Prediction:
    """The exact symmetry test of the data sets (a property of the data, not of training)."""
    flagged = {name: not r["symmetric"] for name, r in results.items()}
    expected = {name: name in DATA_BREAKERS for name in results}
    return verdict.sanity(
        "The exact symmetry test flags exactly the data that are not closed under "
        "(x, y) -> (-x, -y): the even target, the shifted and the unaugmented samples",
        flagged == expected,
        "asymmetric: "
        + ", ".join(LABELS[n] for n, f in flagged.items() if f)
        + "; odd-residual correlations "
        + ", ".join(f"{LABELS[n]} {r['odd_residual']:.1e}" for n, r in results.items()),
        source="Sec. 2 (symmetric data: closed under (x, y) -> (-x, -y))",
        url=verdict.ZHANG,
        threshold="exact test of the data",
    )


def _final_figure(ctx: RunContext, results: dict[str, dict[str, Any]]) -> Figure:
    fig, (ax,) = new_figure(1, 1, size=(6.4, 3.6))
    names = list(results)
    relu = [results[n]["relu"][-1] / results[n]["floor"] for n in names]
    linear = [results[n]["linear"][-1] / results[n]["floor"] for n in names]
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, relu, width=0.4, color="tab:orange", label="ReLU network")
    ax.bar(pos + 0.2, linear, width=0.4, color="tab:blue", label="equivalent linear network")
    for p, v in zip(pos, relu, strict=True):
        ax.annotate(f"{v:.3g}", (p - 0.2, v), ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="linear floor")
    ax.set_yscale("log")
    ax.set_xticks(pos, [LABELS[n] for n in names], rotation=20)
    ax.set_ylabel("final loss / linear floor")
    ax.legend()
    return ctx.figure(
        fig,
        "final_losses.png",
        "Final training loss divided by the linear-regression floor of each setting's data (log "
        "scale; 1 = the best linear fit, dashed). Orange: the bias-free ReLU network (with "
        "biases in the 'biases' case); blue: its equivalent linear network. The symmetric "
        "control should sit at 1 like its linear partner; the even target part, shifted inputs, "
        "unaugmented sample and biases let the ReLU network go below the floor; the narrow "
        "layer cannot cancel its even part and stays well above it.",
    )


def _curve_figure(ctx: RunContext, results: dict[str, dict[str, Any]]) -> Figure:
    fig, axes = new_figure(3, 2, size=(3.6, 2.8))
    for ax, (name, r) in zip(axes, results.items(), strict=True):
        ax.plot(r["relu"], color="tab:orange", label="ReLU")
        ax.plot(r["linear"], color="tab:blue", ls="--", label="equivalent linear")
        ax.axhline(r["floor"], color="k", lw=0.8, ls=":", label="linear floor")
        log_axis(ax, "y")
        ax.set_title(LABELS[name])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    axes[0].legend(fontsize="small")
    return ctx.figure(
        fig,
        "loss_curves.png",
        "Training loss ½⟨(y − f)²⟩ against gradient-descent steps (log scale) for each setting: "
        "the bias-free ReLU network (orange), its equivalent linear network (blue dashed: "
        "weights ×1/√2, half the step, no biases) and the linear-regression floor (dotted). In "
        "the symmetric control the two curves coincide; each symmetry breaker departs from the "
        "linear curve and falls below the floor, while the narrow layer stalls above it.",
    )


EXPERIMENT = Experiment(
    name="breaking-symmetry",
    title="What breaks the bias-free ReLU / linear equivalence",
    paper="bias_free_relu",
    description="A two-layer bias-free ReLU network against the linear-regression floor: the "
    "symmetric control, an even target component, shifted inputs, an unaugmented sample, "
    "biases and a too-narrow hidden layer.",
    config=BreakingConfig,
    run=run,
    order=2,
    key_numbers={
        "final_loss_*": ("final ReLU loss, case: {0}", "loss"),
        "linear_floor_*": ("lowest loss a linear map reaches, case: {0}", "loss"),
        "final_over_floor_*": ("final ReLU loss / linear floor, case: {0}", "ratio"),
        "max_rel_gap_to_linear_*": (
            "largest ReLU - linear loss difference over the initial loss, case: {0}",
            "fraction",
        ),
        "data_symmetric_*": ("the data are symmetric (x, y) -> (-x, -y), case: {0}", "yes/no"),
        "narrow_best_single_unit": ("loss of the best single-unit fit in the narrow case", "loss"),
    },
)
