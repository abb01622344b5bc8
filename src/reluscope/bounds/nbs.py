"""Neyshabur, Bhojanapalli & Srebro (ICLR 2018): the PAC-Bayes spectral bound. [STANDARD]

Constants from the proof of their Thm 1 as given in the spec (approximate; to be verified):
with h = max width, L = depth, B_x = max_i ||x_i||, the posterior noise
sigma = gamma / (42 L B_x beta^(L-1) sqrt(h ln(4hL))) (beta = geometric mean of the spectral
norms) gives KL = 42^2 L^2 B_x^2 h ln(4hL) prod_l ||W_l||_2^2 sum_l ||W_l||_F^2 / ||W_l||_2^2
/ (2 gamma^2), and their Lemma 1 with a union bound over a grid of L n^(1/(2L)) values of beta:
P(error) <= R_gamma + 4 sqrt((KL + ln(6n/delta) + ln(L n^(1/(2L)))) / (n - 1)).
For ReLU networks without biases and the multiclass margin. The theorem bounds the inputs'
norm by B_x on the whole domain; here B_x is the sample's.
"""

from __future__ import annotations

import math

from reluscope.bounds import checks
from reluscope.bounds.bft import need_two_points
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult, log10, log10_product, log10_sum


def nbs_bound(
    norms: NetworkNorms,
    sample: SampleStats,
    *,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
) -> BoundResult:
    """Neyshabur-Bhojanapalli-Srebro PAC-Bayes bound (module doc). main = 4 sqrt(KL / (n-1)),
    split as prefactor * prod ||W_l||_2 * sqrt(sum_l stable rank_l); in ranks the last factor
    is sqrt(sum_l r_l). ``confidence`` is 4 sqrt((ln(6n/delta) + ln(L n^(1/(2L)))) / (n-1)),
    the bound's excess with KL = 0 (the excess is not the sum of the two: both sit under one
    square root)."""
    gamma, d, risk = checks.bound_options(margin, delta, margin_risk)
    need_two_points(sample, "NBS")
    n, depth = sample.n, norms.depth
    h = max(norms.widths)
    prefactor = log10(
        4
        * 42
        * depth
        * sample.max_norm
        * math.sqrt(h * math.log(4 * h * depth) / 2)
        / (gamma * math.sqrt(n - 1))
    )
    norm_product = log10_product(norms.spectral)
    rank_factor = 0.5 * log10(sum(norms.stable_ranks))
    main = prefactor + norm_product + rank_factor
    extra = math.log(6 * n / d) + math.log(depth) + math.log(n) / (2 * depth)
    log10_kl = 2 * (main - math.log10(4)) + math.log10(n - 1)
    excess = math.log10(4) + 0.5 * (log10_sum(log10_kl, math.log10(extra)) - math.log10(n - 1))
    return BoundResult(
        name="nbs",
        source="Neyshabur, Bhojanapalli & Srebro (ICLR 2018), PAC-Bayes; proof constants",
        margin_risk=risk,
        log10_excess=excess,
        log10_prefactor=prefactor,
        log10_norm_product=norm_product,
        log10_rank_factor=rank_factor,
        rank_form="sqrt(sum)",
        log10_rank_factor_substituted=0.5 * log10(sum(norms.ranks)),
        confidence=4 * math.sqrt(extra / (n - 1)),
        params=dict(margin=gamma, delta=d, max_width=h, log10_kl=log10_kl),
    )
