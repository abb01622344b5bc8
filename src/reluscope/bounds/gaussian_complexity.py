"""A Monte Carlo lower estimate of the Gaussian complexity of the rank- and norm-constrained class,
to measure how loose the chain-rule bound (THM) is.

The class is F = {x -> W_L phi(... phi(W_1 x)) : ||W_l||_2 <= B_l, rank W_l <= r_l} and its
(unnormalised) Gaussian complexity on a sample X is G = E_Gamma sup_{f in F}
sum_{i,k} Gamma_{ik} f_k(x_i), Gamma with iid N(0, 1) entries. For each draw of Gamma the
supremum is searched by block ascent over the weights:

* the last layer is always optimal given the others: with H the last hidden layer on the
  sample (n, d_{L-1}) and M = Gamma^T H, max <W_L, M> over ||W_L||_2 <= B_L, rank <= r_L is
  B_L (sigma_1(M) + ... + sigma_{r_L}(M)), reached at W_L = B_L U_r V_r^T (exact; for L = 1
  this is the whole supremum);
* the other layers take projected gradient steps: after every step each W_l is projected (in
  Frobenius norm, exactly) onto {rank <= r_l, ||W||_2 <= B_l} by keeping its top r_l singular
  values clipped at B_l.

The best value found is a lower bound of that draw's supremum, so their mean estimates a lower
bound of G. The ascents start from the explicit points W_1 = B_1 e_1 v^T, W_l = B_l e_1 e_1^T
(and W_L optimal), v = +-(top right singular vector of X), and from random points of the
class. With c = phi^(L-1)(X v) for the sign of v with the larger ||c|| (phi positively
homogeneous), the explicit start has value prod_l B_l ||Gamma^T c||, whose mean over Gamma is
the closed form ``baseline`` = prod_l B_l ||c|| E||N(0, I_{d_L})||: a value every estimate
must reach.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from reluscope.bounds import checks
from reluscope.bounds.low_rank import DEFAULT_C1, DEFAULT_C2, check_layers, low_rank_complexity
from reluscope.errors import InputError
from reluscope.linalg import low_rank_approximation
from reluscope.records import Records, record, tagged
from reluscope.validation import invalid


@dataclass(frozen=True)
class ComplexityEstimate(Records):
    """``value``: mean over Gamma draws of the best objective found (a lower estimate of G, with
    standard error ``stderr``); ``per_draw`` and ``per_draw_start`` (the explicit start's value
    on each draw, never above the draw's result); ``baseline``: the closed-form mean of the
    explicit start; ``bound``: the chain-rule bound (THM) with ``params['C1']``,
    ``params['C2']``. All unnormalised (divide by n for the per-point complexity)."""

    value: float
    stderr: float
    per_draw: tuple[float, ...]
    per_draw_start: tuple[float, ...]
    baseline: float
    bound: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def looseness(self) -> float:
        """bound / estimate: how far (THM) is above the complexity found (inf if 0 found)."""
        return self.bound / self.value if self.value > 0 else math.inf

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`; layer None): "gaussian_complexity_mc" (the
        estimate, with its stderr), "gaussian_complexity_baseline", "gaussian_complexity_bound"
        and "looseness", then the scalar params and ``tags``."""
        rows = [
            record("gaussian_complexity_mc", self.value, stderr=self.stderr),
            record("gaussian_complexity_baseline", self.baseline),
            record("gaussian_complexity_bound", self.bound),
            record("looseness", self.looseness),
        ]
        return tagged(rows, self.params, split, tags)


def expected_gaussian_norm(dim: int) -> float:
    """E||g|| for g ~ N(0, I_dim): sqrt(2) Gamma((dim+1)/2) / Gamma(dim/2)."""
    return math.sqrt(2) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))


def project(w: Tensor, rank: int, bound: float) -> Tensor:
    """The nearest matrix to ``w`` (in Frobenius norm) with rank <= ``rank`` and spectral norm
    <= ``bound``: its top singular values, clipped."""
    return low_rank_approximation(w, rank, bound)


def _act(h: Tensor, slope: float) -> Tensor:
    return torch.where(h > 0, h, slope * h)


def _forward(weights, x: Tensor, slopes: tuple[float, ...], last_activation: bool) -> Tensor:
    h = x
    for i, w in enumerate(weights):
        h = h @ w.T
        if last_activation or i < len(weights) - 1:
            h = _act(h, slopes[i])
    return h


def _starts(x: Tensor, widths, norms, slopes) -> tuple[list[list[Tensor]], Tensor]:
    """The explicit starts' layers but the last, for v and -v (the one with the larger
    c = phi^(L-1)(X v) first), and that c."""
    v = torch.linalg.svd(x, full_matrices=False).Vh[0]
    found = []
    for sign in (1.0, -1.0):
        c = x @ (sign * v)
        for slope in slopes:
            c = _act(c, slope)
        lower = []
        for i, b in enumerate(norms[:-1]):
            w = torch.zeros(widths[i + 1], widths[i], dtype=x.dtype, device=x.device)
            if i == 0:
                w[0] = b * sign * v
            else:
                w[0, 0] = b
            lower.append(w)
        found.append((float(c.norm()), lower, c))
    found.sort(key=lambda item: -item[0])
    return [lower for _, lower, _ in found], found[0][2]


