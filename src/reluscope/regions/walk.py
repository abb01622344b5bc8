"""Push points of a slice through a PWLNet, refining the slice at every neuron site.

The values of every node are kept at the vertices of the slice's cells. Inside a cell all
pre-activations of the next site are affine, so a vertex created on an edge gets its values by
linear interpolation, exactly. A ``Splitter`` refines the cells at each site.
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


class Splitter(Protocol):
    def split(self, table: Growable, zoff: int, n: int, eps: Tensor) -> None:
        """Refine the cells by the zero sets of columns zoff..zoff+n of the vertex table."""


def walk(
    net: PWLNet, coords: Tensor, to_input, splitter: Splitter, tol: float
) -> tuple[Tensor, Tensor]:
    """Refine the slice through every site of ``net``.

    ``coords`` are the slice coordinates of the initial vertices, ``to_input`` maps coordinates
    to network inputs. Returns the coordinates of all final vertices and the network output at
    each of them.
    """
    k = coords.shape[1]
    values: dict[str, Tensor] = {INPUT: to_input(coords)}
    last_use = net._last_use
    for i, node in enumerate(net.nodes):
        if node.is_site:
            src = node.inputs[0]
            live = [a for a in values if a != src and (last_use.get(a, -1) > i or a == net.output)]
            blocks = [coords, values[src].reshape(len(coords), -1)]
            blocks += [values[a].reshape(len(coords), -1) for a in live]
            table = Growable(torch.cat(blocks, dim=1))
            n = blocks[1].shape[1]
            z = blocks[1]
            eps = _tolerances(z, tol)
            splitter.split(table, k, n, eps)
            full = table.view()
            coords = full[:, :k]
            values = {src: full[:, k : k + n].reshape((-1,) + _shape(net, src))}
            off = k + n
            for a in live:
                shape = _shape(net, a)
                width = math.prod(shape)
                values[a] = full[:, off : off + width].reshape((-1,) + shape)
                off += width
        values[node.name] = node.op.forward(*(values[a] for a in node.inputs))
        for a in node.inputs:
            if last_use.get(a) == i and a != net.output:
                values.pop(a, None)
    out = values[net.output]
    return coords, out.reshape(len(coords), -1)


def _tolerances(z: Tensor, tol: float) -> Tensor:
    """Per neuron, the magnitude under which a pre-activation value counts as zero.

    ``tol`` times the neuron's largest magnitude on the slice, but at least ``tol`` times
    _NOISE_FLOOR times the largest of the layer: a neuron that vanishes on the whole slice (a
    segment or plane inside its zero set) only shows rounding noise there, which must not split.
    """
    if len(z) == 0:
        return z.new_zeros(z.shape[1])
    amax = z.abs().amax(0)
    return tol * torch.maximum(amax, _NOISE_FLOOR * amax.max())


def _shape(net: PWLNet, name: str) -> tuple[int, ...]:
    return net.input_shape if name == INPUT else net.node(name).shape
