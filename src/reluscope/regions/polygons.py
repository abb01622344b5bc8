"""Split a set of convex polygons that share vertices by the zero sets of affine functions.

Polygons are rows of vertex indices in counter-clockwise order, padded by repeating the last
vertex, with an explicit vertex count. All polygons crossed by one neuron are split in one
batched step, and a vertex created on an edge shared by two polygons is created once, so the
partition stays a proper planar subdivision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reluscope.regions.walk import Growable

_KEY = 1 << 31
_CHUNK_ELEMENTS = 1 << 24


class PolygonSplitter:
    """Holds the polygons of a plane partition and splits them at each neuron site."""

    def __init__(self, polygons: Tensor, counts: Tensor) -> None:
        self.polys = Growable(polygons)
        self.counts = Growable(counts)

    def split(self, table: Growable, zoff: int, n: int, eps: Tensor) -> None:
        z = table.view()[:, zoff : zoff + n]
        pos, neg = z > eps, z < -eps
        cross = self._crossings(pos, neg)
        del pos, neg
        neurons = cross.any(0).nonzero().flatten().tolist()
        if not neurons:
            return
        cross_t = cross.t().contiguous()
        origin = Growable(torch.arange(cross.shape[0], device=cross.device))
        for j in neurons:
            cand = cross_t[j][origin.view()].nonzero().flatten()
            if len(cand):
                self._split_by(table, zoff + j, float(eps[j]), cand, origin)

    def _crossings(self, pos: Tensor, neg: Tensor) -> Tensor:
        """For every polygon and neuron: has the polygon vertices strictly on both sides?"""
        polys = self.polys.view()
        width, n = polys.shape[1], pos.shape[1]
        out = torch.empty(len(polys), n, dtype=torch.bool, device=pos.device)
        step = max(1, _CHUNK_ELEMENTS // max(1, width * n))
        for i in range(0, len(polys), step):
            idx = polys[i : i + step]
            out[i : i + step] = pos[idx].any(1) & neg[idx].any(1)
        return out

    def _split_by(
        self, table: Growable, col: int, eps: float, cand: Tensor, origin: Growable
    ) -> None:
        idx = self.polys.view()[cand]
        cnt = self.counts.view()[cand]
        f = table.data[idx, col]
        sign = (f > eps).to(torch.int8) - (f < -eps).to(torch.int8)
        hit = (sign > 0).any(1) & (sign < 0).any(1)
        if not bool(hit.all()):
            cand, idx, cnt, sign = cand[hit], idx[hit], cnt[hit], sign[hit]
            if len(cand) == 0:
                return
        k, width = idx.shape
        slot = torch.arange(width, device=idx.device)
        valid = slot < cnt[:, None]
        nxt = torch.where(slot + 1 < cnt[:, None], slot + 1, 0)
        idx_b = idx.gather(1, nxt)
        edge = valid & (sign * sign.gather(1, nxt) < 0)

        a, b = idx[edge], idx_b[edge]
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        keys, inverse = torch.unique(lo * _KEY + hi, return_inverse=True)
        ulo, uhi = keys // _KEY, keys % _KEY
        rows_lo, rows_hi = table.data[ulo], table.data[uhi]
        f_lo, f_hi = rows_lo[:, col], rows_hi[:, col]
        t = (f_lo / (f_lo - f_hi)).unsqueeze(1)
        rows = torch.lerp(rows_lo, rows_hi, t)
        rows[:, col] = 0
        new_ids = table.append(rows)
        new_vertex = torch.zeros_like(idx)
        new_vertex[edge] = new_ids[inverse]

        entries = torch.stack([idx, new_vertex], dim=2).reshape(k, 2 * width)
        keep_pos = torch.stack([valid & (sign >= 0), edge], dim=2).reshape(k, 2 * width)
        keep_neg = torch.stack([valid & (sign <= 0), edge], dim=2).reshape(k, 2 * width)
        pos_child, pos_cnt = _compact(entries, keep_pos)
        neg_child, neg_cnt = _compact(entries, keep_neg)
        new_width = max(pos_child.shape[1], neg_child.shape[1], width)
        self.polys.widen(new_width)
        self.polys.data[cand] = _pad(pos_child, pos_cnt, new_width)
        self.counts.data[cand] = pos_cnt
        self.polys.append(_pad(neg_child, neg_cnt, new_width))
        self.counts.append(neg_cnt)
        origin.append(origin.view()[cand])


def _compact(entries: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Move the kept entries of each row to its front, in order; returns them and their counts."""
    k, w = entries.shape
    counts = keep.sum(1)
    target = torch.where(keep, keep.cumsum(1) - 1, w)
    out = entries.new_zeros((k, w + 1))
    out.scatter_(1, target, entries)
    return out[:, : int(counts.max())], counts


def _pad(rows: Tensor, counts: Tensor, width: int) -> Tensor:
    """Rows widened to ``width``, every slot past the count repeating the last vertex."""
    slot = torch.arange(width, device=rows.device)
    col = torch.minimum(slot[None, :], (counts - 1)[:, None]).clamp(max=rows.shape[1] - 1)
    return rows.gather(1, col)
