"""Per-class statistics of a layer's features, streamed over batches in float64, and the
neural-collapse metrics NC1, CDNV, NC2 and NC3 that follow from them (definitions in
:mod:`reluscope.measures.neural_collapse`).

Per layer, the per-class counts and means, the pooled within-class scatter matrix (p x p) and
the per-class sums of squared deviations are merged batch by batch with Chan's update, so any
split into batches (or meters) gives the all-at-once statistics (up to rounding).


Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.simplex import simplex_distances

_F64 = torch.float64


class ClassStatistics:
    """Per-class counts, means and squared deviations, and the pooled within-class scatter
    matrix of p-dimensional features, in float64, merged batch by batch (Chan et al. 1979)."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.dim = dim
        self.counts = torch.zeros(num_classes, dtype=_F64, device=device)
        self.means = torch.zeros(num_classes, dim, dtype=_F64, device=device)
        #: sum over points of (h - mu_c)(h - mu_c)^T, pooled over classes (p x p)
        self.scatter = torch.zeros(dim, dim, dtype=_F64, device=device)
        #: per class, the sum over its points of ||h - mu_c||^2
        self.squares = torch.zeros(num_classes, dtype=_F64, device=device)

    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add points ``features`` (n, p) with class indices ``labels`` (n,), both checked."""
        h = features.to(device=self.means.device, dtype=_F64)
        y = labels.to(self.means.device)
        batch = ClassStatistics(self.num_classes, self.dim, self.means.device)
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(_F64)
        batch.counts = onehot.sum(0)
        batch.means = (onehot.T @ h) / batch.counts.clamp_min(1).unsqueeze(1)
        dev = h - batch.means[y]
        batch.scatter = dev.T @ dev
        batch.squares = torch.zeros_like(self.squares).index_add_(0, y, (dev * dev).sum(1))
        self.merge(batch)

    def merge(self, other: ClassStatistics) -> None:
        """Add the points summarised by ``other`` (Chan et al.'s parallel update)."""
        nb = other.counts.to(self.counts.device)
        n = self.counts + nb
        delta = other.means.to(self.means.device) - self.means  # ignored where nb = 0
        weight = self.counts * nb / n.clamp_min(1)
        self.means += delta * (nb / n.clamp_min(1)).unsqueeze(1)
        scatter = other.scatter.to(self.scatter.device)
        self.scatter += scatter + (delta * weight.unsqueeze(1)).T @ delta
        self.squares += other.squares.to(self.squares.device) + weight * (delta * delta).sum(1)
        self.counts = n

    def present(self) -> Tensor:
        """Indices of the classes with at least one point."""
        return torch.nonzero(self.counts > 0).flatten()

    def metrics(self, classifier: Tensor | None = None) -> dict[str, float]:
        """NC1, CDNV, NC2, the rank of the centred means and the traces (module docstring);
        with ``classifier`` (W: one row per class, p columns) also NC3 and NC2 of W."""
        keep = self.present()
        if len(keep) < 2:
            raise InputError(
                "neural collapse needs points of at least two classes; got only class(es) "
                f"{keep.tolist()}"
            )
        counts, mu = self.counts[keep], self.means[keep]
        c, p = len(keep), self.dim
        total = counts.sum()
        centred = (mu - (counts @ mu) / total).T  # M, p x C
        sw = self.scatter / total
        # sum_c n_c (mu_c - mu_G) = 0: M has rank <= C - 1. Project that null direction out
        # exactly (Q: orthonormal basis of counts^perp) so that rounding cannot revive it.
        q = torch.linalg.qr(counts.unsqueeze(1), mode="complete").Q[:, 1:]
        u, s, _ = torch.linalg.svd(centred @ q, full_matrices=False)
        scale = torch.maximum(s.max(), mu.norm(dim=1).max())  # rounding of M is relative to mu
        kept = s > max(p, c) * torch.finfo(_F64).eps * scale
        tr_sw = torch.trace(sw)
        tr_sb = (s * s).sum() / c
        if kept.any():
            uk = u[:, kept]
            nc1 = ((uk.T @ sw @ uk).diagonal() / s[kept] ** 2).sum()
        else:
            nc1 = tr_sw / torch.zeros((), dtype=_F64)  # inf, or NaN when Sigma_W = 0 too
        var = self.squares[keep] / counts
        dist2 = torch.cdist(mu, mu, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        i, j = torch.triu_indices(c, c, 1, device=mu.device)
        out = dict(
            nc1=nc1,
            nc1_trace=tr_sw / tr_sb,
            cdnv=((var[i] + var[j]) / (2 * dist2[i, j])).mean(),
            means_rank=kept.sum().to(_F64),
            trace_sw=tr_sw,
            trace_sb=tr_sb,
        )
        out.update({f"nc2_{k}": v for k, v in simplex_distances(centred.T).items()})
        if classifier is not None:
            w = classifier.to(device=mu.device, dtype=_F64)[keep]
            out.update({f"w_{k}": v for k, v in simplex_distances(w).items()})
            out["nc3"] = torch.linalg.matrix_norm(
                w.T / torch.linalg.matrix_norm(w) - centred / torch.linalg.matrix_norm(centred)
            )
        return {k: float(v) for k, v in out.items()}


def nearest_means(features: Tensor, means: Tensor, classes: Tensor) -> Tensor:
    """For each row of ``features``, the entry of ``classes`` whose row of ``means`` is
    nearest (Euclidean; the first on ties), computed in float64."""
    d = torch.cdist(features.to(_F64), means.to(_F64), compute_mode="donot_use_mm_for_euclid_dist")
    return classes[d.argmin(dim=1)]
