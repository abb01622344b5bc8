"""Push points of a slice through a PWLNet, refining the slice at every neuron site.

The values of every node are kept at the vertices of the slice's cells. Inside a cell all
pre-activations of the next site are affine, so a vertex created on an edge gets its values by
linear interpolation, exactly. A ``Splitter`` refines the cells at each site.

Internal to reluscope.regions: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, TypeGuard

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.pwl import INPUT, Node, PWLNet
from reluscope.nets.sites import ActivationOp, MaxPoolOp
from reluscope.validation import check_int

#: Pre-activations below this fraction of the layer's largest on a slice are rounding noise
#: (scaled by the relative tolerance ``tol``).
_NOISE_FLOOR = 1e-3


class TableFull(Exception):
    """A vertex table would grow past its byte limit: the walk goes on in smaller chunks."""


class Indivisible(InputError):
    """One cell's walk does not fit in the memory budget and cells cannot be divided further.

    ``cuttable``: the cell's own vertices fit, so what overflowed were the vertices that the
    splits add; walking parts of the cell (a segment cut in two) one after the other may fit.
    """

    def __init__(self, message: str, cuttable: bool) -> None:
        super().__init__(message)
        self.cuttable = cuttable


class Growable:
    """A tensor that grows by rows with amortised doubling.

    With ``max_bytes`` it never holds more: growing copies into a larger tensor, so the old and
    the new one together must fit, else :class:`TableFull` is raised.
    """

    def __init__(self, data: Tensor, max_bytes: int | None = None) -> None:
        self.data = data
        self.n = data.shape[0]
        self.max_bytes = max_bytes

    def view(self) -> Tensor:
        return self.data[: self.n]

    def append(self, rows: Tensor) -> Tensor:
        """Append rows; returns their indices."""
        k = rows.shape[0]
        if self.n + k > self.data.shape[0]:
            cap = max(2 * self.data.shape[0], self.n + k, 16)
            if self.max_bytes is not None:
                row_bytes = self.data.element_size() * math.prod(self.data.shape[1:])
                cap = min(cap, self.max_bytes // row_bytes - self.data.shape[0])
                if cap < self.n + k:
                    raise TableFull
            grown = self.data.new_empty((cap,) + tuple(self.data.shape[1:]))
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : self.n + k] = rows
        idx = torch.arange(self.n, self.n + k, device=rows.device)
        self.n += k
        return idx

    def widen(self, width: int) -> None:
        """Pad every row to ``width`` columns by repeating its last entry."""
        extra = width - self.data.shape[1]
        if extra > 0:
            self.data = torch.cat([self.data, self.data[:, -1:].expand(-1, extra)], dim=1)


#: Rows of vertices processed at once between sites: bounds the temporaries (elements).
_CHUNK_ELEMENTS = 1 << 21

#: The default memory budget of a partition's vertex table, in bytes.
DEFAULT_MEMORY_BUDGET = 4 << 30


def check_memory_budget(memory_budget: int) -> int:
    """``memory_budget`` (bytes) as an int >= 1 MiB, or an InputError."""
    return check_int("memory_budget (bytes)", memory_budget, minimum=1 << 20)


class StoredValues:
    """The site's pre-activations, stored in columns zoff..zoff+n of the vertex table."""

    def __init__(self, table: Growable, zoff: int, n: int) -> None:
        self.table, self.zoff, self.n = table, zoff, n

    def columns(self, cols: Tensor | None = None, rows: slice = slice(None)) -> Tensor:
        """Values of neurons ``cols`` (all when None) at the vertices ``rows``."""
        z = self.table.view()[rows, self.zoff : self.zoff + self.n]
        return z if cols is None else z[:, cols]

    def column(self, idx: Tensor, j: int) -> Tensor:
        """Values of neuron j at the vertex rows ``idx`` (any shape)."""
        return self.table.data[idx, self.zoff + j]

    def mark_zero(self, rows: Tensor, j: int | Tensor) -> None:
        """Set neuron j (one per row when a tensor) to exactly 0 in new rows on its zero set."""
        if isinstance(j, Tensor):
            rows[torch.arange(len(rows), device=rows.device), self.zoff + j] = 0
        else:
            rows[:, self.zoff + j] = 0

    def at(self, rows: Tensor) -> Tensor:
        """Values of every neuron at full table rows ``rows`` (any points of a cell)."""
        return rows[:, self.zoff : self.zoff + self.n]


