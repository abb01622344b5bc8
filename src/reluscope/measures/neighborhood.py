"""Neighbourhood (cross-polytope) complexity of Humayun, Balestriero & Baraniuk (ICML 2024).

Around each point x, P = n_vertices // 2 orthonormal directions v_1..v_P (one fixed frame shared
by all points) give the 2P vertices x +- r v_p of a cross-polytope of radius r (an L1 ball of
radius r in the P-dimensional affine span), plus x itself with ``include_center``. A neuron
crosses the neighbourhood when the sign of its pre-activation (-1, 0 or +1) is not the same at
every vertex (for an activation with several breakpoints, the sign of the pre-activation minus
some breakpoint); a max unit crosses it when its leading candidate is not the same at every
vertex. The count is a number of neurons (per point); the result is its mean over the data.

For the first site it is exact: a hyperplane w.y + b = 0 meets the closed cross-polytope, without
containing it, iff the signs at the vertices differ, and the count grows with r. For deeper sites
the signs at the vertices only approximate the crossings of the neighbourhood's image (a bent
boundary can pass between the vertices), and the count need not grow with r.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.meter import Meter
from reluscope.measures.options import check_nonnegative
from reluscope.measures.results import MeasureResult
from reluscope.nets.pwl import PWLNet
from reluscope.nets.sites import ActivationOp

NAME = "neighborhood"


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
    """Streaming neighbourhood complexity: ``update(batch)`` then ``compute()``.

    See :func:`neighborhood_complexity` for the arguments; ``options`` are the other keywords of
    :class:`~reluscope.measures.meter.Meter`. ``batch_size`` is the number of points whose
    vertices are forwarded together (default 64).
    """

    def __init__(
        self,
        model: nn.Module | PWLNet,
        radius: float,
        n_vertices: int = 50,
        seed: int = 0,
        include_center: bool = False,
        *,
        batch_size: int | None = 64,
        **options,
    ) -> None:
        super().__init__(model, batch_size=batch_size, **options)
        self.radius = check_nonnegative("radius", radius, positive=True)
        if not isinstance(include_center, bool):
            raise InputError(f"include_center must be True or False, got {include_center!r}")
        self.include_center = include_center
        self.n_directions = _check_vertices(n_vertices, include_center, self.net.input_dim)
        self.n_vertices = n_vertices
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = seed
        frame = orthonormal_frame(self.net.input_dim, self.n_directions, seed, self.net.dtype)
        self.frame = frame.to(self.net.device)
        self._sources = {s.name: self.net.node(s.name).inputs[0] for s in self.sites}

    def _accumulate(self, x: Tensor) -> None:
        b = x.shape[0]
        vertices = cross_polytope(x, self.frame, self.radius, self.include_center)
        values = self.net.run(
            vertices.reshape((-1,) + self.net.input_shape), self._sources.values()
        )
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        for site, src in self._sources.items():
            crossed = _crossed_units(self.net.node(site).op, values[src], b)
            self.stats.add(site, crossed)
            total += crossed
        self.stats.add(NAME, total)

    def compute(self) -> MeasureResult:
        """Mean count over the points so far, per site and in total, with standard errors."""
        n = self._require_points(NAME)
        per_layer = {s.name: self.stats.mean(s.name) for s in self.sites}
        extra = {f"fraction.{s.name}": per_layer[s.name] / s.size for s in self.sites}
        extra["fraction"] = self.stats.mean(NAME) / sum(s.size for s in self.sites)
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(NAME),
            stderr=self.stats.stderr(NAME),
            per_layer=per_layer,
            per_layer_stderr={s.name: self.stats.stderr(s.name) for s in self.sites},
            params=dict(
                radius=self.radius,
                n_vertices=self.n_vertices,
                n_directions=self.n_directions,
                seed=self.seed,
                include_center=self.include_center,
                layers=[s.name for s in self.sites],
                dtype=str(self.net.dtype),
            ),
            extra=extra,
            num_points=n,
        )


def _crossed_units(op, z: Tensor, points: int) -> Tensor:
    """Per point, the number of units whose boundary crosses the hull: an activation's neuron
    when the sign of ``z - b`` differs between vertices for some breakpoint b, a max unit when
    its leading candidate does."""
    if isinstance(op, ActivationOp):
        b = torch.tensor(op.breakpoints, dtype=z.dtype, device=z.device)
        signs = torch.sign(z.reshape(points, -1, z[0].numel(), 1) - b)
    else:
        units, window = op.windows(tuple(z.shape[1:])).shape
        signs = op.pattern(z).reshape(points, -1, units, window)
    changed = (signs != signs[:, :1]).any(dim=1).any(dim=2)
    return changed.sum(dim=1).to(torch.float64)


def _check_vertices(n_vertices: int, include_center: bool, input_dim: int) -> int:
    """The number of directions P for ``n_vertices`` vertices, or an InputError."""
    if isinstance(n_vertices, bool) or not isinstance(n_vertices, int):
        raise InputError(f"n_vertices must be an integer, got {n_vertices!r}")
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
    data,
    radius: float,
    n_vertices: int = 50,
    seed: int = 0,
    include_center: bool = False,
    **options,
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
    ``batch_size`` at a time (default 64 here), ``input_shape`` is needed to trace a module
    whose first layer is not Linear. Device and dtype follow the model unless ``dtype`` is given.

    Returns a MeasureResult named "neighborhood": ``value`` is the mean total count over points
    with its standard error, ``per_layer`` the mean count of each site, and ``extra`` the
    per-site fractions of the site's width ("fraction.<site>") and the total fraction
    ("fraction").
    """
    meter = NeighborhoodMeter(model, radius, n_vertices, seed, include_center, **options)
    return meter.update_from(data).compute()
