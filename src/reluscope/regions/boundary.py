"""Decision-boundary segments inside the regions of a plane partition.

Internal to reluscope.regions: not part of the public API.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _zero_segments(pts: Tensor, g: Tensor, counts: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Where the affine function with vertex values g vanishes inside each convex polygon.

    pts (P, W, 2) and g (P, W) are the polygons' vertices and values. Returns endpoints (P, 2, 2)
    and a mask of the polygons whose zero set is a segment of positive length.
    """
    p, w = g.shape
    slot = torch.arange(w, device=g.device)
    valid = slot < counts[:, None]
    nxt = torch.where(slot + 1 < counts[:, None], slot + 1, 0)
    g_b, pts_b = g.gather(1, nxt), pts.gather(1, nxt[..., None].expand(-1, -1, 2))
    on = valid & (g.abs() <= eps[:, None])
    edge = valid & (g.abs() > eps[:, None]) & (g_b.abs() > eps[:, None]) & (g * g_b < 0)
    t = torch.where(edge, g / torch.where(edge, g - g_b, 1.0), 0.0)
    cross = pts + t[..., None] * (pts_b - pts)
    cand = torch.cat([pts, cross], dim=1)
    ok = torch.cat([on, edge], dim=1)
    first = ok.to(torch.int8).argmax(1)
    a = cand[torch.arange(p, device=g.device), first]
    dist = ((cand - a[:, None]) ** 2).sum(2).masked_fill(~ok, -1.0)
    b = cand[torch.arange(p, device=g.device), dist.argmax(1)]
    dist_b = ((cand - b[:, None]) ** 2).sum(2).masked_fill(~ok, -1.0)
    c = cand[torch.arange(p, device=g.device), dist_b.argmax(1)]
    length = ((c - b) ** 2).sum(1)
    all_zero = (on | ~valid).all(1)
    good = ok.any(1) & (length > 0) & ~all_zero
    return torch.stack([b, c], dim=1), good


def decision_boundary_segments(
    vertices: Tensor, outputs: Tensor, polygons: Tensor, counts: Tensor, threshold: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Segments (m, 2, 2) of the decision boundary and their class pairs (m, 2).

    A scalar output is classified by its sign relative to ``threshold`` (pair (0, 1)); a vector
    output by arg-max, with a segment wherever two classes tie for the maximum.
    """
    pts = vertices[polygons]
    vals = outputs[polygons]
    scale = outputs.abs().max().clamp_min(1e-300) if outputs.numel() else outputs.new_ones(())
    eps = (1e-12 * scale).expand(len(polygons)).to(vals.dtype)
    if outputs.shape[1] == 1:
        seg, good = _zero_segments(pts, vals[..., 0] - threshold, counts, eps)
        pairs = torch.tensor([[0, 1]], device=vertices.device).expand(int(good.sum()), 2)
        return seg[good], pairs
    segments: list[Tensor] = []
    class_pairs: list[Tensor] = []
    n_cls = outputs.shape[1]
    for i in range(n_cls):
        for j in range(i + 1, n_cls):
            seg, good = _zero_segments(pts, vals[..., i] - vals[..., j], counts, eps)
            if not good.any():
                continue
            seg, keep = _clip_to_maximum(seg[good], pts[good], vals[good], counts[good], i, j)
            segments.append(seg[keep])
            class_pairs.append(
                torch.tensor([i, j], device=vertices.device).expand(int(keep.sum()), 2)
            )
    if not segments:
        return vertices.new_zeros(0, 2, 2), torch.zeros(
            0, 2, dtype=torch.long, device=vertices.device
        )
    return torch.cat(segments), torch.cat(class_pairs)


def _clip_to_maximum(seg, pts, vals, counts, i, j):
    """Keep the part of each tie segment of classes i, j where they are the maximum."""
    # Affine coefficients of the outputs in each polygon, from three vertices spanning it.
    n = len(seg)
    coef = _affine_fit(pts, vals, counts)  # (n, C, 3)
    ends = torch.cat([seg, seg.new_ones(n, 2, 1)], dim=2)  # (n, 2, 3)
    at_ends = torch.einsum("nek,nck->nec", ends, coef)  # (n, 2, C)
    margin = at_ends[:, :, i : i + 1] - at_ends  # f_i - f_m at both ends
    d0, d1 = margin[:, 0], margin[:, 1]
    lo = seg.new_zeros(n)
    hi = seg.new_ones(n)
    scale = at_ends.abs().amax((1, 2)).clamp_min(1e-300)
    tol = 1e-12 * scale[:, None]
    # constraint d0 + lam (d1 - d0) >= 0
    slope = d1 - d0
    bound = -d0 / torch.where(slope.abs() > 0, slope, 1.0)
    up = slope > tol
    down = slope < -tol
    flat_bad = (~up & ~down) & (d0 < -tol)
    lo = torch.maximum(lo, torch.where(up, bound, 0.0).amax(1))
    hi = torch.minimum(hi, torch.where(down, bound, 1.0).amin(1))
    keep = (hi > lo) & ~flat_bad.any(1)
    a = seg[:, 0] + lo[:, None] * (seg[:, 1] - seg[:, 0])
    b = seg[:, 0] + hi[:, None] * (seg[:, 1] - seg[:, 0])
    return torch.stack([a, b], dim=1), keep


def _affine_fit(pts: Tensor, vals: Tensor, counts: Tensor) -> Tensor:
    """Least-squares affine coefficients (a_s, a_t, c) per polygon and output, exact for affine data."""
    w = pts.shape[1]
    valid = (torch.arange(w, device=pts.device) < counts[:, None]).to(pts.dtype)
    design = torch.cat([pts, pts.new_ones(pts.shape[:2] + (1,))], dim=2) * valid[..., None]
    target = vals * valid[..., None]
    gram = design.transpose(1, 2) @ design
    rhs = design.transpose(1, 2) @ target
    return torch.linalg.solve(gram, rhs).transpose(1, 2)
