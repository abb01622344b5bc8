"""Deciding a paper's prediction over several seeds: each seed's check (passed, the numbers
compared, what was measured) becomes one :class:`Prediction` reported as "k / n seeds" with the
worst seed's numbers. A NaN among the compared numbers fails that seed, never skipped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from reluscope.experiments.config import ExperimentConfig
from reluscope.experiments.outcome import Prediction

#: arXiv pages of the papers the experiments reproduce.
PATEL_MONTUFAR = "https://arxiv.org/abs/2412.18283"
HUMAYUN = "https://arxiv.org/abs/2402.15555"
PINTO = "https://arxiv.org/abs/2411.13733"
ZHANG = "https://arxiv.org/abs/2406.12615"

_Config = TypeVar("_Config", bound=ExperimentConfig)
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Check:
    """One seed's evaluation of a prediction: whether it holds, a text of the numbers that
    decided it, the compared numbers themselves (a NaN among them fails the check), a
    ``margin`` (how far inside the threshold, in any unit; the smallest margin is the worst
    seed) and, for a failure, one sentence ``why`` saying what the numbers show."""

    passed: bool
    measured: str
    values: tuple[float, ...] = ()
    margin: float = math.nan
    why: str = ""
    seed: int | None = None

    @property
    def holds(self) -> bool:
        """``passed`` and no compared value is NaN."""
        return bool(self.passed) and not any(math.isnan(float(v)) for v in self.values)


def check(
    passed: bool, measured: str, *values: float, margin: float = math.nan, why: str = ""
) -> Check:
    """A :class:`Check` of the compared ``values`` (NaN fails it)."""
    return Check(bool(passed), measured, tuple(float(v) for v in values), float(margin), why)


def seed_configs(config: _Config) -> list[_Config]:
    """One copy of ``config`` per seed: ``seed``, ``seed + 1``, ..., ``seed + seeds - 1``
    (``config.seeds`` of them; 1 when the config has no ``seeds`` key)."""
    count = int(getattr(config, "seeds", 1))
    return [config.model_copy(update={"seed": config.seed + i}) for i in range(count)]


def over_seeds(config: _Config, run_one: Callable[[_Config], _Result]) -> list[_Result]:
    """``run_one`` applied to each of :func:`seed_configs` of ``config``, in seed order."""
    return [run_one(c) for c in seed_configs(config)]


def seed_records(rows: Sequence[Any], configs: Sequence[ExperimentConfig]) -> pd.DataFrame:
    """Every seed's records in one frame with a ``seed`` column: ``rows[i]`` (a DataFrame or
    a list of row dicts) comes from the run of ``configs[i]``."""
    return pd.concat(
        [pd.DataFrame(r).assign(seed=c.seed) for r, c in zip(rows, configs, strict=True)],
        ignore_index=True,
    )


def decide(
    claim: str,
    checks: Sequence[Check],
    *,
    source: str,
    url: str,
    threshold: str,
    seeds: Sequence[int] | None = None,
    need: int | None = None,
) -> Prediction:
    """The prediction ``claim`` decided over the per-seed ``checks`` (in the order of
    ``seeds``, default 0, 1, ...): PASS when at least ``need`` seeds hold (default: all).
    ``measured`` lists every seed's numbers; ``worst`` is the failing seed with the smallest
    margin, else the passing one with the smallest margin; a FAIL's ``explanation`` is the
    worst seed's ``why`` (or a sentence saying which seeds miss and why)."""
    if not checks:
        raise ValueError(f"no checks to decide {claim!r}")
    labels = list(seeds) if seeds is not None else list(range(len(checks)))
    checks = [
        c if c.seed is not None else Check(**{**c.__dict__, "seed": s})
        for c, s in zip(checks, labels, strict=True)
    ]
    total = len(checks)
    holding = [c for c in checks if c.holds]
    required = total if need is None else need
    passed = len(holding) >= required
    failing = [c for c in checks if not c.holds]
    pool = failing or checks
    worst = min(pool, key=lambda c: math.inf if math.isnan(c.margin) else c.margin)
    if total == 1:
        measured = checks[0].measured
    else:
        measured = "; ".join(f"seed {c.seed}: {c.measured}" for c in checks)
    explanation = ""
    if not passed:
        reason = (
            worst.why or _nan_reason(worst) or f"the numbers miss the threshold ({worst.measured})"
        )
        explanation = (
            f"{len(failing)} of {total} seeds miss it; worst (seed {worst.seed}): {reason}"
            if total > 1
            else reason
        )
    return Prediction(
        claim=claim,
        passed=passed,
        measured=measured,
        source=source,
        url=url,
        threshold=threshold,
        seeds_passed=len(holding),
        seeds_total=total,
        worst=f"seed {worst.seed}: {worst.measured}",
        explanation=explanation,
    )


def _nan_reason(c: Check) -> str:
    if any(math.isnan(v) for v in c.values):
        return f"a compared value is NaN ({c.measured}), which counts as a failure"
    return ""


def sanity(
    claim: str, passed: bool, measured: str, *, source: str, url: str, threshold: str
) -> Prediction:
    """A closed-form identity or constant that training cannot change, for
    ``Outcome.sanity_checks`` (decided once, shown apart from the predictions)."""
    return Prediction(
        claim=claim,
        passed=bool(passed),
        measured=measured,
        source=source,
        url=url,
        threshold=threshold,
        explanation="" if passed else f"the identity does not hold here: {measured}",
    )
