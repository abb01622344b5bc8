"""Exact linear regions of a network on a 2-d slice {origin + s u + t v}."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet
from reluscope.regions.boundary import decision_boundary_segments
from reluscope.regions.inputs import check_extent, check_finite_net, point_tensor, prepare_net
from reluscope.regions.polygons import DEFAULT_MAX_REGIONS, PolygonSplitter
from reluscope.regions.walk import DEFAULT_MEMORY_BUDGET, check_memory_budget, walk
from reluscope.validation import check_int

DEFAULT_TOL = 1e-10


class PlanePartition:
    """The partition of a rectangle of a plane into the convex linear regions of a network.

    Coordinates (s, t) are plane coordinates: the input point is origin + s u + t v. Areas are in
    (s, t) units, which are input-space units when u and v are orthonormal.
    """

    def __init__(
        self,
        net: PWLNet,
        origin: Tensor,
        u: Tensor,
        v: Tensor,
        extent: tuple[float, float, float, float],
        vertices: Tensor,
        outputs: Tensor,
        polygons: Tensor,
        counts: Tensor,
    ) -> None:
        self.net = net
        self.origin, self.u, self.v = origin, u, v
        self.extent = extent
        #: Plane coordinates of all vertices, shape (num_vertices, 2).
        self.vertices = vertices
        #: Network output at every vertex, shape (num_vertices, output_dim).
        self.outputs = outputs
        #: Vertex indices of every region, counter-clockwise, padded with the last vertex.
        self.polygons = polygons
        #: Number of vertices of every region.
        self.counts = counts
        #: Points given to :meth:`plot` by default (e.g. the three points of plane_through).
        self.marked_points: Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"PlanePartition(num_regions={self.num_regions}, num_vertices={self.num_vertices}, "
            f"extent={self.extent})"
        )

    @property
    def num_regions(self) -> int:
        return len(self.polygons)

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    def polygon(self, k: int) -> Tensor:
        """The vertices of region k in plane coordinates, shape (n_k, 2), counter-clockwise."""
        return self.vertices[self.polygons[k, : int(self.counts[k])]]

    def polygon_list(self) -> list[np.ndarray]:
        """Every region's vertices as a numpy array (n_k, 2)."""
        verts = self.vertices.cpu().numpy()
        polys = self.polygons.cpu().numpy()
        return [verts[p[:c]] for p, c in zip(polys, self.counts.cpu().numpy(), strict=True)]

    def _edges(self) -> tuple[Tensor, Tensor, Tensor]:
        slot = torch.arange(self.polygons.shape[1], device=self.polygons.device)
        nxt = torch.where(slot + 1 < self.counts[:, None], slot + 1, 0)
        valid = slot < self.counts[:, None]
        return self.polygons, self.polygons.gather(1, nxt), valid

    @cached_property
    def areas(self) -> Tensor:
        """Area of every region in (s, t) units (shoelace formula)."""
        a, b, valid = self._edges()
        pa, pb = self.vertices[a], self.vertices[b]
        cross = pa[..., 0] * pb[..., 1] - pa[..., 1] * pb[..., 0]
        return 0.5 * (cross * valid).sum(1)

    @cached_property
    def interior_points(self) -> Tensor:
        """A point strictly inside every region (the mean of its vertices), plane coordinates."""
        _, _, valid = self._edges()
        pts = self.vertices[self.polygons] * valid.unsqueeze(2)
        return pts.sum(1) / self.counts.unsqueeze(1).to(pts.dtype)

    def to_input(self, st: Tensor) -> Tensor:
        """Input-space points origin + s u + t v for plane coordinates st of shape (m, 2)."""
        st = torch.as_tensor(st, dtype=self.origin.dtype, device=self.origin.device)
        return (
            self.origin.unsqueeze(0)
            + st[:, :1].reshape((-1,) + (1,) * self.u.dim()) * self.u
            + st[:, 1:2].reshape((-1,) + (1,) * self.v.dim()) * self.v
        )

    def patterns(self, chunk_size: int = 4096) -> Tensor:
        """Activation pattern of every region, bool (num_regions, num_neurons), in site order."""
        pts = self.interior_points
        return (
            torch.cat(
                [
                    self.net.pattern_vector(self.to_input(pts[i : i + chunk_size]))
                    for i in range(0, len(pts), chunk_size)
                ]
            )
            if len(pts)
            else torch.zeros(0, self.net.num_neurons, dtype=torch.bool, device=pts.device)
        )

    def affine_maps(self, chunk_size: int = 256) -> tuple[Tensor, Tensor]:
        """The affine map of every region in input space: J (regions, out, in), c (regions, out)."""
        return self.net.local_affine(self.to_input(self.interior_points), chunk_size=chunk_size)

    def plane_maps(self) -> tuple[Tensor, Tensor]:
        """The affine map of every region in plane coordinates: f = A (s, t) + c.

        Returns A of shape (regions, out, 2) and c of shape (regions, out).
        """
        jac, const = self.affine_maps()
        basis = torch.stack([self.u.reshape(-1), self.v.reshape(-1)], dim=1)
        a = jac @ basis
        c = const + jac @ self.origin.reshape(-1)
        return a, c

    def adjacency(self) -> Tensor:
        """Pairs of regions that share an edge, shape (pairs, 2), each pair once."""
        a, b, valid = self._edges()
        owner = torch.arange(self.num_regions, device=a.device)[:, None].expand_as(a)
        a, b, owner = a[valid], b[valid], owner[valid]
        keep = a != b
        a, b, owner = a[keep], b[keep], owner[keep]
        key = torch.minimum(a, b) * (1 << 31) + torch.maximum(a, b)
        order = torch.argsort(key, stable=True)
        key, owner = key[order], owner[order]
        same = key[1:] == key[:-1]
        return torch.stack([owner[:-1][same], owner[1:][same]], dim=1)

    def locate(self, st: Tensor, chunk_size: int | None = None) -> Tensor:
        """Index of the region containing each point (plane coordinates), -1 when outside.

        A point on a shared edge gets the lowest-index region containing it.
        """
        st = torch.as_tensor(st, dtype=self.vertices.dtype, device=self.vertices.device)
        a, b, valid = self._edges()
        s0, s1, t0, t1 = self.extent
        scale = max(s1 - s0, t1 - t0)
        tol = 1e-12 * scale * scale
        # The side of p with respect to every edge a -> b is the cross product
        # (b - a) x (p - a) = -d_t p_s + d_s p_t + (d_t a_s - d_s a_t), an affine function of p.
        # Coordinates are taken relative to the centre of the extent to keep the constant small.
        center = st.new_tensor([0.5 * (s0 + s1), 0.5 * (t0 + t1)])
        pa, pb = self.vertices[a] - center, self.vertices[b] - center
        d = pb - pa
        coef = torch.stack(
            [-d[..., 1], d[..., 0], d[..., 1] * pa[..., 0] - d[..., 0] * pa[..., 1]], dim=-1
        )
        coef = torch.where(valid.unsqueeze(-1), coef, 0.0)  # (regions, width, 3)
        # Only the regions whose bounding box (slightly enlarged) holds a point are tested.
        pad = 1e-9 * scale
        lo = pa.amin(1) - pad
        hi = pa.amax(1) + pad
        n_reg, width = a.shape
        if chunk_size is None:  # bounds the (points, regions, width) work of one chunk
            chunk_size = max(1, (1 << 22) // max(1, n_reg * width))
        out = torch.full((len(st),), -1, dtype=torch.long, device=st.device)
        for i in range(0, len(st), chunk_size):
            q = st[i : i + chunk_size] - center
            box = ((q[:, None, :] >= lo) & (q[:, None, :] <= hi)).all(2)
            pi, pj = box.nonzero(as_tuple=True)
            cross = torch.einsum("kwc,kc->kw", coef[pj, :, :2], q[pi]) + coef[pj, :, 2]
            ok = (cross >= -tol).all(1)
            best = torch.full((len(q),), n_reg, dtype=torch.long, device=st.device)
            best.scatter_reduce_(0, pi[ok], pj[ok], reduce="amin")
            out[i : i + chunk_size] = torch.where(best < n_reg, best, -1)
        return out

    def decision_boundary(self, threshold: float = 0.0) -> tuple[Tensor, Tensor]:
        """Decision-boundary segments in plane coordinates and the class pair of each.

        For a scalar output the boundary is {f = threshold}; for several outputs it is where the
        arg-max changes. Returns segments (m, 2, 2) and pairs (m, 2) of class indices.
        """
        return decision_boundary_segments(
            self.vertices, self.outputs, self.polygons, self.counts, threshold
        )

    def plot(self, path, points=None, labels=None, **kwargs) -> None:
        """Write a PNG of the regions, their edges and the decision boundary; see regions.plot."""
        from reluscope.regions.plot import plot_plane

        if points is None and self.marked_points is not None:
            points = self.marked_points
        plot_plane(self, path, points=points, labels=labels, **kwargs)


def plane(
    model: nn.Module | PWLNet,
    origin: Tensor | Sequence[float] | None = None,
    u: Tensor | Sequence[float] | None = None,
    v: Tensor | Sequence[float] | None = None,
    extent: Sequence[float] = (-1.0, 1.0, -1.0, 1.0),
    *,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    tol: float = DEFAULT_TOL,
    max_regions: int = DEFAULT_MAX_REGIONS,
    progress: Callable[[int], None] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> PlanePartition:
    """The exact partition of {origin + s u + t v : (s, t) in extent} into linear regions.

    Regions are where every site's pattern is constant: split at every breakpoint of every
    activation and at every tie between the leading candidates of a max unit. The partition
    stops with an InputError once it has more than ``max_regions`` regions (default 5
    million); ``progress``, when given, is called with the current number of regions after
    every split. The vertex tables (the values later layers read, at every vertex) stay within
    ``memory_budget`` bytes (default 4 GiB): when one would not fit, the polygons are walked
    through the remaining layers in groups of neighbours and merged; only a single region too
    wide for the budget stops with an InputError that says what it needs.

    ``extent`` is (s_min, s_max, t_min, t_max). For a network with 2 inputs, origin, u and v
    default to 0, e1 and e2 (the input plane itself). ``tol`` is the relative tolerance under
    which a vertex counts as lying on a neuron's zero set. Runs on the model's device, in
    ``dtype`` (float64 by default).
    """
    if origin is not None:
        # validated before it is used to infer the input shape, so that a bad origin gives an
        # InputError naming it rather than a TypeError from torch
        origin = point_tensor(origin, "origin")
    example, name = (origin, "origin") if origin is not None else (u, "u")
    if origin is None and u is not None:
        example = point_tensor(u, "u")
    net = prepare_net(model, input_shape, dtype, example, name)
    origin, u, v = _plane_vectors(net, origin, u, v)
    ext = check_extent(extent, 4)
    s0, s1, t0, t1 = ext
    corners = torch.tensor(
        [[s0, t0], [s1, t0], [s1, t1], [s0, t1]], dtype=net.dtype, device=net.device
    )
    polygons = torch.arange(4, device=net.device).unsqueeze(0)
    counts = torch.tensor([4], device=net.device)
    _check_max_regions(max_regions)
    check_memory_budget(memory_budget)
    splitter = PolygonSplitter(polygons, counts, max_regions, progress)
    basis = torch.stack([u, v])
    coords, outputs = walk(
        net,
        corners,
        origin,
        basis,
        splitter,
        tol,
        affine_first_site=True,
        memory_budget=memory_budget,
    )
    return PlanePartition(
        net,
        origin,
        u,
        v,
        (s0, s1, t0, t1),
        coords.contiguous(),
        outputs,
        splitter.polys.view().contiguous(),
        splitter.counts.view().contiguous(),
    )


def plane_through(
    model: nn.Module | PWLNet,
    points: Tensor | Sequence,
    margin: float = 0.25,
    *,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    tol: float = DEFAULT_TOL,
    max_regions: int = DEFAULT_MAX_REGIONS,
    progress: Callable[[int], None] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> PlanePartition:
    """The partition of the plane through three input points, on a rectangle around them.

    u and v are an orthonormal basis of the plane (so areas are in input units), the origin is
    the points' centroid, and the rectangle covers the points with ``margin`` times their spread
    on every side. The points' plane coordinates are kept in ``marked_points``.
    """
    pts = point_tensor(points, "points")
    if pts.shape[0] != 3:
        raise InputError(f"plane_through needs exactly 3 points, got {pts.shape[0]}")
    net = prepare_net(model, input_shape, dtype, pts[0], "the points")
    pts = pts.to(dtype=net.dtype, device=net.device).reshape(3, -1)
    if pts.shape[1] != net.input_dim:
        raise InputError(
            f"points have {pts.shape[1]} values each; the network takes {net.input_dim} "
            f"(input shape {net.input_shape})"
        )
    center = pts.mean(0)
    d1, d2 = pts[1] - pts[0], pts[2] - pts[0]
    if d1.norm() == 0:
        raise InputError("the first two points coincide: expected three distinct points")
    u = d1 / d1.norm()
    w = d2 - (d2 @ u) * u
    if w.norm() <= 1e-12 * max(float(d2.norm()), 1e-300):
        raise InputError("the three points are collinear: they do not span a plane")
    v = w / w.norm()
    st = torch.stack([(pts - center) @ u, (pts - center) @ v], dim=1)
    lo, hi = st.min(0).values, st.max(0).values
    pad = margin * (hi - lo).max()
    ext = (float(lo[0] - pad), float(hi[0] + pad), float(lo[1] - pad), float(hi[1] + pad))
    shape = net.input_shape
    part = plane(
        net,
        center.reshape(shape),
        u.reshape(shape),
        v.reshape(shape),
        ext,
        dtype=dtype,
        tol=tol,
        max_regions=max_regions,
        progress=progress,
        memory_budget=memory_budget,
    )
    part.marked_points = st
    return part


def _plane_vectors(net: PWLNet, origin, u, v) -> tuple[Tensor, Tensor, Tensor]:
    shape, dev, dt = net.input_shape, net.device, net.dtype
    if u is None and v is None and net.input_dim == 2:
        eye = torch.eye(2, dtype=dt, device=dev)
        u, v = eye[0].reshape(shape), eye[1].reshape(shape)
    elif u is None or v is None:
        raise InputError(
            f"the network takes inputs of shape {shape}: give the plane's directions u and v "
            "(or use plane_through with three points)"
        )
    vecs = []
    for name, vec in (("origin", origin), ("u", u), ("v", v)):
        if vec is None:
            vec = torch.zeros(shape, dtype=dt, device=dev)
        vec = point_tensor(vec, name).to(dtype=dt, device=dev)
        if vec.numel() != net.input_dim:
            raise InputError(
                f"{name} has {vec.numel()} values (shape {tuple(vec.shape)}); expected the "
                f"network's input shape {shape}"
            )
        vecs.append(vec.reshape(shape))
    origin, u, v = vecs
    nu, nv = u.norm(), v.norm()
    if nu == 0 or nv == 0:
        raise InputError(
            f"degenerate plane: |u| = {float(nu):g}, |v| = {float(nv):g}; expected non-zero directions"
        )
    cos = (u.reshape(-1) @ v.reshape(-1)) / (nu * nv)
    if 1 - abs(float(cos)) < 1e-12:
        raise InputError("degenerate plane: u and v are parallel; expected independent directions")
    check_finite_net(net)
    return origin, u, v


def _check_max_regions(max_regions: int) -> None:
    check_int("max_regions", max_regions, minimum=1)
