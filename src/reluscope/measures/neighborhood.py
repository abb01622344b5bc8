"""Neighbourhood (cross-polytope) complexity of Humayun, Balestriero & Baraniuk (ICML 2024).

Around each point x, P = n_vertices // 2 orthonormal directions v_1..v_P (one fixed frame shared
by all points) give the 2P vertices x +- r v_p of a cross-polytope of radius r (an L1 ball of
radius r in the P-dimensional affine span), plus x itself with ``include_center``. A neuron
crosses the neighbourhood when the sign of its pre-activation (-1, 0 or +1) is not the same at
every vertex (for an activation with several breakpoints, the sign of the pre-activation minus
some breakpoint); a max unit crosses it when its leading candidate is not the same at every
vertex. The count is a number of neurons (per point); the result is its mean over the data.
With ``include_output`` the output neurons count too (as Humayun et al. do).

For the first site it is exact: a hyperplane w.y + b = 0 meets the closed cross-polytope, without
containing it, iff the signs at the vertices differ, and the count grows with r. For deeper sites
the signs at the vertices only approximate the crossings of the neighbourhood's image (a bent
boundary can pass between the vertices), and the count need not grow with r.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import net_for
from reluscope.measures.meter import Meter
from reluscope.measures.results import MeasureResult
from reluscope.nets.pwl import PWLNet
from reluscope.nets.sites import ActivationOp
from reluscope.validation import check_bool, check_int, check_number

NAME = "neighborhood"
#: The per-layer name of the output layer's neurons (with ``include_output``).
OUTPUT = "output"


def orthonormal_frame(
    input_dim: int, n_directions: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``n_directions`` orthonormal vectors of R^input_dim as the rows of a matrix.

    They are the Q factor of the QR decomposition of a standard Gaussian (input_dim,
    n_directions) matrix drawn on the CPU from ``seed`` in float64 (signs fixed so that R has a
    positive diagonal: a Haar-distributed frame), then cast to ``dtype``; the same seed gives
    the same frame on every device.
    """
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(input_dim, n_directions, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    return q.T.contiguous().to(dtype)


def cross_polytope(x: Tensor, frame: Tensor, radius: float, include_center: bool) -> Tensor:
    """The vertices x + r v_p, then x - r v_p, then x itself with ``include_center``, for each
    point: shape (batch, n_vertices, *x.shape[1:])."""
    b = x.shape[0]
    flat = x.reshape(b, 1, -1)
    step = radius * frame.unsqueeze(0)
    parts = [flat + step, flat - step] + ([flat] if include_center else [])
    return torch.cat(parts, dim=1).reshape((b, -1) + tuple(x.shape[1:]))


class NeighborhoodMeter(Meter):
    """Streaming neighbourhood complexity: ``update(batch)``, ``compute()``, ``reset()``,
    ``merge(other)``.

    See :func:`neighborhood_complexity` for the options; the others are those of
    :class:`~reluscope.measures.meter.Meter`. ``batch_size`` is the number of points whose
    vertices are forwarded together (default 64).
    """

    name = NAME

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        radius: float,
        n_vertices: int = 50,
        seed: int = 0,
        include_center: bool = False,
        include_output: bool = False,
        batch_size: int | None = 64,
        **options: Any,
    ) -> None:
        super().__init__(model, batch_size=batch_size, **options)
        self.radius = check_number("radius", radius, minimum=0, strict=True)
        self.include_center = check_bool("include_center", include_center)
        self.include_output = check_bool("include_output", include_output)
        self.n_directions = _check_vertices(n_vertices, include_center, self.net.input_dim)
        self.n_vertices = n_vertices
        self.seed = check_int("seed", seed, minimum=0)
        frame = orthonormal_frame(self.net.input_dim, self.n_directions, seed, self.net.dtype)
        self.frame = frame.to(self.net.device)
        self._sources = {s.name: self.net.node(s.name).inputs[0] for s in self.sites}
        self._sizes = {s.name: s.size for s in self.sites}
        if include_output:
            self._sources[OUTPUT] = self.net.output
            self._sizes[OUTPUT] = self.net.output_dim

    def options(self) -> dict[str, Any]:
        return (
            dict(
                radius=self.radius,
                n_vertices=self.n_vertices,
                n_directions=self.n_directions,
                seed=self.seed,
                include_center=self.include_center,
                include_output=self.include_output,
            )
            | super().options()
        )

    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        b = x.shape[0]
        vertices = cross_polytope(x, self.frame, self.radius, self.include_center)
        values = self.net.run(
            vertices.reshape((-1,) + self.net.input_shape), self._sources.values()
        )
        out = {}
        for site, src in self._sources.items():
            op = None if site == OUTPUT else self.net.node(site).op
            out[site] = _crossed_units(op, values[src], b)
        out[NAME] = torch.stack(list(out.values())).sum(dim=0)
        return out

    def compute(self) -> MeasureResult:
        """Mean count over the points so far, per site and in total, with standard errors;
        ``extra["fraction"]`` and ``layer_extra["fraction"]`` divide the counts by the number of
        neurons (in total and per site)."""
        n = self._require_points(NAME)
        per_layer = {name: self.stats.mean(name) for name in self._sizes}
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(NAME),
            stderr=self.stats.stderr(NAME),
            per_layer=per_layer,
            per_layer_stderr={name: self.stats.stderr(name) for name in self._sizes},
            params=self.options(),
            extra={"fraction": self.stats.mean(NAME) / sum(self._sizes.values())},
            layer_extra={"fraction": {k: per_layer[k] / size for k, size in self._sizes.items()}},
            num_points=n,
        )


