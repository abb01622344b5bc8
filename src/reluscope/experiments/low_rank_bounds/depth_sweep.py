"""``depth-sweep``: adding low-rank layers grows the chain-rule bound additively and the
rank-substituted Frobenius bound multiplicatively (Pinto, Rangamani & Poggio; spec
low_rank_bounds.md §3 and §6.2 prediction 1).

Networks of depth L have widths (d_0, d, ..., d, C) and every layer of rank r and spectral
norm at most B. Every bound's complexity term is prefactor x prod_l ||W_l||_2 x a rank/width
factor; the norm product is the same in all of them, so the sum-versus-product question is
about the factors:

* chain rule: F(L) = C1^(L-1) sqrt(r d_1) + (2 C2 + 1) sum_{l=2}^{L} C1^(L-l) sqrt(r d_l). With
  C1 = 1 each added hidden layer adds (2 C2 + 1) sqrt(r d): F is linear in L (the increments
  of log F shrink);
* Golowich-Rakhlin-Shamir (GRS): prod_l ||W_l||_F / ||W_l||_2 <= prod_l sqrt(r_l) = r^(L/2):
  each added layer multiplies it by up to sqrt(r) (log F linear in L).

Both are evaluated a priori at (B, r) and on trained factorised networks with clipped
spectral norms (at their exact ranks and measured Frobenius norms); the other prior bounds
(BFT, NBS, NTS) are recorded alongside.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from reluscope.bounds import (
    SampleStats,
    bft_bound,
    grs_bound,
    low_rank_bound,
    nbs_bound,
    nts_bound,
)
from reluscope.errors import InputError
from reluscope.experiments import Experiment, Figure, Outcome, Prediction, RunContext, verdict
from reluscope.experiments.local_complexity.common import classes
from reluscope.experiments.low_rank_bounds import common
from reluscope.figures import new_figure

#: Tolerance of the closed-form (a priori) checks: they are exact up to rounding.
EXACT = 1e-9
#: Allowed (max - min) / mean of the rank-substituted GRS term's log10 increments on trained
#: networks (its depth factor 1 + sqrt(2 ln(2) L) and the measured norms vary a little).
SPREAD = 0.1
#: At C1 >= sqrt(r) the chain rule's growth per layer is at least this fraction of GRS's.
BREAK_EVEN = 0.9
PRIOR = {"grs": grs_bound, "bft": bft_bound, "nbs": nbs_bound, "nts": nts_bound}
LABELS = {
    "low-rank": "chain rule",
    "grs": "GRS",
    "bft": "BFT",
    "nbs": "NBS",
    "nts": "NTS",
}


class DepthSweepConfig(common.TrainedSweepConfig):
    """Quick: scikit-learn digits, bias-free MLPs 64-64-...-64-10 of depth L in 2..6 with every
    layer of rank 4 and spectral norms clipped at B = 2, 1500 Adam steps each. Paper scale
    (the paper has no experiments, spec §5): MNIST, hidden width 256, rank 8, depths 2..8."""

    PAPER: ClassVar[dict[str, Any]] = {
        "data": "mnist",
        "n_train": 10_000,
        "n_test": 10_000,
        "width": 256,
        "rank": 8,
        "depths": [2, 3, 4, 5, 6, 7, 8],
        "train.steps": 10_000,
        "train.lr": 1e-3,
        "train.batch_size": 128,
        "seeds": 5,
    }

    width: int = Field(64, ge=1, description="width d of every hidden layer")
    rank: int = Field(
        4, ge=1, description="rank r of every layer (r = 1: the product of ranks stays 1)"
    )
    seeds: int = Field(3, ge=1, description="seeds the verdicts are decided over")
    depths: list[int] = Field([2, 3, 4, 5, 6], min_length=3, description="depths L (layers)")

    @field_validator("depths")
    @classmethod
    def _distinct_at_least_two(cls, values: list[int]) -> list[int]:
        if any(v < 2 for v in values) or len(set(values)) != len(values):
            raise ValueError("depths must be distinct integers >= 2 (one hidden layer or more)")
        return sorted(values)


def run(config: DepthSweepConfig, ctx: RunContext) -> Outcome:
    c = config
    seeds = verdict.seed_configs(c)
    frames = [_run_seed(s, ctx).assign(seed=s.seed) for s in seeds]
    per_seed = [_numbers(f, s) for f, s in zip(frames, seeds, strict=True)]
    records = pd.concat(frames, ignore_index=True)
    numbers = per_seed[0]
    first = frames[0]
    return Outcome(
        records=records,
        figures=[_figure(ctx, first, c)],
        numbers=numbers,
        predictions=_predictions(per_seed, c, [s.seed for s in seeds]),
        sanity_checks=_sanity_checks(numbers, c) + _c1_sanity_checks(numbers, c),
        summary=(
            f"Seed {c.seed}: depths {c.depths}, width {c.width}, every layer of rank {c.rank}: "
            f"each added layer adds {numbers['increment_low_rank_a_priori']:.4g} to the "
            f"chain-rule factor (log10 growth per layer falling from "
            f"{numbers['log_increment_low_rank_first']:.3f} to "
            f"{numbers['log_increment_low_rank_last']:.3f}) and multiplies the GRS factor in "
            f"ranks by sqrt(r) = {math.sqrt(c.rank):.3g} "
            f"(+{numbers['log_increment_grs_a_priori']:.3f} in log10); with the trained "
            f"networks' measured Frobenius norms the GRS factor grows "
            f"{numbers['log_increment_grs_trained_mean']:.3f} per layer in log10."
        ),
    )


def c1_values(rank: int) -> list[float]:
    """The chaining constants C1 the sum-versus-product verdict is reported at: 1 (the value
    the sum form assumes), sqrt(r) (break-even) and 4, distinct and ascending."""
    return sorted({1.0, math.sqrt(rank), 4.0})


def _run_seed(c: DepthSweepConfig, ctx: RunContext) -> pd.DataFrame:
    train, test = common.splits(c)
    d0, out = train.x[0].numel(), classes(train)
    if c.rank > min(d0, c.width, out):
        raise InputError(
            f"rank must be <= min(input {d0}, width {c.width}, classes {out}) = "
            f"{min(d0, c.width, out)} (every layer has rank r), got {c.rank}"
        )
    sample = SampleStats.from_data(train.x)
    rows: list[dict[str, Any]] = []
    for depth in c.depths:
        widths = (d0, *[c.width] * (depth - 1), out)
        rows += _a_priori(c, widths, sample)
        ctx.say(f"depth-sweep: seed {c.seed}, training depth {depth}")
        name = f"depth_{depth}" if c.seeds == 1 else f"seed_{c.seed}/depth_{depth}"
        model = common.trained_mlp(ctx, c, name, widths, c.rank, train)
        _, trained = common.trained_rows(c, model, train, test, depth=depth)
        rows += trained
        for c1 in c1_values(c.rank):
            table, _ = common.trained_rows(c.model_copy(update={"C1": c1}), model, train, test)
            rows += [
                row
                for row in table["low-rank"].to_records(part="trained C1", depth=depth, C1=c1)
                if row["metric"] == "log10_main"
            ]
    return pd.DataFrame(rows)


def _a_priori(c: DepthSweepConfig, widths: tuple[int, ...], sample: SampleStats) -> list[dict]:
    """Every bound at (B, r) for the widths: the chain-rule bound, and the prior bounds at the
    worst-case norms of rank r (their rank-substituted forms)."""
    depth = len(widths) - 1
    ranks = [c.rank] * depth
    common_args = dict(margin=c.margin, delta=c.delta)
    results = [
        low_rank_bound(widths, [c.max_norm] * depth, ranks, sample, C1=c.C1, C2=c.C2, **common_args)
    ]
    worst = common.worst_case_norms(widths, c.max_norm, ranks)
    results += [bound(worst, sample, **common_args) for bound in PRIOR.values()]
    rows = common.bound_records(results, part="a priori", depth=depth)
    for c1 in c1_values(c.rank):
        chain = low_rank_bound(
            widths, [c.max_norm] * depth, ranks, sample, C1=c1, C2=c.C2, **common_args
        )
        rows += [
            row
            for row in chain.to_records(part="a priori C1", depth=depth, C1=c1)
            if row["metric"] == "log10_main"
        ]
    return rows


def curve(records: pd.DataFrame, part: str, metric: str, bound: str | None = None) -> pd.Series:
    """One metric of one bound (totals, not per layer) against depth."""
    return common.curve(records, "depth", part, metric, bound)


def _spread(values: np.ndarray) -> float:
    """(max - min) / mean of increments; 0 when they are all 0 (a constant factor)."""
    if np.ptp(values) == 0:
        return 0.0
    return float(np.ptp(values) / abs(values.mean()))


def structure(depths: np.ndarray, log10_factor: np.ndarray) -> dict[str, float]:
    """How a factor F grows with depth L, from log10 F: the increments of F (``increment``:
    their mean, ``increment_spread``: (max - min) / |mean|; 0 for a sum, linear in L), the
    increments of log10 F (``log_increment``: mean, ``log_increment_spread``; 0 for a
    product, F multiplied by the same amount per layer), the first and last log increments,
    and the R^2 of a line fitted to F (``r2_sum``) and to log10 F (``r2_product``)."""
    factor = 10.0**log10_factor
    steps = np.diff(depths)
    increments, log_increments = np.diff(factor) / steps, np.diff(log10_factor) / steps
    return {
        "increment": float(increments.mean()),
        "increment_spread": _spread(increments),
        "log_increment": float(log_increments.mean()),
        "log_increment_spread": _spread(log_increments),
        "log_increment_first": float(log_increments[0]),
        "log_increment_last": float(log_increments[-1]),
        "r2_sum": common.r_squared(depths, factor),
        "r2_product": common.r_squared(depths, log10_factor),
    }


def _numbers(records: pd.DataFrame, c: DepthSweepConfig) -> dict[str, float]:
    depths = np.asarray(c.depths, dtype=float)
    factor = "log10_rank_factor"
    low_a = structure(depths, curve(records, "a priori", factor, "low-rank").to_numpy())
    grs_a = structure(depths, curve(records, "a priori", factor, "grs").to_numpy())
    grs_t = structure(depths, curve(records, "trained", factor, "grs").to_numpy())
    main_low = np.diff(curve(records, "trained", "log10_main", "low-rank").to_numpy())
    main_sub = np.diff(curve(records, "trained", "log10_main_substituted", "grs").to_numpy())
    stable = records[records["metric"] == "stable_rank"]["value"]
    numbers = {
        "increment_low_rank_a_priori": low_a["increment"],
        "increment_low_rank_expected": (2 * c.C2 + 1) * math.sqrt(c.rank * c.width),
        "increment_spread_low_rank_a_priori": low_a["increment_spread"],
        "log_increment_low_rank_first": low_a["log_increment_first"],
        "log_increment_low_rank_last": low_a["log_increment_last"],
        "log_increment_grs_a_priori": grs_a["log_increment"],
        "log_increment_grs_expected": 0.5 * math.log10(c.rank),
        "log_increment_spread_grs_a_priori": grs_a["log_increment_spread"],
        "main_log_increment_low_rank_first": float(main_low[0]),
        "main_log_increment_low_rank_last": float(main_low[-1]),
        "main_log_increments_falling": float(np.all(np.diff(main_low) < 0)),
        "main_log_increment_grs_substituted_first": float(main_sub[0]),
        "main_log_increment_grs_substituted_last": float(main_sub[-1]),
        "main_log_increment_spread_grs_substituted": _spread(main_sub),
        "log_increment_grs_trained_mean": grs_t["log_increment"],
        "r2_sum_grs_trained": grs_t["r2_sum"],
        "r2_product_grs_trained": grs_t["r2_product"],
        "stable_rank_min": float(stable.min()),
        "stable_rank_max": float(stable.max()),
        "max_spectral_norm": float(
            records.loc[records["metric"] == "spectral_norm", "value"].max()
        ),
    }
    grs_a_priori = curve(records, "a priori", "log10_main_substituted", "grs").to_numpy()
    numbers["main_log_increment_grs_substituted_last_a_priori"] = float(
        grs_a_priori[-1] - grs_a_priori[-2]
    )
    for c1 in c1_values(c.rank):
        for part, suffix in (("trained C1", ""), ("a priori C1", "_a_priori")):
            rows = records[(records["part"] == part) & (records["C1"] == c1)]
            main = rows.set_index("depth")["value"].sort_index().to_numpy()
            numbers[f"main_log_increment_low_rank_last{suffix}.C1_{c1:g}"] = float(
                main[-1] - main[-2]
            )
    for depth in c.depths:
        acc = curve(records, "trained", "test_accuracy")[depth]
        numbers[f"test_accuracy.depth_{depth}"] = float(acc)
    return numbers


def _sanity_checks(n: dict[str, float], c: DepthSweepConfig) -> list[Prediction]:
    """The a priori factors are closed forms of (B, r, d): identities, not predictions."""
    expected = n["increment_low_rank_expected"]
    error = abs(n["increment_low_rank_a_priori"] - expected) / expected
    grs_error = abs(n["log_increment_grs_a_priori"] - n["log_increment_grs_expected"])
    spread = n["log_increment_spread_grs_a_priori"]
    return [
        verdict.sanity(
            "A priori, each added rank-r layer of width d adds the same amount (2 C2 + 1) "
            "sqrt(r d) to the chain-rule rank/width factor when C1 = 1",
            n["increment_spread_low_rank_a_priori"] <= EXACT and error <= EXACT,
            f"increments {n['increment_low_rank_a_priori']:.6g} (spread "
            f"{n['increment_spread_low_rank_a_priori']:.2g}), expected {expected:.6g}",
            source="Theorem (chain-rule Gaussian-complexity bound), Sec. 3",
            url=verdict.PINTO,
            threshold=f"exact closed form: rounding ({EXACT:g} relative)",
        ),
        verdict.sanity(
            "A priori, each added rank-r layer multiplies the rank-substituted GRS factor "
            "prod_l sqrt(r_l) by sqrt(r): log10 increments all equal 0.5 log10 r",
            grs_error <= EXACT and (spread <= EXACT or c.rank == 1),
            f"log10 increment {n['log_increment_grs_a_priori']:.6f} (spread {spread:.2g}), "
            f"0.5 log10 {c.rank} = {n['log_increment_grs_expected']:.6f}",
            source="Sec. 3, comparison with Golowich-Rakhlin-Shamir",
            url=verdict.PINTO,
            threshold=f"exact closed form: rounding ({EXACT:g})",
        ),
    ]


def _predictions(
    per_seed: list[dict[str, float]], c: DepthSweepConfig, seeds: list[int]
) -> list[Prediction]:
    url = verdict.PINTO
    shape = []
    for n in per_seed:
        spread = n["main_log_increment_spread_grs_substituted"]
        falling = n["main_log_increments_falling"] == 1.0
        shape.append(
            verdict.check(
                falling and spread <= SPREAD,
                f"chain rule: {n['main_log_increment_low_rank_first']:.4f} -> "
                f"{n['main_log_increment_low_rank_last']:.4f}"
                f"{'' if falling else ' (not falling at every layer)'}; GRS in ranks: "
                f"{n['main_log_increment_grs_substituted_first']:.4f} -> "
                f"{n['main_log_increment_grs_substituted_last']:.4f} (spread {spread:.3f})",
                spread,
                margin=SPREAD - spread,
                why="the chain rule's log growth per layer does not fall at every layer"
                if not falling
                else f"the GRS term's log growth per layer spreads by {spread:.3f}",
            )
        )
    return [
        verdict.decide(
            "On the trained networks (their spectral norms and exact ranks, C1 = 1), the log10 "
            "growth per added layer of the chain-rule complexity term falls with every layer "
            "(sum), while that of the rank-substituted GRS term stays constant, within "
            f"{SPREAD:g} relative spread (product)",
            shape,
            source="Sec. 3 (ranks add across layers instead of multiplying)",
            url=url,
            threshold=f"{SPREAD:g} relative spread: a band; the product's constant growth per "
            "layer is moved only by GRS's depth factor 1 + sqrt(2 ln(2) L) and the measured "
            "norms (spread 0.044 at quick scale)",
            seeds=seeds,
        )
    ]


def _c1_sanity_checks(n: dict[str, float], c: DepthSweepConfig) -> list[Prediction]:
    """Sum against product as a function of C1 (1, sqrt(r), 4). Both terms carry the same
    product of spectral norms, margin and data norm, so on trained networks the difference of
    their log10 increments is the closed form's at (B, r): a consequence of (r, d, L, C1, C2)
    that training cannot change, checked here as an identity with its expected direction."""
    root = math.sqrt(c.rank)
    grs, grs_closed = (
        n["main_log_increment_grs_substituted_last"],
        n["main_log_increment_grs_substituted_last_a_priori"],
    )
    out = []
    for c1 in c1_values(c.rank):
        chain = n[f"main_log_increment_low_rank_last.C1_{c1:g}"]
        closed = n[f"main_log_increment_low_rank_last_a_priori.C1_{c1:g}"] - grs_closed
        identity = abs((chain - grs) - closed) <= EXACT * max(1.0, abs(closed))
        less = c1 < root - EXACT
        if less:
            relation, holds = "less than", chain < grs
            reason = f"C1 = {c1:g} < sqrt(r) = {root:.3g}: C1^(L-1) grows slower than r^(L/2)"
        else:
            relation, holds = f"at least {BREAK_EVEN:.0%} as much as", chain >= BREAK_EVEN * grs
            reason = (
                f"C1 = {c1:g} >= sqrt(r) = {root:.3g}: the chain rule's C1^(L-l) weights grow "
                "at least as fast as the product of sqrt(r_l) (break-even at C1 = sqrt(r))"
                + ("; with r = 1 the product of ranks does not grow at all" if c.rank == 1 else "")
            )
        out.append(
            verdict.sanity(
                f"At the largest depth ({max(c.depths)}), adding a layer grows the chain-rule "
                f"complexity term at C1 = {c1:g} {relation} the rank-substituted GRS term (log10 "
                f"increments): expected since {reason}. The norms, margin and data norm "
                "multiply both terms, so the trained networks' difference is the closed form's",
                identity and holds,
                f"trained: {chain:.4f} (chain rule) vs {grs:.4f} (GRS in ranks), difference "
                f"{chain - grs:.6f}; closed form at (B, r): {closed:.6f}",
                source="Sec. 3 (comparison with prior bounds); C1 is Maurer's chaining "
                "constant, not given numerically",
                url=verdict.PINTO,
                threshold=f"difference equal to the closed form to rounding ({EXACT:g}); "
                f"break-even at C1 = sqrt(r), {BREAK_EVEN:.0%} leaves room for GRS's depth factor "
                "1 + sqrt(2 ln(2) L)",
            )
        )
    return out


def _figure(ctx: RunContext, records: pd.DataFrame, c: DepthSweepConfig) -> Figure:
    fig, axes = new_figure(3, 1, size=(3.0, 4.6))
    depths = np.asarray(c.depths)
    factor = "log10_rank_factor"
    ax = axes[0]
    for bound, colour in (("low-rank", "tab:blue"), ("grs", "tab:orange")):
        label = LABELS[bound] + (" (sum)" if bound == "low-rank" else " (product)")
        a_priori = curve(records, "a priori", factor, bound).to_numpy()
        ax.plot(depths, a_priori, "-", color=colour, label=f"{label}, a priori at (B, r)")
        trained = curve(records, "trained", factor, bound).to_numpy()
        ax.plot(depths, trained, "o", color=colour, label=f"{label}, trained nets")
    for bound, colour in (("bft", "tab:green"), ("nbs", "tab:red")):
        ax.plot(
            depths,
            curve(records, "a priori", factor, bound).to_numpy(),
            "--",
            lw=1,
            color=colour,
            label=f"{LABELS[bound]} in ranks",
        )
    ax.set_xticks(depths)
    ax.set_xlabel("depth L (layers, each of rank r)")
    ax.set_ylabel("log10 rank/width factor")
    ax = axes[1]
    for bound, colour in (("low-rank", "tab:blue"), ("grs", "tab:orange")):
        steps = np.diff(curve(records, "a priori", factor, bound).to_numpy())
        ax.plot(depths[1:], steps, "-", color=colour, label=f"{LABELS[bound]}, a priori")
        steps = np.diff(curve(records, "trained", factor, bound).to_numpy())
        ax.plot(depths[1:], steps, "o", color=colour, label=f"{LABELS[bound]}, trained nets")
    ax.set_ylim(bottom=0)
    ax.set_xticks(depths[1:])
    ax.set_xlabel("depth L after adding a layer")
    ax.set_ylabel("log10 growth per added layer")
    ax = axes[2]
    for bound in LABELS:
        ax.plot(
            depths,
            curve(records, "trained", "log10_main", bound).to_numpy(),
            "o-",
            label=LABELS[bound],
        )
    ax.set_xticks(depths)
    ax.set_xlabel("depth L (trained networks)")
    ax.set_ylabel("log10 complexity term")
    for ax in axes:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2 if ax is axes[2] else 1)
    return ctx.figure(
        fig,
        "depth_sweep.png",
        f"Bias-free MLPs of depth L with hidden width {c.width}, every layer of rank r = "
        f"{c.rank} and spectral norm at most B = {c.max_norm:g}. Left: log10 of the bounds' "
        "rank/width factors (the norm product, common to all, is left out): the chain-rule "
        "factor sum_l sqrt(r_l d_l) is linear in L, so concave on this log scale; the GRS "
        "factor prod_l ||W_l||_F/||W_l||_2 (at most r^(L/2)) is a straight line (lines: a "
        "priori at (B, r) and rank-substituted; circles: trained factorised networks; dashed: "
        "BFT and NBS in ranks). Middle: the log10 growth of each factor per added layer: "
        "falling for the sum, constant (log10 sqrt(r)) for the product. Right: log10 of every "
        "bound's complexity term on the trained networks, norms included.",
    )


EXPERIMENT = Experiment(
    name="depth-sweep",
    title="Low-rank layers add to the chain-rule bound and multiply the Frobenius bound",
    paper="low_rank_bounds",
    description=(
        "Adds rank-r layers one at a time: the chain-rule bound's rank/width factor grows by a "
        "constant amount per layer (a sum) while the rank-substituted Frobenius (GRS) factor "
        "grows by a constant factor (a product); a priori and on trained factorised networks "
        "with clipped spectral norms."
    ),
    config=DepthSweepConfig,
    run=run,
    order=2,
    key_numbers={
        "increment_low_rank_a_priori": (
            "mean increase per layer of the a priori low-rank (chain-rule) rank factor",
            "factor / layer",
        ),
        "increment_low_rank_expected": (
            "its closed form (2 C2 + 1) sqrt(r d)",
            "factor / layer",
        ),
        "increment_spread_low_rank_a_priori": (
            "(max - min) / mean of those increments (0: the factor is a sum)",
            "fraction",
        ),
        "log_increment_low_rank_*": ("{0} log10 increment of the low-rank factor", "log10 / layer"),
        "log_increment_grs_a_priori": (
            "mean log10 increment per layer of the a priori GRS rank factor",
            "log10 / layer",
        ),
        "log_increment_grs_expected": ("its closed form log10(r) / 2", "log10 / layer"),
        "log_increment_spread_grs_a_priori": (
            "(max - min) / mean of those increments (0: the factor is a product)",
            "fraction",
        ),
        "main_log_increment_low_rank_last.C1_*": (
            "last log10 increment of the trained low-rank bound's main term at C1 = {0}",
            "log10 / layer",
        ),
        "main_log_increment_low_rank_*": (
            "{0} log10 increment of the trained low-rank bound's main term",
            "log10 / layer",
        ),
        "main_log_increments_falling": (
            "the trained low-rank main term's log10 increments fall with depth",
            "yes/no",
        ),
        "main_log_increment_grs_substituted_*": (
            "{0} log10 increment of the trained GRS main term with ranks substituted",
            "log10 / layer",
        ),
        "main_log_increment_spread_grs_substituted": (
            "(max - min) / mean of those increments",
            "fraction",
        ),
        "log_increment_grs_trained_mean": (
            "mean log10 increment per layer of the trained GRS rank factor",
            "log10 / layer",
        ),
        "r2_sum_grs_trained": (
            "R^2 of a line through the trained GRS factor (a sum)",
            "dimensionless",
        ),
        "r2_product_grs_trained": ("R^2 of a line through its log10 (a product)", "dimensionless"),
        "stable_rank_*": ("{0} layer stable rank of the trained networks", "rank"),
        "max_spectral_norm": ("largest layer spectral norm of the trained networks", "norm"),
        "test_accuracy.depth_*": ("test accuracy at depth {0}", "fraction"),
    },
)
