"""What norm- and rank-based bounds read from a network and a sample, as plain numbers.

:class:`NetworkNorms` holds per-layer widths, spectral and Frobenius norms, (2,1) norms and
ranks; :class:`SampleStats` the sample size and input norms. Both can be built from numbers
(for bounds "a priori", without a model) or from weight matrices and data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reluscope.bounds import checks
from reluscope.errors import InputError
from reluscope.measures.weight_ranks import matrix_stats
from reluscope.validation import check_choice, invalid


@dataclass(frozen=True)
class NetworkNorms:
    """Per-layer numbers of a depth-L network x -> W_L phi(... phi(W_1 x)).

    ``widths`` = (d_0, ..., d_L) (input, hidden, output); for layer l (1-based) W_l has shape
    (d_l, d_{l-1}). ``spectral`` = ||W_l||_2, ``frobenius`` = ||W_l||_F, ``l21`` =
    ||(W_l - M_l)^T||_{2,1} (sum of the Euclidean norms of the rows of W_l - M_l, M_l a
    reference such as the initialisation, 0 by default) and ``ranks`` = the r_l the low-rank
    bound and the rank-substituted forms use (0 <= r_l <= min(d_l, d_{l-1})).
    """

    widths: tuple[int, ...]
    spectral: tuple[float, ...]
    frobenius: tuple[float, ...]
    l21: tuple[float, ...]
    ranks: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.widths, Sequence) or len(self.widths) < 2:
            raise InputError(
                f"widths must be (d_0, ..., d_L) with at least two entries, got {self.widths!r}"
            )
        widths = tuple(checks.integer(w, f"widths[{i}]") for i, w in enumerate(self.widths))
        depth = len(widths) - 1
        object.__setattr__(self, "widths", widths)
        for name in ("spectral", "frobenius", "l21"):
            values = checks.per_layer(getattr(self, name), name, depth, nonnegative=True)
            object.__setattr__(self, name, values)
        if not isinstance(self.ranks, Sequence) or len(self.ranks) != depth:
            raise InputError(f"ranks must have {depth} entries (one per layer), got {self.ranks!r}")
        ranks = []
        for i, r in enumerate(self.ranks):
            top = min(widths[i], widths[i + 1])
            r = checks.integer(r, f"ranks[{i}]", minimum=0)
            if r > top:
                raise InputError(
                    f"ranks[{i}] = {r} exceeds min(d_{i + 1}, d_{i}) = {top} for a "
                    f"{widths[i + 1]} x {widths[i]} layer"
                )
            ranks.append(r)
        object.__setattr__(self, "ranks", tuple(ranks))

    @property
    def depth(self) -> int:
        """L, the number of weight layers."""
        return len(self.widths) - 1

    @property
    def stable_ranks(self) -> tuple[float, ...]:
        """||W_l||_F^2 / ||W_l||_2^2 (0 for a zero layer)."""
        return tuple(
            f**2 / s**2 if s > 0 else 0.0
            for f, s in zip(self.frobenius, self.spectral, strict=True)
        )

    @classmethod
    def from_matrices(
        cls,
        weights: Sequence[Tensor],
        ranks: Sequence[int] | None = None,
        *,
        reference: Sequence[Tensor] | None = None,
        rank_kind: str = "exact",
        rtol: float | None = None,
        atol: float | None = None,
        eps: float | None = None,
    ) -> NetworkNorms:
        """The numbers of the matrices ``weights`` (W_1 first, each (d_l, d_{l-1})).

        ``ranks``: given, or each matrix's 'exact' rank (default tolerance) or 'numerical'
        rank (``rtol`` / ``atol``, as in :func:`reluscope.measures.weight_ranks.matrix_stats`),
        chosen by ``rank_kind``; ``eps`` (default: the matrices' dtype's) sets the exact-rank
        tolerance. ``reference``: matrices M_l for the (2,1) distances.
        """
        check_choice("rank_kind", rank_kind, ("exact", "numerical"))
        weights = [torch.as_tensor(w) for w in weights]
        if not weights or any(w.dim() != 2 for w in weights):
            raise invalid(
                "weights",
                "a non-empty sequence of 2-D matrices",
                f"shapes {[tuple(w.shape) for w in weights]}",
                raw=True,
            )
        widths = [weights[0].shape[1]]
        for i, w in enumerate(weights):
            if w.shape[1] != widths[-1]:
                raise InputError(
                    f"weights[{i}] has {w.shape[1]} columns but the previous layer has "
                    f"{widths[-1]} outputs"
                )
            widths.append(w.shape[0])
        if reference is not None:
            reference = [torch.as_tensor(m) for m in reference]
            shapes = [tuple(w.shape) for w in weights]
            if [tuple(m.shape) for m in reference] != shapes:
                raise InputError(f"reference matrices must have the shapes {shapes}")
        stats = [matrix_stats(w, rtol=rtol, atol=atol, eps=eps) for w in weights]
        if ranks is None:
            key = "rank" if rank_kind == "exact" else "numerical_rank"
            ranks = [s[key] for s in stats]
        if reference is None:
            l21 = [s["l21_norm"] for s in stats]
        else:
            l21 = [
                float((w.double() - m.to(w.device).double()).norm(dim=1).sum())
                for w, m in zip(weights, reference, strict=True)
            ]
        return cls(
            tuple(widths),
            tuple(s["spectral_norm"] for s in stats),
            tuple(s["frobenius_norm"] for s in stats),
            tuple(l21),
            tuple(ranks),
        )


@dataclass(frozen=True)
class SampleStats:
    """The sample as the bounds see it: ``n`` points, ``data_norm`` = ||X||_F =
    sqrt(sum_i ||x_i||^2) and ``max_norm`` = max_i ||x_i|| (inputs flattened)."""

    n: int
    data_norm: float
    max_norm: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", checks.integer(self.n, "n"))
        object.__setattr__(
            self, "data_norm", checks.real(self.data_norm, "data_norm", nonnegative=True)
        )
        object.__setattr__(
            self, "max_norm", checks.real(self.max_norm, "max_norm", nonnegative=True)
        )
        if self.max_norm > self.data_norm * (
            1 + 1e-12
        ) or self.data_norm > self.max_norm * math.sqrt(self.n) * (1 + 1e-12):
            raise InputError(
                f"inconsistent sample norms: expected max_norm <= data_norm <= sqrt(n) * max_norm, "
                f"got n={self.n}, data_norm={self.data_norm}, max_norm={self.max_norm}"
            )

    @classmethod
    def from_data(cls, x: Tensor) -> SampleStats:
        """The stats of the points ``x`` (n, *shape), flattened, in float64."""
        x = torch.as_tensor(x).reshape(len(x), -1).double()
        norms = x.norm(dim=1)
        return cls(len(x), float(norms.norm()), float(norms.max()) if len(x) else 0.0)
