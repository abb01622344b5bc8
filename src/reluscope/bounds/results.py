"""The result every bound returns, in log10 (these bounds are often astronomically large)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reluscope.records import Records, record, tagged


def log10(x: float) -> float:
    """log10(x), with log10(0) = -inf."""
    return -math.inf if x == 0 else math.log10(x)


def log10_product(values: Iterable[float]) -> float:
    """log10 of the product of ``values`` (>= 0), as the sum of their log10s."""
    return sum(log10(v) for v in values)


def log10_sum(*logs: float) -> float:
    """log10(sum of 10**l for l in logs), computed without overflow."""
    top = max(logs)
    if top == -math.inf:
        return -math.inf
    return top + math.log10(sum(10 ** (v - top) for v in logs))


#: The numbers of a bound in its records (their metric names; see BoundResult.to_record).
BOUND_NUMBERS = (
    "log10_bound",
    "margin_risk",
    "log10_excess",
    "log10_main",
    "log10_prefactor",
    "log10_norm_product",
    "log10_rank_factor",
    "log10_rank_factor_substituted",
    "log10_main_substituted",
    "confidence",
)


@dataclass(frozen=True)
class BoundResult(Records):
    """An upper bound, holding with probability >= 1 - delta, on the test error (0-1 loss) of a
    classifier: ``value`` = ``margin_risk`` + ``excess``, where ``excess`` gathers the
    complexity and confidence terms.

    The norm-dependent complexity term ("main") is split exactly as
    main = prefactor * norm_product * rank_factor (all in log10): ``norm_product`` is the product
    of the layers' spectral norms, ``rank_factor`` is how ranks, widths or stable ranks enter
    (``rank_form`` says how: 'sum' or 'product' over layers, 'sum^(3/2)' for BFT's
    (sum of 2/3 powers)^(3/2), 'sqrt(sum)' for NBS), and ``prefactor`` is the
    rest (constants, data norm, sample size, margin). ``rank_factor_substituted`` is the rank
    factor once every Frobenius or (2,1) norm is replaced by its worst case at rank r_l
    (||W||_F <= sqrt(r) ||W||_2, ||W^T||_{2,1} <= sqrt(d_out) ||W||_F), so that
    ``log10_main_substituted`` is the bound "in ranks". ``confidence`` is the term that depends
    on delta (and on the union bound, for post hoc bounds).
    """

    name: str
    source: str
    margin_risk: float
    log10_excess: float
    log10_prefactor: float
    log10_norm_product: float
    log10_rank_factor: float
    rank_form: str
    log10_rank_factor_substituted: float
    confidence: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def log10_value(self) -> float:
        """log10 of the bound on the test error."""
        return log10_sum(log10(self.margin_risk), self.log10_excess)

    @property
    def value(self) -> float:
        """The bound on the test error (inf when it does not fit a float)."""
        return 10**self.log10_value if self.log10_value < 308 else math.inf

    @property
    def log10_main(self) -> float:
        """log10 of the norm-dependent complexity term."""
        return self.log10_prefactor + self.log10_norm_product + self.log10_rank_factor

    @property
    def log10_main_substituted(self) -> float:
        """log10 of the complexity term with the ranks substituted (see the class doc)."""
        return self.log10_prefactor + self.log10_norm_product + self.log10_rank_factor_substituted

    def to_record(self, **tags: Any) -> dict[str, Any]:
        """One tidy row with every number of the bound, plus ``tags``."""
        return dict(
            tags,
            bound=self.name,
            log10_bound=self.log10_value,
            margin_risk=self.margin_risk,
            log10_excess=self.log10_excess,
            log10_main=self.log10_main,
            log10_prefactor=self.log10_prefactor,
            log10_norm_product=self.log10_norm_product,
            log10_rank_factor=self.log10_rank_factor,
            rank_form=self.rank_form,
            log10_rank_factor_substituted=self.log10_rank_factor_substituted,
            log10_main_substituted=self.log10_main_substituted,
            confidence=self.confidence,
            source=self.source,
        )

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`): one per number of :meth:`to_record`
        (metric "log10_bound", "margin_risk", ...; layer None; exact, so stderr None), with the
        columns ``bound`` (the name), ``rank_form`` and ``source``, the scalar params and
        ``tags``."""
        wide = self.to_record()
        labels = {k: wide.pop(k) for k in ("bound", "rank_form", "source")}
        rows = [record(metric, value, **labels) for metric, value in wide.items()]
        return tagged(rows, self.params, split, tags)