class AffineValues:
    """The site's pre-activations as an affine function of the slice coordinates: c @ lin + const.

    Used for the first site, whose pre-activations are affine on the whole slice: only the
    coordinates need to be stored per vertex.
    """

    def __init__(self, table: Growable, lin: Tensor, const: Tensor) -> None:
        self.table, self.lin, self.const = table, lin, const
        self.k, self.n = lin.shape

    def columns(self, cols: Tensor | None = None, rows: slice = slice(None)) -> Tensor:
        coords = self.table.view()[rows, : self.k]
        if cols is None:
            return torch.addmm(self.const, coords, self.lin)
        return torch.addmm(self.const[cols], coords, self.lin[:, cols])

    def column(self, idx: Tensor, j: int) -> Tensor:
        return self.table.data[idx, : self.k] @ self.lin[:, j] + self.const[j]

    def mark_zero(self, rows: Tensor, j: int | Tensor) -> None:
        pass

    def at(self, rows: Tensor) -> Tensor:
        return torch.addmm(self.const, rows[:, : self.k], self.lin)


class ShiftedValues:
    """A site's values minus a breakpoint b: the zero sets are where neurons cross b."""

    def __init__(self, base: StoredValues | AffineValues, b: float) -> None:
        self.base, self.b = base, b
        self.table, self.n = base.table, base.n

    def columns(self, cols: Tensor | None = None, rows: slice = slice(None)) -> Tensor:
        return self.base.columns(cols, rows) - self.b

    def column(self, idx: Tensor, j: int) -> Tensor:
        return self.base.column(idx, j) - self.b

    def mark_zero(self, rows: Tensor, j: int | Tensor) -> None:
        if isinstance(self.base, StoredValues):
            cols = self.base.zoff + j
            if isinstance(j, Tensor):
                rows[torch.arange(len(rows), device=rows.device), cols] = self.b
            else:
                rows[:, cols] = self.b


class TieValues:
    """Step j of the ties of a max unit: f_m = c_{m,j} - max_{i<j} c_{m,i} for every unit m.

    Applied for j = 1 .. K-1 in turn, the zero sets of these functions split every cell into
    pieces on which the leading candidate of every unit is constant; adjacent pieces may still
    share a leader (a tie between non-leading candidates), and are merged afterwards.
    """

    def __init__(self, base: StoredValues | AffineValues, windows: Tensor, j: int) -> None:
        self.base, self.windows, self.j = base, windows, j
        self.table, self.n = base.table, windows.shape[0]

    def _ties(self, z: Tensor, units: Tensor | None) -> Tensor:
        w = self.windows if units is None else self.windows[units]
        pad = torch.full((len(z), 1), -math.inf, dtype=z.dtype, device=z.device)
        cand = torch.cat([z, pad], dim=1)[:, w[:, : self.j + 1]]
        return cand[..., self.j] - cand[..., : self.j].amax(dim=-1)

    def columns(self, cols: Tensor | None = None, rows: slice = slice(None)) -> Tensor:
        return self._ties(self.base.columns(None, rows), cols)

    def column(self, idx: Tensor, j: int) -> Tensor:
        w = self.windows[j, : self.j + 1]
        vals = torch.stack(
            [
                self.base.column(idx, int(c))
                if c >= 0
                else torch.full(idx.shape, -math.inf, dtype=self.table.data.dtype)
                for c in w.tolist()
            ],
            dim=-1,
        )
        return vals[..., -1] - vals[..., :-1].amax(dim=-1)

    def mark_zero(self, rows: Tensor, j: int | Tensor) -> None:
        pass


def leaders(values: Tensor, windows: Tensor, eps: Tensor) -> Tensor:
    """The leading candidate of every unit at points with site values ``values`` (m, N): the
    first candidate within ``eps`` (per unit) of the maximum; (m, units)."""
    pad = torch.full((len(values), 1), -math.inf, dtype=values.dtype, device=values.device)
    cand = torch.cat([values, pad], dim=1)[:, windows]
    top = cand.amax(dim=2, keepdim=True)
    return (cand >= top - eps[:, None]).to(torch.int8).argmax(dim=2)


Values = StoredValues | AffineValues | ShiftedValues | TieValues


class Splitter(Protocol):
    def split(self, table: Growable, site: Values, eps: Tensor) -> None:
        """Refine the cells by the zero sets of the site's neurons."""

    def begin_merge(self, table: Growable) -> None:
        """Remember the cells before a max unit's site: merging stays within each."""

    def merge(self, table: Growable, pattern: Callable[[Tensor], Tensor]) -> None:
        """Merge the adjacent pieces of one earlier cell on which ``pattern`` (of full table
        rows at points inside them) is equal."""


