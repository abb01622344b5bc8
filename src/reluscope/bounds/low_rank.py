"""The low-rank chain-rule bound (Pinto, Rangamani & Poggio, ALT 2025), as we reconstruct it.

[DERIVED] The paper's text was not available: the formulas below are our derivation from the
tools it names (spec ``low_rank_bounds.md`` §2), not the paper's verified statement. The class
is F_L = {x -> W_L phi(... phi(W_1 x)) : ||W_l||_2 <= B_l, rank W_l <= r_l}, phi 1-Lipschitz
with phi(0) = 0, no biases. Maurer's chain rule applied layer by layer gives (THM)

    G(F_L(X)) <= ||X||_F * prod_l B_l
                 * [ C1^(L-1) sqrt(r_1 d_1) + (2 C2 + 1) sum_{l=2}^{L} C1^(L-l) sqrt(r_l d_l) ]

(d_l = output width of layer l, G the unnormalised Gaussian complexity on the sample): ranks
and widths **add** over layers while spectral norms multiply. With Maurer's Gaussian
generalisation theorem and the ramp loss at margin gamma (sqrt(2)/gamma-Lipschitz), with
probability >= 1 - delta every f in F_L has

    P(error) <= R_gamma(f) + (2 sqrt(pi) / (gamma n)) G(F_L(X)) + sqrt(9 ln(2/delta) / (2n)).

C1 and C2 are Maurer's universal chaining constants (Maurer 2016, TCS 650, Thm 2). Their
values were not verified, so they are parameters; the default C1 = C2 = 1 gives the bound's
**shape** only, not a certified bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reluscope.bounds import checks
from reluscope.bounds.margins import MarginStats
from reluscope.bounds.norms import SampleStats
from reluscope.bounds.results import BoundResult, log10, log10_product, log10_sum
from reluscope.errors import InputError
from reluscope.validation import check_number, invalid

#: Maurer's chaining constants default to 1: the bound's shape (values unverified, see above).
DEFAULT_C1 = 1.0
DEFAULT_C2 = 1.0
SOURCE = (
    "Pinto, Rangamani & Poggio (ALT 2025) via Maurer's chain rule; our reconstruction "
    "[DERIVED], C1 and C2 unverified"
)


def check_layers(
    widths: Sequence[int], spectral_norms: Sequence[float], ranks: Sequence[int]
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """(widths, spectral norms, ranks) checked: L + 1 positive widths, L norms >= 0 and L
    ranks with 0 <= r_l <= min(d_l, d_{l-1})."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise invalid("widths", "(d_0, ..., d_L) with L >= 1", widths)
    widths = tuple(checks.integer(w, f"widths[{i}]") for i, w in enumerate(widths))
    depth = len(widths) - 1
    norms = checks.per_layer(spectral_norms, "spectral_norms", depth, nonnegative=True)
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence) or len(ranks) != depth:
        raise InputError(f"ranks must have {depth} entries (one per layer), got {ranks!r}")
    ranks = tuple(checks.integer(r, f"ranks[{i}]", minimum=0) for i, r in enumerate(ranks))
    for i, r in enumerate(ranks):
        if r > min(widths[i], widths[i + 1]):
            raise InputError(
                f"ranks[{i}] = {r} exceeds min(d_{i + 1}, d_{i}) = {min(widths[i], widths[i + 1])}"
            )
    return widths, norms, ranks


def check_constants(C1: float, C2: float) -> tuple[float, float]:
    """(C1, C2) checked: C1 > 0 and C2 >= 0, finite."""
    return checks.real(C1, "C1", positive=True), checks.real(C2, "C2", nonnegative=True)


def layer_terms(
    widths: Sequence[int], ranks: Sequence[int], C1: float, weight: float = 1.0
) -> list[float]:
    """w_l C1^(L-l) sqrt(r_l d_l) for l = 1..L, with w_1 = 1 and w_l = ``weight`` for l >= 2
    (2 C2 + 1 gives the terms of (THM); 1 the unweighted ones), for ``widths`` (d_0, ..., d_L)
    and ranks already checked."""
    depth = len(ranks)
    return [
        (1.0 if k == 1 else weight) * C1 ** (depth - k) * math.sqrt(ranks[k - 1] * widths[k])
        for k in range(1, depth + 1)
    ]


def chain_rank_factor(
    widths: Sequence[int],
    ranks: Sequence[int],
    *,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
) -> float:
    """The rank/width factor of (THM): C1^(L-1) sqrt(r_1 d_1) + (2 C2 + 1) sum_{l >= 2}
    C1^(L-l) sqrt(r_l d_l), with ``widths`` = (d_0, ..., d_L) and one rank per layer."""
    widths, _, ranks = check_layers(widths, [0.0] * (len(widths) - 1), ranks)
    C1, C2 = check_constants(C1, C2)
    terms = layer_terms(widths, ranks, C1)
    return terms[0] + (2 * C2 + 1) * sum(terms[1:])


def low_rank_complexity(
    widths: Sequence[int],
    spectral_norms: Sequence[float],
    ranks: Sequence[int],
    data_norm: float,
    *,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
) -> float:
    """(THM): the bound ||X||_F * prod_l B_l * chain_rank_factor on the unnormalised Gaussian
    complexity of the class with spectral norms <= B_l and ranks <= r_l on a sample with
    Frobenius norm ``data_norm``. For L = 1 it is B_1 sqrt(r_1 d_1) ||X||_F."""
    widths, norms, ranks = check_layers(widths, spectral_norms, ranks)
    data_norm = checks.real(data_norm, "data_norm", nonnegative=True)
    return data_norm * math.prod(norms) * chain_rank_factor(widths, ranks, C1=C1, C2=C2)


