"""Is a dataset symmetric, i.e. closed under (x, y) -> (-x, -y)?

The equivalence of bias-free ReLU and linear networks (spec 2.3) needs the *training sample*
itself to be symmetric: then odd-times-even averages vanish and the loss splits into an odd and
an even part. The exact test matches every point z = (x, y) with a mirror point -z within
``atol`` in the max norm, and also checks multiplicities, so that the empirical distribution
itself is symmetric. It sorts the points by a random projection and checks only the points whose
projection is close enough: O(P log P) time for well-separated points.

The distribution-level proxies of spec 5(c) are the mean input and target, and the odd-residual
statistic: with e = y - B x the least-squares residual, max over random unit directions w of
|<e |w^T x|>|, the gradient that drives the even part of a bias-free network. It is 0 (to
rounding) on a symmetric sample and of order 1/sqrt(P) on an unsymmetrised i.i.d. sample of a
symmetric distribution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from reluscope.dynamics.checks import as_data, count, positive_real
from reluscope.records import Records, record, tagged


@dataclass(frozen=True)
class SymmetryReport(Records):
    """The exact test and the proxies for one dataset of ``num_points`` points.

    Exact (within ``atol``, max norm over the concatenated (x, y)):
    ``closed``: every point has a mirror; ``symmetric``: moreover every point has as many
    mirrors as copies of itself (the empirical distribution is symmetric); ``unmatched``: points
    without a mirror; ``unbalanced``: points whose mirror count differs from their copy count;
    ``mirror_error``: over the points that have a mirror, the largest distance from -z to its
    nearest mirror (data units; 0 for an exactly symmetric set, at most ``atol``).

    Proxies: ``mean_x_norm`` = ||<x>||, ``mean_y_norm`` = ||<y>|| (input and target units);
    ``odd_residual`` = max_w |<e |w^T x|>| (target times input units) and
    ``odd_residual_corr`` the same as a correlation, |<e g>| / sqrt(<e^2> <g^2>) with g = |w^T x|
    (dimensionless; 0 when the linear fit is exact to rounding), over ``directions`` random
    unit w.
    """

    symmetric: bool
    closed: bool
    unmatched: int
    unbalanced: int
    mirror_error: float
    mean_x_norm: float
    mean_y_norm: float
    odd_residual: float
    odd_residual_corr: float
    num_points: int
    atol: float
    directions: int
    seed: int

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`), one per field (flags as 0 / 1), with
        ``tags``."""
        return tagged([record(k, v) for k, v in asdict(self).items()], {}, split, tags)


