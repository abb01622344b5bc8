"""Push points of a slice through a PWLNet, refining the slice at every neuron site.

The values of every node are kept at the vertices of the slice's cells. Inside a cell all
pre-activations of the next site are affine, so a vertex created on an edge gets its values by
linear interpolation, exactly. A ``Splitter`` refines the cells at each site.

Internal to reluscope.regions: not part of the public API.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from reluscope.nets.pwl import INPUT, PWLNet

#: Pre-activations below this fraction of the layer's largest on a slice are rounding noise
#: (scaled by the relative tolerance ``tol``).
_NOISE_FLOOR = 1e-3


class Growable:
    """A 2-d tensor that grows by rows with amortised doubling."""

    def __init__(self, data: Tensor) -> None:
        self.data = data
        self.n = data.shape[0]

    def view(self) -> Tensor:
        return self.data[: self.n]

    def append(self, rows: Tensor) -> Tensor:
        """Append rows; returns their indices."""
        k = rows.shape[0]
        if self.n + k > self.data.shape[0]:
            cap = max(2 * self.data.shape[0], self.n + k, 16)
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

    def mark_zero(self, rows: Tensor, j: int) -> None:
        """Set neuron j to exactly 0 in new rows that lie on its zero set."""
        rows[:, self.zoff + j] = 0


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

    def mark_zero(self, rows: Tensor, j: int) -> None:
        pass


class Splitter(Protocol):
    def split(self, table: Growable, site: StoredValues | AffineValues, eps: Tensor) -> None:
        """Refine the cells by the zero sets of the site's neurons."""


def walk(
    net: PWLNet,
    coords: Tensor,
    origin: Tensor,
    basis: Tensor,
    splitter: Splitter,
    tol: float,
    affine_first_site: bool = False,
) -> tuple[Tensor, Tensor]:
    """Refine the slice {origin + coords @ basis} through every site of ``net``.

    ``coords`` (m, k) are the slice coordinates of the initial vertices, ``basis`` (k,
    *input_shape) the slice's directions. With ``affine_first_site`` the first site's
    pre-activations are evaluated from the coordinates instead of being stored per vertex.
    Returns the coordinates of all final vertices and the network output at each of them.

    Between two sites the nodes are evaluated on chunks of vertices and written straight into
    the next site's vertex table, so no full-size temporaries are made.
    """
    k = coords.shape[1]
    nodes = net.nodes
    sites = [i for i, n in enumerate(nodes) if n.is_site]
    table = Growable(coords.clone())
    affine = {INPUT: (basis, origin.unsqueeze(0))}
    layout: dict[str, tuple[int, tuple[int, ...]]] = {}
    lo = 0
    if affine_first_site and sites:
        lo = sites[0]
        affine = _affine_prefix(net, lo, affine)
        lin, const = affine[nodes[lo].inputs[0]]
        first = AffineValues(table, lin.reshape(k, -1), const.reshape(-1))
        splitter.split(table, first, _tolerances(first, tol))
    for hi in [i for i in sites if i > lo or not affine_first_site] + [len(nodes)]:
        keep = _live_after(net, hi)
        table, layout = _advance(net, lo, hi, table, layout, affine, keep, k)
        affine = {}
        if hi < len(nodes):
            src = nodes[hi].inputs[0]
            off, shape = layout[src]
            site = StoredValues(table, off, math.prod(shape))
            splitter.split(table, site, _tolerances(site, tol))
        lo = hi
    off, shape = layout[net.output]
    full = table.view()
    return full[:, :k], full[:, off : off + math.prod(shape)]


def _affine_prefix(net: PWLNet, stop: int, affine: dict) -> dict[str, tuple[Tensor, Tensor]]:
    """(linear part, constant) of every node before node ``stop`` (all affine in coordinates)."""
    affine = dict(affine)
    for node in net.nodes[:stop]:
        ins = [affine[a] for a in node.inputs]
        affine[node.name] = (
            node.op.linear(*(t[0] for t in ins)),
            node.op.forward(*(t[1] for t in ins)),
        )
    return affine


def _live_after(net: PWLNet, hi: int) -> list[str]:
    """Names whose values the vertex table must hold when node ``hi`` is reached."""
    if hi == len(net.nodes):
        return [net.output]
    produced = [INPUT] + [n.name for n in net.nodes[:hi]]
    src = net.nodes[hi].inputs[0]
    live = [a for a in produced if a != src and (net._last_use.get(a, -1) >= hi or a == net.output)]
    return [src] + live


def _advance(
    net: PWLNet,
    lo: int,
    hi: int,
    table: Growable,
    layout: dict[str, tuple[int, tuple[int, ...]]],
    affine: dict[str, tuple[Tensor, Tensor]],
    keep: list[str],
    k: int,
) -> tuple[Growable, dict[str, tuple[int, tuple[int, ...]]]]:
    """Evaluate nodes lo..hi-1 at every vertex; returns the new table holding ``keep``."""
    nodes, last_use = net.nodes, net._last_use
    new_layout, width = {}, k
    for name in keep:
        shape = _shape(net, name)
        new_layout[name] = (width, shape)
        width += math.prod(shape)
    old = table.view()
    rows = len(old)
    # Room for the vertices the next split will add: untouched capacity costs no memory.
    out = old.new_empty((4 * rows + 1024, width))
    widest = max([width] + [math.prod(n.shape) for n in nodes[lo:hi]])
    step = max(1, _CHUNK_ELEMENTS // widest)
    for r0 in range(0, rows, step):
        r = slice(r0, min(rows, r0 + step))
        coords = old[r, :k]
        vals = {
            a: old[r, off : off + math.prod(shape)].reshape((-1,) + shape)
            for a, (off, shape) in layout.items()
        }
        for a, (lin, const) in affine.items():
            if last_use.get(a, -1) >= lo or a in keep:
                vals[a] = _evaluate(coords, lin, const)
        for i in range(lo, hi):
            node = nodes[i]
            vals[node.name] = node.op.forward(*(vals[a] for a in node.inputs))
            for a in node.inputs:
                if last_use.get(a) == i and a not in keep:
                    vals.pop(a, None)
        out[r, :k] = coords
        for name, (off, shape) in new_layout.items():
            out[r, off : off + math.prod(shape)] = vals[name].reshape(len(coords), -1)
    grown = Growable(out)
    grown.n = rows
    return grown, new_layout


def _evaluate(coords: Tensor, lin: Tensor, const: Tensor) -> Tensor:
    """The node values coords @ lin + const, shaped (m, *node shape)."""
    shape = tuple(const.shape[1:])
    flat = torch.addmm(const.reshape(1, -1), coords, lin.reshape(lin.shape[0], -1))
    return flat.reshape((-1,) + shape)


def _tolerances(site: StoredValues | AffineValues, tol: float) -> Tensor:
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
