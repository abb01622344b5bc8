"""Split a set of convex polygons that share vertices by the zero sets of affine functions.

Polygons are rows of vertex indices in counter-clockwise order, padded by repeating the last
vertex, with an explicit vertex count. All polygons crossed by one neuron are split in one
batched step, and a vertex created on an edge shared by two polygons is created once, so the
partition stays a proper planar subdivision.

Internal to reluscope.regions: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.regions.walk import _CHUNK_ELEMENTS, Growable, Values

#: The default largest number of regions a partition may reach before it stops.
DEFAULT_MAX_REGIONS = 5_000_000

_KEY = 1 << 31
_REFRESH_GROWTH = 2
#: Below this many polygons a re-test costs more than it saves.
_REFRESH_MIN_POLYGONS = 1024


class PolygonSplitter:
    """Holds the polygons of a plane partition and splits them at each neuron site."""

    def __init__(
        self,
        polygons: Tensor,
        counts: Tensor,
        max_regions: int = DEFAULT_MAX_REGIONS,
        progress: Callable[[int], None] | None = None,
        offset: int = 0,
        keys: Tensor | None = None,
        splits: int = 0,
    ) -> None:
        self.polys = Growable(polygons)
        self.counts = Growable(counts)
        if keys is None:
            keys = torch.arange(int(polygons.max()) + 1, device=polygons.device)
        #: Per vertex, a name that does not depend on how the walk was chunked: the vertices
        #: of the start, then a hash of the edge's ends and the neuron that made the vertex.
        self.keys = Growable(keys)
        #: The number of split calls so far (part of the new vertices' keys).
        self.splits = splits
        self.max_regions = max_regions
        self.progress = progress
        #: Regions counted towards ``max_regions`` and ``progress`` besides these polygons (those
        #: of the other groups of a chunked walk).
        self.offset = offset
        #: For each polygon, the polygon it came from since :meth:`begin_merge` (else None).
        self.ancestors: Growable | None = None

    @property
    def num_cells(self) -> int:
        return self.offset + self.polys.n

    def snapshot(self) -> tuple[Tensor, Tensor, int, int]:
        return self.polys.view().clone(), self.counts.view().clone(), self.keys.n, self.splits

    def restore(self, state: tuple[Tensor, Tensor, int, int]) -> None:
        self.polys, self.counts = Growable(state[0]), Growable(state[1])
        self.keys.n, self.splits = state[2], state[3]
        self.ancestors = None

    def groups(self, coords: Tensor, n: int) -> list[Tensor]:
        """About ``n`` groups of neighbouring polygons: strips along s, cut along t."""
        polys, counts = self.polys.view(), self.counts.view()
        total = len(polys)
        n = min(n, total)
        if n < 2:
            return [torch.arange(total, device=polys.device)]
        valid = torch.arange(polys.shape[1], device=polys.device) < counts[:, None]
        center = (coords[polys] * valid[..., None]).sum(1) / counts[:, None].to(coords.dtype)
        strips = max(1, round(n**0.5))
        per_strip = math.ceil(n / strips)
        by_s = torch.argsort(center[:, 0], stable=True)
        out: list[Tensor] = []
        for strip in torch.tensor_split(by_s, strips):
            strip = strip[torch.argsort(center[strip, 1], stable=True)]
            out.extend(g for g in torch.tensor_split(strip, per_strip) if len(g))
        return out

    def child(self, cells: Tensor, offset: int) -> tuple[PolygonSplitter, Tensor]:
        polys, counts = self.polys.view()[cells], self.counts.view()[cells]
        verts, local = torch.unique(polys, return_inverse=True)
        child = PolygonSplitter(
            local,
            counts.clone(),
            self.max_regions,
            self.progress,
            offset,
            self.keys.view()[verts],
            self.splits,
        )
        return child, verts

    def adopt(self, children: list[PolygonSplitter]) -> Tensor:
        """Take the polygons of walked children; a vertex that several children made (on the
        border of their groups: the same key) becomes one. Returns, for every vertex now, its
        first row in the children's vertex tables laid end to end."""
        keys = torch.cat([c.keys.view() for c in children])
        unique, ids = torch.unique(keys, return_inverse=True)
        first = torch.full((len(unique),), len(keys), dtype=torch.long, device=keys.device)
        first.scatter_reduce_(0, ids, torch.arange(len(keys), device=keys.device), reduce="amin")
        width = max(c.polys.data.shape[1] for c in children)
        polys, start = [], 0
        for c in children:
            c.polys.widen(width)
            polys.append(ids[start + c.polys.view()])
            start += c.keys.n
        self.polys = Growable(torch.cat(polys))
        self.counts = Growable(torch.cat([c.counts.view() for c in children]))
        self.keys = Growable(unique)
        self.splits = children[0].splits
        return first

    def begin_merge(self, table: Growable) -> None:
        n = self.polys.n
        self.ancestors = Growable(torch.arange(n, device=self.polys.data.device))

    def merge(self, table: Growable, pattern: Callable[[Tensor], Tensor]) -> None:
        """Merge the pieces of each earlier polygon that share ``pattern`` into one polygon.

        The pieces of one polygon with one pattern form a convex polygon (a linear region within
        the cell), so the union is the cycle of their edges that are not shared inside the
        group; its vertices are sorted by angle around their mean.
        """
        if self.ancestors is None:
            raise RuntimeError("merge needs a begin_merge before it")
        ancestors = self.ancestors.view()
        self.ancestors = None
        polys, counts = self.polys.view(), self.counts.view()
        n, width = polys.shape
        rows = table.view()
        slot = torch.arange(width, device=polys.device)
        group = self._groups(rows, ancestors, pattern)
        size = torch.bincount(group)
        multi = size[group] > 1
        if not bool(multi.any()):
            return
        sel = multi.nonzero().flatten()
        g, pp, cnt = group[sel], polys[sel], counts[sel]
        nxt = torch.where(slot + 1 < cnt[:, None], slot + 1, 0)
        ok = slot < cnt[:, None]
        a, b = pp[ok], pp.gather(1, nxt)[ok]
        ge = g[:, None].expand_as(pp)[ok]
        ends = torch.stack([ge, torch.minimum(a, b), torch.maximum(a, b)], dim=1)
        _, inv, twice = torch.unique(ends, dim=0, return_inverse=True, return_counts=True)
        boundary = (twice[inv] == 1) & (a != b)
        gv, va = ge[boundary], a[boundary]
        pairs = torch.unique(torch.stack([gv, va], dim=1), dim=0)
        gv, va = pairs[:, 0], pairs[:, 1]
        groups, gidx = torch.unique(gv, return_inverse=True)
        xy = rows[va, :2]
        sums = torch.zeros(len(groups), 2, dtype=xy.dtype, device=xy.device)
        sums.index_add_(0, gidx, xy)
        num = torch.bincount(gidx, minlength=len(groups))
        center = sums / num[:, None].to(xy.dtype)
        angle = torch.atan2(xy[:, 1] - center[gidx, 1], xy[:, 0] - center[gidx, 0])
        order = torch.argsort(angle, stable=True)
        order = order[torch.argsort(gidx[order], stable=True)]
        va, gidx = va[order], gidx[order]
        start = torch.cumsum(num, 0) - num
        pos = torch.arange(len(va), device=va.device) - start[gidx]
        new_width = max(width, int(num.max()))
        merged = torch.zeros(len(groups), new_width, dtype=polys.dtype, device=polys.device)
        merged[gidx, pos] = va
        last = merged[torch.arange(len(groups), device=va.device), num - 1]
        merged = torch.where(
            torch.arange(new_width, device=va.device) < num[:, None], merged, last[:, None]
        )
        # one representative per group (its first polygon) takes the union; the rest go
        first = torch.full((int(group.max()) + 1,), n, dtype=torch.long, device=polys.device)
        first.scatter_reduce_(0, group, torch.arange(n, device=polys.device), reduce="amin")
        keep = ~multi | (first[group] == torch.arange(n, device=polys.device))
        self.polys.widen(new_width)
        out = self.polys.view().clone()
        out_counts = counts.clone()
        reps = first[groups]
        out[reps] = merged
        out_counts[reps] = num
        self.polys = Growable(out[keep].contiguous())
        self.counts = Growable(out_counts[keep].contiguous())

    def _groups(
        self, rows: Tensor, ancestors: Tensor, pattern: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """A group id per polygon: equal for the pieces of one earlier polygon that share
        ``pattern`` at a point inside them. Only pieces of an earlier polygon cut in several
        are evaluated, a chunk of polygons at a time (their vertices' full rows are wide)."""
        polys, counts = self.polys.view(), self.counts.view()
        n, width = polys.shape
        shared = (torch.bincount(ancestors)[ancestors] > 1).nonzero().flatten()
        group = torch.arange(n, device=polys.device)
        if len(shared) == 0:
            return group
        valid = torch.arange(width, device=polys.device) < counts[:, None]
        step = max(1, _CHUNK_ELEMENTS // (width * rows.shape[1]))
        keys = []
        for part in torch.split(shared, step):
            inside = (rows[polys[part]] * valid[part][..., None]).sum(1)
            inside = inside / counts[part, None].to(rows.dtype)
            keys.append(torch.cat([ancestors[part, None], pattern(inside).long()], dim=1))
        _, shared_group = torch.unique(torch.cat(keys), dim=0, return_inverse=True)
        group[shared] = shared_group  # ids 0..; the other polygons are alone in their group
        alone = torch.ones(n, dtype=torch.bool, device=polys.device)
        alone[shared] = False
        group[alone] = (
            int(shared_group.max()) + 1 + torch.arange(int(alone.sum()), device=polys.device)
        )
        return group

    def split(self, table: Growable, site: Values, eps: Tensor) -> None:
        self.splits += 1
        todo = torch.arange(site.n, device=table.data.device)
        while len(todo):
            # Test the neurons left to do against the current polygons; once the polygons have
            # multiplied, test the rest again, so each neuron only visits polygons it may cross.
            cross = self._crossings(site, todo, eps[todo])
            crossing = _any_bits(cross)[: len(todo)].nonzero().flatten().tolist()
            refreshed_at = self.polys.n
            origin = Growable(torch.arange(refreshed_at, device=todo.device))
            done = len(todo)
            for bit in crossing:
                if self.polys.n >= max(_REFRESH_GROWTH * refreshed_at, _REFRESH_MIN_POLYGONS):
                    done = bit
                    break
                row = ((cross[bit >> 3] >> (bit & 7)) & 1).bool()
                cand = row[origin.view()].nonzero().flatten()
                if len(cand):
                    j = int(todo[bit])
                    self._split_by(table, site, j, float(eps[j]), cand, origin)
            todo = todo[done:]

    def _crossings(self, site: Values, todo: Tensor, eps: Tensor) -> Tensor:
        """Bit-packed (ceil(n / 8), polygons) uint8: has the polygon vertices strictly on both
        sides of each neuron ``todo``'s zero set? Bit k of byte row i is neuron todo[8 i + k]."""
        rows = site.table.n
        pos = torch.empty(rows, (len(todo) + 7) // 8, dtype=torch.uint8, device=todo.device)
        neg = torch.empty_like(pos)
        step = max(1, _CHUNK_ELEMENTS // len(todo))
        for r0 in range(0, rows, step):
            z = site.columns(todo, rows=slice(r0, r0 + step))
            pos[r0 : r0 + step] = _pack(z > eps)
            neg[r0 : r0 + step] = _pack(z < -eps)
        polys = self.polys.view()
        any_pos = pos[polys[:, 0]]
        any_neg = neg[polys[:, 0]]
        for w in range(1, polys.shape[1]):
            any_pos |= pos[polys[:, w]]
            any_neg |= neg[polys[:, w]]
        return (any_pos & any_neg).t().contiguous()

    def _split_by(
        self,
        table: Growable,
        site: Values,
        j: int,
        eps: float,
        cand: Tensor,
        origin: Growable,
    ) -> None:
        idx = self.polys.view()[cand]
        cnt = self.counts.view()[cand]
        f = site.column(idx, j)
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
        f_lo, f_hi = site.column(ulo, j), site.column(uhi, j)
        t = (f_lo / (f_lo - f_hi)).unsqueeze(1)
        rows = torch.lerp(rows_lo, rows_hi, t)
        site.mark_zero(rows, j)
        new_ids = table.append(rows)
        ka, kb = self.keys.data[ulo], self.keys.data[uhi]
        tag = self.splits * (1 << 32) + j
        self.keys.append(_mix(torch.minimum(ka, kb), _mix(torch.maximum(ka, kb), _mix(tag))))
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
        if self.ancestors is not None:
            self.ancestors.append(self.ancestors.view()[cand])
        if self.num_cells > self.max_regions:
            raise InputError(
                f"the partition reached {self.num_cells} regions, more than max_regions="
                f"{self.max_regions}: use a smaller extent, a smaller network, or raise "
                "max_regions"
            )
        if self.progress is not None:
            self.progress(self.num_cells)


def _mix(x: Tensor | int, y: Tensor | int = 0) -> Tensor:
    """A 64-bit hash of x ^ y (the splitmix64 finaliser, in wrapping int64 arithmetic)."""
    z = torch.as_tensor(x, dtype=torch.int64) ^ torch.as_tensor(y, dtype=torch.int64)
    z = (z ^ (z >> 30)) * -4658895280553007687  # 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * -7723592293110705685  # 0x94D049BB133111EB
    return z ^ (z >> 31)


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


def _pack(bits: Tensor) -> Tensor:
    """Pack a bool (rows, n) tensor into uint8 (rows, ceil(n / 8)), bit k of byte i = column 8 i + k."""
    rows, n = bits.shape
    pad = (-n) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(rows, pad)], dim=1)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    return (bits.view(rows, -1, 8).to(torch.uint8) * weights).sum(2, dtype=torch.uint8)


def _any_bits(packed: Tensor) -> Tensor:
    """For each neuron (bit), whether any polygon has it set; packed is (bytes, polygons)."""
    return torch.stack([((packed >> k) & 1).any(1) for k in range(8)], dim=1).reshape(-1)
