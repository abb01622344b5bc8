"""Exact linear pieces of a network along a segment {start + tau (end - start) : tau in [0, 1]}."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet
from reluscope.regions.inputs import point_tensor, prepare_net
from reluscope.regions.polygons import DEFAULT_MAX_REGIONS
from reluscope.regions.walk import (
    DEFAULT_MEMORY_BUDGET,
    AffineValues,
    Growable,
    Indivisible,
    ShiftedValues,
    StoredValues,
    TableFull,
    TieValues,
    Values,
    check_memory_budget,
    walk,
)

DEFAULT_TOL = 1e-10


class LinePartition:
    """The pieces of a segment on which the network is affine.

    ``breakpoints`` are the parameters tau in [0, 1] of the piece ends, in increasing order
    (0 and 1 included); piece k is [breakpoints[k], breakpoints[k + 1]].
    """

    def __init__(
        self, net: PWLNet, start: Tensor, end: Tensor, breakpoints: Tensor, outputs: Tensor
    ):
        self.net = net
        self.start, self.end = start, end
        self.breakpoints = breakpoints
        #: Network output at every breakpoint, shape (num_pieces + 1, output_dim).
        self.outputs = outputs

    def __repr__(self) -> str:
        return f"LinePartition(num_pieces={self.num_pieces})"

    @property
    def num_pieces(self) -> int:
        return len(self.breakpoints) - 1

    @property
    def length(self) -> float:
        """Euclidean length of the segment in input units."""
        return float((self.end - self.start).norm())

    @property
    def midpoints(self) -> Tensor:
        """The parameter tau of the middle of every piece."""
        return 0.5 * (self.breakpoints[1:] + self.breakpoints[:-1])

    def to_input(self, tau: Tensor) -> Tensor:
        """Input-space points start + tau (end - start), shape (m, *input_shape)."""
        tau = torch.as_tensor(tau, dtype=self.start.dtype, device=self.start.device).reshape(-1)
        shape = (-1,) + (1,) * self.start.dim()
        return self.start.unsqueeze(0) + tau.reshape(shape) * (self.end - self.start).unsqueeze(0)

    def patterns(self) -> Tensor:
        """Activation pattern of every piece, bool (num_pieces, num_neurons), in site order."""
        return self.net.pattern_vector(self.to_input(self.midpoints))

    def affine_maps(self, chunk_size: int = 256) -> tuple[Tensor, Tensor]:
        """The affine map of every piece in input space: J (pieces, out, in), c (pieces, out)."""
        return self.net.local_affine(self.to_input(self.midpoints), chunk_size=chunk_size)

    def piece_of(self, tau: Tensor) -> Tensor:
        """Index of the piece containing each tau (the left one at a breakpoint)."""
        tau = torch.as_tensor(tau, dtype=self.breakpoints.dtype, device=self.breakpoints.device)
        inner = self.breakpoints[1:-1].contiguous()
        return torch.searchsorted(inner, tau.contiguous(), right=False)


class _IntervalSplitter:
    """Splits consecutive intervals of sorted points at the zero crossings of each neuron.

    A chunkable splitter (see :class:`~reluscope.regions.walk.ChunkableSplitter`): when the
    vertex table would outgrow the memory budget, the segment is cut into runs of consecutive
    intervals, walked one after the other; neighbouring runs share their end point, which no
    split moves or drops, so joining the runs gives the pieces of the unchunked walk.
    """

    def __init__(
        self, max_regions: int = DEFAULT_MAX_REGIONS, offset: int = 0, cells: int = 1
    ) -> None:
        self.max_regions = max_regions
        #: Pieces counted towards ``max_regions`` besides these (those of the other runs).
        self.offset = offset
        self._cells = cells
        self._before: Tensor | None = None

    @property
    def num_cells(self) -> int:
        return self.offset + self._cells

    def snapshot(self) -> int:
        return self._cells

    def restore(self, state: int) -> None:
        self._cells, self._before = state, None

    def groups(self, coords: Tensor, n: int) -> list[Tensor]:
        """About ``n`` runs of consecutive intervals between the sorted points ``coords``."""
        self._cells = len(coords) - 1
        cells = torch.arange(self._cells, device=coords.device)
        return [g for g in torch.tensor_split(cells, min(n, max(1, self._cells))) if len(g)]

    def child(self, cells: Tensor, offset: int) -> tuple[_IntervalSplitter, Tensor]:
        """The run of intervals ``cells`` (consecutive) and the points that bound them."""
        verts = torch.arange(int(cells[0]), int(cells[-1]) + 2, device=cells.device)
        return _IntervalSplitter(self.max_regions, offset, len(cells)), verts

    def adopt(self, children: list[_IntervalSplitter]) -> Tensor:
        """Join walked runs: every run's points, but the first, which the run before ends on.
        Returns the rows of the points in the runs' final tables laid end to end."""
        parts, start = [], 0
        for i, c in enumerate(children):
            parts.append(torch.arange(start + (i > 0), start + c._cells + 1))
            start += c._cells + 1
        self._cells = sum(c._cells for c in children)
        return torch.cat(parts)

    def begin_merge(self, table: Growable) -> None:
        self._before = table.view()[:, 0].clone()

    def merge(self, table: Growable, pattern) -> None:
        """Drop the points added since :meth:`begin_merge` where the pieces on both sides
        have the same ``pattern``."""
        before, self._before = self._before, None
        if before is None:
            raise RuntimeError("merge needs a begin_merge before it")
        rows = table.view()
        if len(rows) < 3:
            return
        mid = pattern(0.5 * (rows[1:] + rows[:-1]))
        same = (mid[1:] == mid[:-1]).reshape(len(rows) - 2, -1).all(dim=1)
        new = ~torch.isin(rows[1:-1, 0], before)
        keep = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
        keep[1:-1] = ~(same & new)
        table.data, table.n = rows[keep], int(keep.sum())
        self._cells = table.n - 1

    def split(self, table: Growable, site: Values, eps: Tensor) -> None:
        rows = table.view()
        z = site.columns()
        sign = (z > eps).to(torch.int8) - (z < -eps).to(torch.int8)
        i, j = (sign[:-1] * sign[1:] < 0).nonzero(as_tuple=True)
        if len(i) == 0:
            return
        if table.max_bytes is not None and (len(rows) + len(i)) * rows[0].nbytes > table.max_bytes:
            raise TableFull
        f_a, f_b = z[i, j], z[i + 1, j]
        t = f_a / (f_a - f_b)
        new = torch.lerp(rows[i], rows[i + 1], t.unsqueeze(1))
        site.mark_zero(new, j)
        if len(i) > 1:
            # Neurons of this site whose zero sets meet the segment at the same point give
            # crossings that differ only by rounding: keep one point, as the plane's splitter
            # does by applying neurons one after the other (a crossing on which another
            # neuron is already within its tolerance of zero is not a new point).
            order = torch.argsort(i.to(rows.dtype) + t, stable=True)
            i, j, t, new = i[order], j[order], t[order], new[order]
            prev = torch.arange(len(i) - 1, device=i.device)
            nxt = prev + 1
            z_new = _values_at(site, new)
            dup = (i[1:] == i[:-1]) & (
                (z_new[prev, j[1:]].abs() <= eps[j[1:]]) | (z_new[nxt, j[:-1]].abs() <= eps[j[:-1]])
            )
            if bool(dup.any()):
                keep_new = torch.cat([dup.new_ones(1), ~dup])
                i, t, new = i[keep_new], t[keep_new], new[keep_new]
        old_key = torch.arange(len(rows), dtype=rows.dtype, device=rows.device)
        key = torch.cat([old_key, i.to(rows.dtype) + t])
        both = torch.cat([rows, new])
        order = torch.argsort(key, stable=True)
        both, key = both[order], both[order][:, 0]
        keep = torch.ones(len(both), dtype=torch.bool, device=both.device)
        keep[1:] = key[1:] != key[:-1]
        table.data, table.n = both[keep], int(keep.sum())
        self._cells = table.n - 1
        if self.num_cells > self.max_regions:
            raise InputError(
                f"the segment has {self.num_cells} pieces, more than max_regions="
                f"{self.max_regions}: use a shorter segment or raise max_regions"
            )


