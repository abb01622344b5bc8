"""How far a set of vectors is from a simplex equiangular tight frame (the geometry neural
collapse converges to).

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import torch
from torch import Tensor


def simplex_distances(vectors: Tensor) -> dict[str, Tensor]:
    """How far the rows of ``vectors`` (C x p, C >= 2) are from a simplex ETF: ``equinorm``
    (std / mean of the norms), ``equiangular`` (std of the pairwise cosines), ``maxangle``
    (mean |cos + 1/(C-1)|) and ``etf`` (Frobenius distance of the normalised Gram matrix to
    (I - 11^T/C) / sqrt(C-1)). Population standard deviations; pairs c < c'."""
    c = len(vectors)
    gram = vectors @ vectors.T
    norms = gram.diagonal().sqrt()
    cos = gram / (norms.unsqueeze(0) * norms.unsqueeze(1))
    i, j = torch.triu_indices(c, c, 1, device=vectors.device)
    pairs = cos[i, j]
    eye = torch.eye(c, dtype=vectors.dtype, device=vectors.device)
    etf = (eye - 1.0 / c) / (c - 1) ** 0.5
    return dict(
        equinorm=norms.std(correction=0) / norms.mean(),
        equiangular=pairs.std(correction=0),
        maxangle=(pairs + 1.0 / (c - 1)).abs().mean(),
        etf=torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - etf),
    )