def split_site(
    splitter: Splitter,
    table: Growable,
    values: StoredValues | AffineValues,
    node: Node,
    shape: tuple[int, ...],
    tol: float,
) -> None:
    """Refine the cells at one site: at every breakpoint of an activation, at every tie
    between leading candidates of a max unit."""
    op = node.op
    if isinstance(op, ActivationOp):
        for b in op.breakpoints:
            shifted = ShiftedValues(values, b)
            splitter.split(table, shifted, _tolerances(shifted, tol))
        return
    if not isinstance(op, MaxPoolOp):
        raise InputError(f"no exact regions through a site of kind {op.kind!r}")
    windows = op.windows(shape).to(table.data.device)
    neuron_eps = torch.cat([_tolerances(values, tol), values.table.data.new_zeros(1)])
    eps = neuron_eps[windows].amax(dim=1)
    splitter.begin_merge(table)
    for j in range(1, windows.shape[1]):
        splitter.split(table, TieValues(values, windows, j), eps)
    splitter.merge(table, lambda rows: leaders(values.at(rows), windows, eps))


class ChunkableSplitter(Splitter, Protocol):
    """A splitter whose cells can be divided into groups walked one after the other."""

    def snapshot(self) -> object:
        """The cells as they are now, for :meth:`restore`."""

    def restore(self, state: object) -> None:
        """Go back to the cells of a :meth:`snapshot`."""

    def groups(self, coords: Tensor, n: int) -> list[Tensor]:
        """The cells in about ``n`` groups of neighbouring cells (``coords``: the vertices'
        slice coordinates); a list of cell index tensors, at least two when possible."""

    def child(self, cells: Tensor, offset: int) -> tuple[ChunkableSplitter, Tensor]:
        """A splitter holding only ``cells`` (renumbered), counting ``offset`` more cells
        towards its limits, and the sorted vertices these cells use."""

    def adopt(self, children: list[ChunkableSplitter]) -> Tensor:
        """Take the cells of walked children, merging the vertices that several made; returns
        for every vertex its first row in the children's final vertex tables, end to end."""

    @property
    def num_cells(self) -> int:
        """The number of cells, and more cells counted elsewhere (the ``offset``)."""

    #: The cells counted elsewhere, towards the limits (see :meth:`child`).
    offset: int


def _is_chunkable(splitter: Splitter) -> TypeGuard[ChunkableSplitter]:
    """Whether ``splitter``'s cells can be walked in groups."""
    return hasattr(splitter, "groups")


#: A group's vertex table gets this many times the room its rows need at first: the splits add
#: vertices.
_HEADROOM = 2