def _crossed_units(op: Any, z: Tensor, points: int) -> Tensor:
    """Per point, the number of units whose boundary crosses the hull: an activation's neuron
    when the sign of ``z - b`` differs between vertices for some breakpoint b, a max unit when
    its leading candidate does, an output neuron (``op`` None) when the sign of ``z`` does."""
    if op is None or isinstance(op, ActivationOp):
        breakpoints = (0.0,) if op is None else op.breakpoints
        b = torch.tensor(breakpoints, dtype=z.dtype, device=z.device)
        signs = torch.sign(z.reshape(points, -1, z[0].numel(), 1) - b)
    else:
        units, window = op.windows(tuple(z.shape[1:])).shape
        signs = op.pattern(z).reshape(points, -1, units, window)
    changed = (signs != signs[:, :1]).any(dim=1).any(dim=2)
    return changed.sum(dim=1).to(torch.float64)


def _check_vertices(n_vertices: int, include_center: bool, input_dim: int) -> int:
    """The number of directions P for ``n_vertices`` vertices, or an InputError."""
    check_int("n_vertices", n_vertices)
    need = "an odd number >= 3 (2P directions' vertices plus the centre)"
    if not include_center:
        need = "an even number >= 2 (the 2P vertices x +- r v_p)"
    if n_vertices < 2 + include_center or (n_vertices - include_center) % 2:
        raise InputError(
            f"n_vertices={n_vertices} with include_center={include_center}: expected {need}"
        )
    p = n_vertices // 2
    if p > input_dim:
        raise InputError(
            f"n_vertices={n_vertices} needs {p} orthonormal directions, but the input has only "
            f"{input_dim} dimensions: expected n_vertices <= {2 * input_dim + include_center}"
        )
    return p


def neighborhood_complexity(
    model: nn.Module | PWLNet,
    data: Any,
    *,
    radius: float,
    n_vertices: int = 50,
    seed: int = 0,
    include_center: bool = False,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    include_output: bool = False,
    **options: Any,
) -> MeasureResult:
    """Mean number of neurons whose boundary crosses the cross-polytope of radius ``radius``
    around each point of ``data`` (Humayun et al.'s local complexity).

    ``n_vertices`` is the total number of vertices: 2P (even) without the centre, 2P + 1 (odd)
    with ``include_center``; the P <= input_dim directions come from ``seed``
    (:func:`orthonormal_frame`). ``radius`` is in input units (Euclidean distance from x to each
    vertex). ``data`` is a tensor (batch first) or an iterable of batches (a DataLoader of
    tensors, tuples or dicts). ``options`` are the keywords of
    :class:`~reluscope.measures.meter.Meter`: ``layers`` restricts the count to some sites
    (default all), ``input_key`` picks the inputs of each batch, points are processed
    ``batch_size`` at a time (default 64 here), ``input_shape`` (default: from the first Linear
    layer or a data tensor) traces a module. Device and dtype follow the model unless ``dtype``
    is given.

    Returns a MeasureResult named "neighborhood": ``value`` is the mean total count over points
    (a number of neurons) with its standard error, ``per_layer`` the mean count of each site,
    ``layer_extra["fraction"]`` each site's count over its width and ``extra["fraction"]`` the
    total count over the number of neurons.
    """
    net = net_for(model, data, input_shape, dtype)
    meter = NeighborhoodMeter(
        net,
        radius=radius,
        n_vertices=n_vertices,
        seed=seed,
        include_center=include_center,
        include_output=include_output,
        **options,
    )
    return meter.update_from(data).compute()