def _near_counts(
    points: np.ndarray, weights: np.ndarray, queries: np.ndarray, atol: float, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query q: the total weight of the points within ``atol`` of q (max norm) and the
    smallest such distance (inf if none).

    Points are sorted by their projection on ``direction``; since |r.(a - b)| <= ||r||_1
    ||a - b||_inf, only points whose projection lies within atol ||r||_1 of q's are candidates
    (found by binary search), and each candidate is then checked exactly. Queries go in chunks
    so that memory stays bounded."""
    proj = points @ direction
    order = np.argsort(proj, kind="stable")
    sorted_proj, sorted_points, sorted_weights = proj[order], points[order], weights[order]
    rounding = 64 * np.finfo(np.float64).eps * points.shape[1] * float(np.abs(points).max())
    reach = (atol + rounding) * float(np.abs(direction).sum()) * (1 + 1e-9)
    query_proj = queries @ direction
    query_order = np.argsort(query_proj, kind="stable")  # sorted queries: cache-friendly search
    counts = np.zeros(len(queries))
    best = np.full(len(queries), np.inf)
    chunk = max(1, 2**21 // points.shape[1])
    for start in range(0, len(queries), chunk):
        which = query_order[start : start + chunk]
        qp, q = query_proj[which], queries[which]
        lo = np.searchsorted(sorted_proj, qp - reach, side="left")
        num = np.searchsorted(sorted_proj, qp + reach, side="right") - lo
        owner = np.repeat(np.arange(len(q)), num)
        cand = np.repeat(lo, num) + np.arange(num.sum()) - np.repeat(np.cumsum(num) - num, num)
        dist = np.abs(sorted_points[cand] - q[owner]).max(1)
        ok = dist <= atol
        counts[which] = np.bincount(owner[ok], weights=sorted_weights[cand[ok]], minlength=len(q))
        nearest = np.full(len(q), np.inf)
        np.minimum.at(nearest, owner[ok], dist[ok])
        best[which] = nearest
    return counts, best


def _merge_duplicates(z: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows of z, the index of each row's distinct row and the copies of each.

    Rows are grouped by a random 64-bit hash of their bits; the grouping is then verified, and
    on a hash collision (probability about P^2 / 2^64) np.unique over rows decides."""
    bits = np.ascontiguousarray(z).view(np.uint64)
    mult = np.random.default_rng(seed).integers(1, 2**63, size=z.shape[1], dtype=np.uint64) | 1
    with np.errstate(over="ignore"):  # xor-shift-multiply mixing, so that z and -z differ
        mixed = (bits ^ (bits >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(27)
        keys = (mixed * mult).sum(axis=1, dtype=np.uint64)
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    unique = z[first]
    if not np.array_equal(unique[inverse].view(np.uint64), bits):
        unique, inverse, counts = np.unique(z, axis=0, return_inverse=True, return_counts=True)
    return unique, inverse.reshape(-1), counts


def _mirror_counts(
    z: np.ndarray, atol: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: how many points lie within atol of it (itself included), how many within atol
    of its mirror -z, and the distance from -z to the nearest of those (inf if none).

    Bitwise-identical rows are merged first, so that heavy duplication costs nothing."""
    unique, inverse, weight = _merge_duplicates(z, seed)
    direction = np.random.default_rng(seed).standard_normal((z.shape[1],))
    copies, _ = _near_counts(unique, weight.astype(np.float64), unique, atol, direction)
    mirrors, dist = _near_counts(unique, weight.astype(np.float64), -unique, atol, direction)
    return copies[inverse], mirrors[inverse], dist[inverse]


def _odd_residual(
    x: torch.Tensor, y: torch.Tensor, directions: int, seed: int
) -> tuple[float, float]:
    """max over random unit w of |<e |w^T x|>| and of its correlation form (see the module)."""
    beta = torch.linalg.lstsq(x, y, driver="gelsd").solution
    e = y - x @ beta
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(x.shape[1], directions, generator=gen, dtype=x.dtype)
    g = (x @ (w / w.norm(dim=0))).abs()
    cross = (e.T @ g / len(x)).abs()
    e_rms = torch.sqrt((e**2).mean(0))
    exact = e_rms <= 1e-12 * torch.sqrt((y**2).mean(0))  # a linear fit exact to rounding
    scale = e_rms[:, None] * torch.sqrt((g**2).mean(0))[None, :]
    usable = (scale > 0) & ~exact[:, None]
    corr = torch.where(usable, cross / scale.clamp_min(1e-300), torch.zeros_like(cross))
    return float(cross.max()), float(corr.max())


def symmetry_report(
    x: Any, y: Any, atol: float | None = None, directions: int = 64, seed: int = 0
) -> SymmetryReport:
    """Test whether (x, y) is closed under (x, y) -> (-x, -y), exactly within ``atol`` (default
    1e-9 max(1, max |z|)) and by the proxies (``directions`` random directions from ``seed``,
    which also seeds the projection of the exact test, whose result does not depend on it)."""
    xt, yt = as_data(x, y, "cpu")
    z = torch.cat([xt, yt], 1).numpy()
    scale = float(np.abs(z).max())
    atol = 1e-9 * max(1.0, scale) if atol is None else positive_real(atol, "atol")
    directions = count(directions, "directions", minimum=1)
    seed = count(seed, "seed")
    copies, mirrors, dist = _mirror_counts(z, atol, seed)
    residual, corr = _odd_residual(xt, yt, directions, seed)
    return SymmetryReport(
        symmetric=bool((copies == mirrors).all()),
        closed=bool((mirrors > 0).all()),
        unmatched=int((mirrors == 0).sum()),
        unbalanced=int((copies != mirrors).sum()),
        mirror_error=float(dist[np.isfinite(dist)].max(initial=0.0)),
        mean_x_norm=float(xt.mean(0).norm()),
        mean_y_norm=float(yt.mean(0).norm()),
        odd_residual=residual,
        odd_residual_corr=corr,
        num_points=len(xt),
        atol=atol,
        directions=directions,
        seed=seed,
    )


def symmetrize(x: Any, y: Any) -> tuple[Any, Any]:
    """The augmented set ((x; -x), (y; -y)) of 2P points: torch tensors if x is one, else numpy
    arrays, each in its own dtype; a 1-D ``y`` stays 1-D."""
    as_data(x, y)
    if isinstance(x, torch.Tensor):
        y = torch.as_tensor(y, device=x.device)
        return torch.cat([x, -x]), torch.cat([y, -y])
    x, y = np.asarray(x), np.asarray(y)
    return np.concatenate([x, -x]), np.concatenate([y, -y])