def walk(
    net: PWLNet,
    coords: Tensor,
    origin: Tensor,
    basis: Tensor,
    splitter: Splitter,
    tol: float,
    affine_first_site: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[Tensor, Tensor]:
    """Refine the slice {origin + coords @ basis} through every site of ``net``.

    ``coords`` (m, k) are the slice coordinates of the initial vertices, ``basis`` (k,
    *input_shape) the slice's directions. With ``affine_first_site`` the first site's
    pre-activations are evaluated from the coordinates instead of being stored per vertex.
    Returns the coordinates of all final vertices and the network output at each of them.

    Between two sites the nodes are evaluated on chunks of vertices and written straight into
    the next site's vertex table, so no full-size temporaries are made. The table holds, per
    vertex, the values that later nodes read, and must stay within ``memory_budget`` bytes
    (together with the tables it is made from). When it would not, a ``ChunkableSplitter``'s
    cells are divided into groups of neighbouring cells, each walked through the remaining
    sites on its own, and the groups' vertices are merged at the end (a vertex on the border
    of two groups is computed by both, from the same values, in the same order: the same
    coordinates). Only what cannot be divided (one cell too wide, or another splitter) stops
    with an InputError that says how much it needs.
    """
    k = coords.shape[1]
    nodes = net.nodes
    sites = [i for i, n in enumerate(nodes) if n.is_site]
    table = Growable(coords.clone())
    affine = {INPUT: (basis, origin.unsqueeze(0))}
    lo = 0
    if affine_first_site and sites:
        lo = sites[0]
        affine = _affine_prefix(net, lo, affine)
        src = nodes[lo].inputs[0]
        lin, const = affine[src]
        site: StoredValues | AffineValues = AffineValues(
            table, lin.reshape(k, -1), const.reshape(-1)
        )
        split_site(splitter, table, site, nodes[lo], net.shape_of(src), tol)
    his = [i for i in sites if i > lo or not affine_first_site] + [len(nodes)]
    return _Walk(net, tol, k, memory_budget).run(his, lo, table, {}, affine, splitter)


class _Walk:
    """The walk from one site to the next, chunked where a vertex table would not fit."""

    def __init__(self, net: PWLNet, tol: float, k: int, memory_budget: int) -> None:
        self.net, self.tol, self.k, self.budget = net, tol, k, memory_budget

    def run(
        self,
        his: list[int],
        lo: int,
        table: Growable,
        layout: dict[str, tuple[int, tuple[int, ...]]],
        affine: dict[str, tuple[Tensor, Tensor]],
        splitter: Splitter,
        rows: Tensor | None = None,
        held: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Walk from node ``lo`` through the sites ``his`` (and the output); the vertices are
        ``table``'s rows ``rows`` (all when None), ``held`` bytes of tables are kept alive
        by the callers. Returns the final vertices' coordinates and outputs."""
        net, nodes = self.net, self.net.nodes
        chunkable = splitter if _is_chunkable(splitter) else None
        for n, hi in enumerate(his):
            keep = _live_after(net, hi)
            new_layout, width = _layout(net, keep, self.k)
            count = table.n if rows is None else len(rows)
            need = count * width * table.data.element_size()
            # Our own table may use half of what is left, so that, divided into groups, its
            # cells leave the groups the other half (a table given with ``rows`` is the
            # caller's, counted in ``held``).
            limit = None if chunkable is None else (self.budget - held) // 2
            where = nodes[hi].path if hi < len(nodes) else "the output"
            if chunkable is None:
                if need > self.budget:
                    raise InputError(_too_big(count, width, need, self.budget, where))
            elif limit is not None and _HEADROOM * need > limit:
                return self.chunked(his[n:], lo, table, layout, affine, chunkable, rows, held, need)
            state = chunkable.snapshot() if chunkable is not None else None
            try:
                new = _advance(net, lo, hi, table, layout, new_layout, affine, self.k, rows, limit)
                if hi < len(nodes):
                    src = nodes[hi].inputs[0]
                    off, shape = new_layout[src]
                    site = StoredValues(new, off, math.prod(shape))
                    split_site(splitter, new, site, nodes[hi], shape, self.tol)
            except TableFull:
                if chunkable is None:
                    raise
                chunkable.restore(state)
                return self.chunked(his[n:], lo, table, layout, affine, chunkable, rows, held, need)
            table, layout, affine, rows, lo = new, new_layout, {}, None, hi
        off, shape = layout[net.output]
        full = table.view()
        return full[:, : self.k], full[:, off : off + math.prod(shape)]

    def chunked(
        self,
        his: list[int],
        lo: int,
        table: Growable,
        layout: dict[str, tuple[int, tuple[int, ...]]],
        affine: dict[str, tuple[Tensor, Tensor]],
        splitter: ChunkableSplitter,
        rows: Tensor | None,
        held: int,
        need: int,
    ) -> tuple[Tensor, Tensor]:
        """Walk the cells in groups; the splitter then holds the cells of all groups."""
        coords = (table.view() if rows is None else table.data[rows])[:, : self.k]
        mine = 0 if rows is not None else table.data.nbytes
        limit = (self.budget - held - mine) // 2
        wanted = math.ceil(2 * _HEADROOM * need / max(1, limit))
        groups = splitter.groups(coords, max(2, wanted))
        if len(groups) < 2:
            hi = his[0]
            where = self.net.nodes[hi].path if hi < len(self.net.nodes) else "the output"
            width = need // max(1, len(coords) * table.data.element_size())
            raise Indivisible(
                "one region cannot be divided further: "
                + _too_big(len(coords), width, _HEADROOM * need, max(0, limit), where),
                cuttable=_HEADROOM * need <= limit,
            )
        sizes = [len(g) for g in groups]
        done = splitter.num_cells - sum(sizes)
        children, outs = [], []
        for i, cells in enumerate(groups):
            child, verts = splitter.child(cells, done + sum(sizes[i + 1 :]))
            sub_rows = verts if rows is None else rows[verts]
            outs.append(self.run(his, lo, table, layout, affine, child, sub_rows, held + mine))
            done += child.num_cells - child.offset
            children.append(child)
        first = splitter.adopt(children)
        coords = torch.cat([c for c, _ in outs])[first]
        return coords, torch.cat([o for _, o in outs])[first]


def _too_big(count: int, width: int, need: int, budget: int, where: str) -> str:
    return (
        f"{count} vertices before '{where}', storing {width} values each, need "
        f"{need / 2**30:.3f} GiB, more than memory_budget allows ({budget / 2**30:.3f} GiB "
        "left): use a smaller extent, a smaller network or input, or raise memory_budget"
    )


def _affine_prefix(net: PWLNet, stop: int, affine: dict) -> dict[str, tuple[Tensor, Tensor]]:
    """(linear part, constant) of every node before node ``stop`` (all affine in coordinates)."""

    def step(node: Node, ins: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        return node.op.linear(*(t[0] for t in ins)), node.op.forward(*(t[1] for t in ins))

    keep = [INPUT] + [n.name for n in net.nodes[:stop]]
    return net.interpret(affine, step, stop=stop, keep=keep)


def _live_after(net: PWLNet, hi: int) -> list[str]:
    """Names whose values the vertex table must hold when node ``hi`` is reached."""
    if hi == len(net.nodes):
        return [net.output]
    src = net.nodes[hi].inputs[0]
    return [src] + [a for a in net.live_after(hi) if a != src]


def _layout(
    net: PWLNet, keep: list[str], k: int
) -> tuple[dict[str, tuple[int, tuple[int, ...]]], int]:
    """The columns of every kept value in a table row after the k coordinates, and the width."""
    layout, width = {}, k
    for name in keep:
        shape = _shape(net, name)
        layout[name] = (width, shape)
        width += math.prod(shape)
    return layout, width


def _advance(
    net: PWLNet,
    lo: int,
    hi: int,
    table: Growable,
    layout: dict[str, tuple[int, tuple[int, ...]]],
    new_layout: dict[str, tuple[int, tuple[int, ...]]],
    affine: dict[str, tuple[Tensor, Tensor]],
    k: int,
    rows: Tensor | None = None,
    max_bytes: int | None = None,
) -> Growable:
    """Evaluate nodes lo..hi-1 at the vertices ``rows`` of ``table`` (all when None); returns
    the new table laid out as ``new_layout``, within ``max_bytes`` when given."""
    nodes = net.nodes
    count = table.n if rows is None else len(rows)
    width = k + sum(math.prod(shape) for _, shape in new_layout.values())
    row_bytes = width * table.data.element_size()
    # Room for the vertices the next split will add.
    capacity = 4 * count + 1024
    if max_bytes is not None:
        capacity = max(count, min(capacity, max_bytes // row_bytes))
    out = table.data.new_empty((capacity, width))
    widest = max([width] + [math.prod(n.shape) for n in nodes[lo:hi]])
    step = max(1, _CHUNK_ELEMENTS // widest)
    for r0 in range(0, count, step):
        r = slice(r0, min(count, r0 + step))
        old = table.data[r] if rows is None else table.data[rows[r]]
        coords = old[:, :k]
        vals = {
            a: old[:, off : off + math.prod(shape)].reshape((-1,) + shape)
            for a, (off, shape) in layout.items()
        }
        for a, (lin, const) in affine.items():
            if net.last_use(a) >= lo or a in new_layout:
                vals[a] = _evaluate(coords, lin, const)
        vals = net.interpret(vals, _forward, start=lo, stop=hi, keep=list(new_layout))
        out[r, :k] = coords
        for name, (off, shape) in new_layout.items():
            out[r, off : off + math.prod(shape)] = vals[name].reshape(len(coords), -1)
    grown = Growable(out, max_bytes)
    grown.n = count
    return grown


def _forward(node: Node, ins: list[Tensor]) -> Tensor:
    return node.op.forward(*ins)


def _evaluate(coords: Tensor, lin: Tensor, const: Tensor) -> Tensor:
    """The node values coords @ lin + const, shaped (m, *node shape)."""
    shape = tuple(const.shape[1:])
    flat = torch.addmm(const.reshape(1, -1), coords, lin.reshape(lin.shape[0], -1))
    return flat.reshape((-1,) + shape)


def _tolerances(site: Values, tol: float) -> Tensor:
    """Per neuron, the magnitude under which a pre-activation value counts as zero.

    ``tol`` times the neuron's largest magnitude on the slice, but at least ``tol`` times
    _NOISE_FLOOR times the largest of the layer: a neuron that vanishes on the whole slice (a
    segment or plane inside its zero set) only shows rounding noise there, which must not split.
    """
    rows = site.table.n
    amax = None
    step = max(1, _CHUNK_ELEMENTS // max(1, site.n))
    for r0 in range(0, rows, step):
        z = site.columns(rows=slice(r0, r0 + step))
        part = torch.maximum(z.amax(0), -z.amin(0))
        amax = part if amax is None else torch.maximum(amax, part)
    if amax is None:
        return site.table.data.new_zeros(site.n)
    return tol * torch.maximum(amax, _NOISE_FLOOR * amax.max())


def _shape(net: PWLNet, name: str) -> tuple[int, ...]:
    return net.input_shape if name == INPUT else net.node(name).shape
