"""Frobenius-norm bounds: Golowich, Rakhlin & Shamir (COLT 2018, Thm 1) and Neyshabur, Tomioka &
Srebro (COLT 2015). [STANDARD]

Both bound the empirical Rademacher complexity of the scalar networks x -> w^T phi(... W_1 x)
(phi positively homogeneous and 1-Lipschitz, no biases) with ||W_l||_F <= M_l:

* GRS Thm 1:  R_S <= (1 + sqrt(2 ln(2) L)) * prod_l M_l * ||X||_F / n;
* NTS 2015 (p = q = 2, as GRS state it):  R_S <= 2^L * prod_l M_l * ||X||_F / n.

Each output coordinate x -> f(x)_y is such a network with M_L = ||W_L||_F (its row norm is at
most that). The multiclass margin bound (Mohri, Rostamizadeh & Talwalkar, Foundations of ML,
2nd ed., Thm 9.2) then gives, with probability >= 1 - delta,

    P(error) <= R_gamma + (4 C / gamma) R_S + 3 sqrt(ln(2/delta) / (2n)),   C = d_L classes.

The norms are those of the network at hand, taken as the class's constraints (as in
rkwitt/excess_capacity): the cost of choosing them after training is not included.
"""

from __future__ import annotations

import math

from reluscope.bounds import checks
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult, log10, log10_product, log10_sum
from reluscope.errors import InputError


def ratio(a: float, b: float) -> float:
    """a / b, with 0 / 0 = 0 (a zero layer)."""
    return a / b if b > 0 else 0.0


def mohri_confidence(n: int, delta: float) -> float:
    """3 sqrt(ln(2/delta) / (2n)): the confidence term of the empirical-Rademacher margin bound."""
    return 3 * math.sqrt(math.log(2 / delta) / (2 * n))


def _frobenius_bound(
    name: str,
    source: str,
    depth_factor: float,
    norms: NetworkNorms,
    sample: SampleStats,
    margin: float,
    delta: float,
    margin_risk: float,
) -> BoundResult:
    gamma, d, risk = checks.bound_options(margin, delta, margin_risk)
    classes = norms.widths[-1]
    if classes < 2:
        raise InputError(f"the multiclass margin bound needs d_L >= 2 outputs, got {classes}")
    prefactor = log10(4 * classes / gamma * depth_factor * sample.data_norm / sample.n)
    norm_product = log10_product(norms.spectral)
    rank_factor = sum(
        log10(ratio(f, s)) for f, s in zip(norms.frobenius, norms.spectral, strict=True)
    )
    substituted = sum(0.5 * log10(r) for r in norms.ranks)
    confidence = mohri_confidence(sample.n, d)
    main = prefactor + norm_product + rank_factor
    return BoundResult(
        name=name,
        source=source,
        margin_risk=risk,
        log10_excess=log10_sum(main, log10(confidence)),
        log10_prefactor=prefactor,
        log10_norm_product=norm_product,
        log10_rank_factor=rank_factor,
        rank_form="product",
        log10_rank_factor_substituted=substituted,
        confidence=confidence,
        params=dict(margin=gamma, delta=d, classes=classes, depth_factor=depth_factor),
    )


def grs_bound(
    norms: NetworkNorms,
    sample: SampleStats,
    *,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
) -> BoundResult:
    """Golowich-Rakhlin-Shamir (Thm 1) through the multiclass margin bound (module doc).

    main = (4C/gamma) (1 + sqrt(2 ln2 L)) ||X||_F / n * prod_l ||W_l||_F, split as prefactor *
    prod ||W_l||_2 * prod ||W_l||_F / ||W_l||_2; in ranks the last factor is prod sqrt(r_l).
    """
    depth_factor = 1 + math.sqrt(2 * math.log(2) * norms.depth)
    source = "Golowich, Rakhlin & Shamir (COLT 2018), Thm 1 + multiclass margin bound"
    return _frobenius_bound("grs", source, depth_factor, norms, sample, margin, delta, margin_risk)


def nts_bound(
    norms: NetworkNorms,
    sample: SampleStats,
    *,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
) -> BoundResult:
    """Neyshabur-Tomioka-Srebro 2015 (Frobenius, factor 2^L) through the multiclass margin
    bound: main = (4C/gamma) 2^L ||X||_F / n * prod_l ||W_l||_F (split as for :func:`grs_bound`)."""
    source = "Neyshabur, Tomioka & Srebro (COLT 2015), p = q = 2 + multiclass margin bound"
    return _frobenius_bound(
        "nts", source, 2.0**norms.depth, norms, sample, margin, delta, margin_risk
    )
