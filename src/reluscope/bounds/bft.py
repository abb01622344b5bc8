"""Bartlett, Foster & Telgarsky (NeurIPS 2017): the spectrally-normalised margin bound, with
the explicit constants of their Lemma A.8 (as implemented in rkwitt/excess_capacity). [STANDARD]

For ReLU (1-Lipschitz) networks without biases and the multiclass margin: with spectral
complexity R_A = prod_l ||W_l||_2 * (sum_l (||(W_l - M_l)^T||_{2,1} / ||W_l||_2)^(2/3))^(3/2)
(M_l reference matrices, 0 by default), the Rademacher complexity of the ramp-loss class is
Rad <= 4/n + 36 ||X||_F R_A ln(n) sqrt(ln(2 W)) / (gamma n), W = the largest number of entries
of a weight matrix, and P(error) <= R_gamma + 2 Rad + 3 sqrt(ln(2/delta) / (2n)). The norms are
the network's own, taken as the class's constraints.
"""

from __future__ import annotations

import math

from reluscope.bounds import checks
from reluscope.bounds.frobenius import mohri_confidence, ratio
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult, log10, log10_product, log10_sum
from reluscope.errors import InputError


def need_two_points(sample: SampleStats, name: str) -> None:
    """InputError unless the sample has at least two points."""
    if sample.n < 2:
        raise InputError(f"the {name} bound needs at least 2 data points, got {sample.n}")


def bft_bound(
    norms: NetworkNorms,
    sample: SampleStats,
    *,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
) -> BoundResult:
    """Bartlett-Foster-Telgarsky with explicit constants (module doc). ``norms.l21`` holds
    ||(W_l - M_l)^T||_{2,1}. main = 72 ||X||_F ln(n) sqrt(ln 2W) R_A / (gamma n), split as
    prefactor * prod ||W_l||_2 * (sum_l (l21_l / ||W_l||_2)^(2/3))^(3/2); in ranks
    (l21 <= sqrt(d_l r_l) ||W_l||_2) the last factor is (sum_l (d_l r_l)^(1/3))^(3/2)."""
    gamma, d, risk = checks.bound_options(margin, delta, margin_risk)
    need_two_points(sample, "BFT")
    n, widths = sample.n, norms.widths
    entries = max(widths[i] * widths[i + 1] for i in range(norms.depth))
    prefactor = log10(
        72 * sample.data_norm * math.log(n) * math.sqrt(math.log(2 * entries)) / (gamma * n)
    )
    norm_product = log10_product(norms.spectral)
    powers = sum(ratio(a, s) ** (2 / 3) for a, s in zip(norms.l21, norms.spectral, strict=True))
    substituted = sum((widths[i + 1] * r) ** (1 / 3) for i, r in enumerate(norms.ranks))
    main = prefactor + norm_product + 1.5 * log10(powers)
    confidence = mohri_confidence(n, d)
    return BoundResult(
        name="bft",
        source="Bartlett, Foster & Telgarsky (NeurIPS 2017), Lemma A.8 constants",
        margin_risk=risk,
        log10_excess=log10_sum(main, log10(8 / n), log10(confidence)),
        log10_prefactor=prefactor,
        log10_norm_product=norm_product,
        log10_rank_factor=1.5 * log10(powers),
        rank_form="sum^(3/2)",
        log10_rank_factor_substituted=1.5 * log10(substituted),
        confidence=confidence,
        params=dict(margin=gamma, delta=d, max_entries=entries, offset=8 / n),
    )