def _values_at(site: Values, rows: Tensor) -> Tensor:
    """The site's split functions at full table rows (new points not in the table yet)."""
    return _rebase(site, Growable(rows)).columns()


def _rebase(site: Values, table: Growable) -> Values:
    """The same split functions reading another table of rows."""
    if isinstance(site, ShiftedValues):
        return ShiftedValues(_rebase_values(site.base, table), site.b)
    if isinstance(site, TieValues):
        return TieValues(_rebase_values(site.base, table), site.windows, site.j)
    return _rebase_values(site, table)


def _rebase_values(
    site: StoredValues | AffineValues, table: Growable
) -> StoredValues | AffineValues:
    """The same pre-activations reading another table of rows."""
    if isinstance(site, StoredValues):
        return StoredValues(table, site.zoff, site.n)
    return AffineValues(table, site.lin, site.const)


def line(
    model: nn.Module | PWLNet,
    start: Tensor | Sequence[float],
    end: Tensor | Sequence[float],
    *,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    tol: float = DEFAULT_TOL,
    max_regions: int = DEFAULT_MAX_REGIONS,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> LinePartition:
    """The exact pieces of the segment from ``start`` to ``end`` on which the network is affine.

    Breakpoints are where some site's pattern changes along the segment: a neuron crossing a
    breakpoint of its activation, or a max unit's leading candidate changing. More than
    ``max_regions`` pieces stop the walk with an InputError. The vertex tables (per point, the
    values later layers read) stay within ``memory_budget`` bytes: beyond it the segment is cut
    into runs of pieces walked one after the other and joined at the cuts, with the same pieces.
    ``tol`` is the relative tolerance under which a point counts as lying on a neuron's zero set.
    """
    a = point_tensor(start, "start")
    net = prepare_net(model, input_shape, dtype, a, "start")
    pts = []
    for name, p in (("start", start), ("end", end)):
        p = point_tensor(p, name).to(dtype=net.dtype, device=net.device)
        if p.numel() != net.input_dim:
            raise InputError(
                f"{name} has {p.numel()} values (shape {tuple(p.shape)}); expected the network's "
                f"input shape {net.input_shape}"
            )
        pts.append(p.reshape(net.input_shape))
    start_t, end_t = pts
    if torch.equal(start_t, end_t):
        raise InputError("start and end coincide: expected a segment of positive length")
    basis = (end_t - start_t).unsqueeze(0)
    coords, outputs = _walk_segment(
        net, start_t, basis, (0.0, 1.0), max_regions, tol, check_memory_budget(memory_budget)
    )
    return LinePartition(net, start_t, end_t, coords[:, 0].contiguous(), outputs)


#: The shortest part (in tau) that a segment is cut into to fit the memory budget.
_SHORTEST_PART = 2.0**-30


def _walk_segment(
    net: PWLNet,
    start: Tensor,
    basis: Tensor,
    span: tuple[float, float],
    max_regions: int,
    tol: float,
    memory_budget: int,
    done: int = 0,
) -> tuple[Tensor, Tensor]:
    """The piece ends (tau, as (m, 1)) in ``span`` and the outputs there, ``done`` pieces being
    counted elsewhere. When one interval's splits outgrow ``memory_budget`` the span is cut in
    two halves walked one after the other; the cut point stays a piece end only where the
    pattern differs on its two sides, so the pieces are those of the uncut walk."""
    lo, hi = span
    tau = torch.tensor([[lo], [hi]], dtype=net.dtype, device=net.device)
    splitter = _IntervalSplitter(max_regions, offset=done)
    try:
        return walk(net, tau, start, basis, splitter, tol, memory_budget=memory_budget)
    except Indivisible as exc:
        if not exc.cuttable or hi - lo < _SHORTEST_PART:
            raise
    mid = 0.5 * (lo + hi)
    left, left_out = _walk_segment(
        net, start, basis, (lo, mid), max_regions, tol, memory_budget, done
    )
    right, right_out = _walk_segment(
        net, start, basis, (mid, hi), max_regions, tol, memory_budget, done + len(left) - 1
    )
    coords, outputs = torch.cat([left, right[1:]]), torch.cat([left_out, right_out[1:]])
    cut = len(left) - 1
    sides = 0.5 * (coords[cut - 1 : cut + 1] + coords[cut : cut + 2])
    points = start.unsqueeze(0) + sides.reshape((2,) + (1,) * start.dim()) * basis
    pattern = net.pattern_vector(points)
    if torch.equal(pattern[0], pattern[1]):  # the same affine piece on both sides
        keep = torch.arange(len(coords), device=coords.device) != cut
        coords, outputs = coords[keep], outputs[keep]
    return coords, outputs