def _best_last_layer(h: Tensor, gamma: Tensor, bound: float, rank: int) -> Tensor:
    """argmax of <Gamma, H W^T> over ||W||_2 <= bound, rank W <= rank: bound * U_r V_r^T of
    the SVD of M = Gamma^T H."""
    u, _, vh = torch.linalg.svd(gamma.T @ h, full_matrices=False)
    return bound * u[:, :rank] @ vh[:rank]


def _ascend(lower, gamma, x, norms, ranks, slopes, steps, lr) -> float:
    """The best value of the objective found from the lower layers ``lower`` (module doc)."""
    lower = [w.clone().requires_grad_(True) for w in lower]
    best = -math.inf
    for t in range(steps + 1):
        h = _forward(lower, x, slopes, last_activation=True)
        last = _best_last_layer(h.detach(), gamma, norms[-1], ranks[-1])
        value = (gamma * (h @ last.T)).sum()
        best = max(best, value.item())
        if t == steps or not lower:
            break
        grads = torch.autograd.grad(value, lower)
        step = lr * (1 - t / steps)
        with torch.no_grad():
            for w, g, b, r in zip(lower, grads, norms, ranks, strict=False):
                size = g.norm()
                if size > 0:
                    w.copy_(project(w + step * b * g / size, r, b))
    return best


def gaussian_complexity_estimate(
    x: Tensor,
    widths: Sequence[int],
    spectral_norms: Sequence[float],
    ranks: Sequence[int],
    *,
    slope: float | Sequence[float] = 0.0,
    draws: int = 8,
    steps: int = 200,
    restarts: int = 1,
    lr: float = 0.1,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
    seed: int = 0,
    gammas: Tensor | None = None,
) -> ComplexityEstimate:
    """Monte Carlo lower estimate of the Gaussian complexity of the class with widths
    (d_0, ..., d_L), spectral norms <= B_l and ranks <= r_l on the points ``x`` (n, d_0) (see
    the module doc). ``slope`` is the activation's negative slope (0: ReLU; 1: none), one for
    all layers or one per hidden layer (L - 1 values). Per draw of Gamma (``draws``, seeded
    with ``seed``): ascents from the two explicit starts and from ``restarts`` random points of
    the class, ``steps`` projected gradient steps each (of length lr * (1 - t/steps) * B_l in
    Frobenius norm), the last layer kept optimal. ``gammas`` (draws, n, d_L) gives the draws
    of Gamma instead (common random numbers across classes); ``draws`` is then their number.
    Returns the estimate with the bound (THM) (constants C1, C2) for the looseness ratio."""
    widths, norms, ranks = check_layers(widths, spectral_norms, ranks)
    depth = len(norms)
    if isinstance(slope, Sequence):
        slopes = checks.per_layer(slope, "slope", depth - 1)
    else:
        slopes = (checks.real(slope, "slope"),) * (depth - 1)
    if any(abs(s) > 1 for s in slopes):
        raise invalid("slope", "in [-1, 1] (a 1-Lipschitz activation)", slope)
    draws = checks.integer(draws, "draws")
    steps = checks.integer(steps, "steps", minimum=0)
    restarts = checks.integer(restarts, "restarts", minimum=0)
    lr = checks.real(lr, "lr", positive=True)
    x = torch.as_tensor(x)
    x = x.reshape(len(x), -1).double()
    if x.shape[1] != widths[0] or len(x) < 1:
        raise InputError(f"x must have shape (n >= 1, d_0 = {widths[0]}), got {tuple(x.shape)}")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    if gammas is None:
        shape = (draws, len(x), widths[-1])
        gammas = torch.randn(shape, generator=gen, dtype=x.dtype, device=x.device)
    gammas = torch.as_tensor(gammas).to(x)
    if gammas.dim() != 3 or gammas.shape[1:] != (len(x), widths[-1]) or len(gammas) < 1:
        raise InputError(
            f"gammas must have shape (draws >= 1, n={len(x)}, d_L={widths[-1]}), got "
            f"{tuple(gammas.shape)}"
        )
    draws = len(gammas)
    bound = low_rank_complexity(widths, norms, ranks, float(x.norm()), C1=C1, C2=C2)
    params = dict(draws=draws, steps=steps, restarts=restarts, lr=lr, slopes=slopes, seed=seed)
    params.update(C1=C1, C2=C2, widths=widths, spectral_norms=norms, ranks=ranks, n=len(x))
    if min(ranks) == 0 or min(norms) == 0:  # the class is {0}
        zeros = (0.0,) * draws
        return ComplexityEstimate(0.0, 0.0, zeros, zeros, 0.0, bound, params)
    explicit, c = _starts(x, widths, norms, slopes)
    scale = math.prod(norms)
    results, starts = [], []
    for gamma in gammas:
        candidates = list(explicit)
        for _ in range(restarts):
            shapes = [(widths[i + 1], widths[i]) for i in range(len(norms) - 1)]
            random = [torch.randn(s, generator=gen, dtype=x.dtype, device=x.device) for s in shapes]
            candidates.append(
                [project(w, r, b) for w, r, b in zip(random, ranks, norms, strict=False)]
            )
        starts.append(scale * float((gamma.T @ c).norm()))
        results.append(
            max(_ascend(w, gamma, x, norms, ranks, slopes, steps, lr) for w in candidates)
        )
    values = torch.tensor(results, dtype=torch.float64)
    stderr = float(values.std() / math.sqrt(draws)) if draws > 1 else math.nan
    baseline = scale * float(c.norm()) * expected_gaussian_norm(widths[-1])
    return ComplexityEstimate(
        float(values.mean()), stderr, tuple(results), tuple(starts), baseline, bound, params
    )