def _result(
    name: str,
    widths: tuple[int, ...],
    norms: Sequence[float],
    ranks: tuple[int, ...],
    sample: SampleStats,
    gamma: float,
    risk: float,
    confidence: float,
    C1: float,
    C2: float,
    params: dict,
) -> BoundResult:
    factor = chain_rank_factor(widths, ranks, C1=C1, C2=C2)
    prefactor = log10(2 * math.sqrt(math.pi) * sample.data_norm / (gamma * sample.n))
    norm_product = log10_product(norms)
    main = prefactor + norm_product + log10(factor)
    log10_g = log10(sample.data_norm) + norm_product + log10(factor)
    return BoundResult(
        name=name,
        source=SOURCE,
        margin_risk=risk,
        log10_excess=log10_sum(main, log10(confidence)),
        log10_prefactor=prefactor,
        log10_norm_product=norm_product,
        log10_rank_factor=log10(factor),
        rank_form="sum",
        log10_rank_factor_substituted=log10(factor),
        confidence=confidence,
        params=dict(params, C1=C1, C2=C2, log10_gaussian_complexity=log10_g),
    )


def low_rank_bound(
    widths: Sequence[int],
    spectral_norms: Sequence[float],
    ranks: Sequence[int],
    sample: SampleStats,
    *,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
) -> BoundResult:
    """The a priori bound: for B_l (``spectral_norms``) and r_l (``ranks``) fixed before seeing
    the sample, P(error) <= ``margin_risk`` + (2 sqrt(pi)/(gamma n)) (THM) +
    sqrt(9 ln(2/delta)/(2n)). ``margin_risk`` is R_gamma of the network the bound is applied to
    (0 gives the excess alone)."""
    widths, norms, ranks = check_layers(widths, spectral_norms, ranks)
    gamma, d, risk = checks.bound_options(margin, delta, margin_risk)
    C1, C2 = check_constants(C1, C2)
    confidence = math.sqrt(9 * math.log(2 / d) / (2 * sample.n))
    params = dict(margin=gamma, delta=d, spectral_norms=norms, ranks=ranks)
    return _result(
        "low-rank", widths, norms, ranks, sample, gamma, risk, confidence, C1, C2, params
    )


def integer_prior(k: int) -> float:
    """Weights 2 / (3 (|k|+1) (|k|+2)) over the integers k; they sum to 1."""
    return 2 / (3 * (abs(k) + 1) * (abs(k) + 2))


def _power_at_least(x: float, base: float) -> int:
    """The smallest integer k with base**k >= x (x > 0)."""
    k = math.ceil(math.log(x) / math.log(base))
    while base ** (k - 1) >= x:
        k -= 1
    while base**k < x:
        k += 1
    return k


def low_rank_bound_post_hoc(
    widths: Sequence[int],
    spectral_norms: Sequence[float],
    ranks: Sequence[int],
    sample: SampleStats,
    margins: Tensor,
    *,
    margin: float,
    delta: float,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
    base: float = 2.0,
) -> BoundResult:
    """The bound for a network whose norms, ranks and margin were chosen after seeing the data.

    A union bound over the grid B_l in {base^k}, r_l in {1, ..., min(d_l, d_{l-1})} and
    gamma in {base^j} (k, j integers, prior weight :func:`integer_prior`; ranks uniform) makes
    the bound hold for all grid points at once with probability >= 1 - delta. It is evaluated at
    B_l = ``spectral_norms`` rounded up to the grid, r_l = max(``ranks``, 1) and gamma =
    ``margin`` rounded down to the grid, with the margin risk of ``margins`` (the network's
    per-point margins) at that gamma. The grid's log-weight enters the confidence term:
    sqrt(9 (ln(2/delta) + ln(1/weight)) / (2n)).
    """
    widths, norms, ranks = check_layers(widths, spectral_norms, ranks)
    gamma, d = checks.margin(margin), checks.delta(delta)
    C1, C2 = check_constants(C1, C2)
    base = check_number("base", base, minimum=1, strict=True)
    values = torch.as_tensor(margins).double().reshape(-1)
    if len(values) != sample.n:
        raise InputError(f"margins must have one entry per point ({sample.n}), got {len(values)}")
    exponents = [_power_at_least(b, base) if b > 0 else 0 for b in norms]
    rounded = tuple(base**k for k in exponents)
    grid_ranks = tuple(max(r, 1) for r in ranks)
    j = _power_at_least(gamma, base)
    if base**j > gamma:
        j -= 1
    grid_gamma = base**j
    log_inv_weight = -math.log(integer_prior(j))
    for layer, k in enumerate(exponents):
        log_inv_weight += -math.log(integer_prior(k)) + math.log(
            min(widths[layer], widths[layer + 1])
        )
    risk = MarginStats.from_margins(values, grid_gamma).risk
    confidence = math.sqrt(9 * (math.log(2 / d) + log_inv_weight) / (2 * sample.n))
    params = dict(
        margin=grid_gamma,
        delta=d,
        spectral_norms=rounded,
        ranks=grid_ranks,
        base=base,
        log_inverse_prior=log_inv_weight,
    )
    return _result(
        "low-rank-post-hoc",
        widths,
        rounded,
        grid_ranks,
        sample,
        grid_gamma,
        risk,
        confidence,
        C1,
        C2,
        params,
    )
