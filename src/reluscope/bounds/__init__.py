"""Generalisation bounds for ReLU MLPs (paper 2: Pinto, Rangamani & Poggio, low-rank layers).

* :func:`compare`: every bound on one network and sample -> :class:`BoundTable` (log10 values,
  their parts, the rank-substituted forms, the empirical margin risk).
* The low-rank chain-rule bound ([DERIVED], constants C1, C2 as parameters):
  :func:`low_rank_bound` (a priori), :func:`low_rank_bound_post_hoc` (union bound over a grid),
  :func:`low_rank_complexity` and :func:`chain_rank_factor` (plain numbers, no model).
* Prior bounds on :class:`NetworkNorms` and :class:`SampleStats`: :func:`grs_bound`,
  :func:`bft_bound`, :func:`nbs_bound`, :func:`nts_bound`.
* :func:`gaussian_complexity_estimate`: a Monte Carlo lower estimate of the Gaussian complexity
  of the rank- and norm-constrained class, for the bound's looseness.
* :func:`collapse_aware`, :func:`collapse_aware_bound`: the bound with the layers above a
  split counted at rank <= C (neural collapse; [DERIVED]).
* Margins: :func:`margin_risk`, :func:`margins`, :func:`default_margin`.
"""

from reluscope.bounds.bft import bft_bound
from reluscope.bounds.collapse import CollapseAwareResult, collapse_aware, collapse_aware_bound
from reluscope.bounds.compare import BOUNDS, BoundTable, compare
from reluscope.bounds.frobenius import grs_bound, nts_bound
from reluscope.bounds.gaussian_complexity import ComplexityEstimate, gaussian_complexity_estimate
from reluscope.bounds.low_rank import (
    DEFAULT_C1,
    DEFAULT_C2,
    chain_rank_factor,
    low_rank_bound,
    low_rank_bound_post_hoc,
    low_rank_complexity,
)
from reluscope.bounds.margins import MarginStats, default_margin, margin_risk, margins
from reluscope.bounds.nbs import nbs_bound
from reluscope.bounds.network import MLP, mlp_weights
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult

__all__ = [
    "BOUNDS",
    "DEFAULT_C1",
    "DEFAULT_C2",
    "MLP",
    "BoundResult",
    "BoundTable",
    "CollapseAwareResult",
    "ComplexityEstimate",
    "MarginStats",
    "NetworkNorms",
    "SampleStats",
    "bft_bound",
    "chain_rank_factor",
    "collapse_aware",
    "collapse_aware_bound",
    "compare",
    "default_margin",
    "gaussian_complexity_estimate",
    "grs_bound",
    "low_rank_bound",
    "low_rank_bound_post_hoc",
    "low_rank_complexity",
    "margin_risk",
    "margins",
    "mlp_weights",
    "nbs_bound",
    "nts_bound",
]
