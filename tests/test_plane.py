"""Exact plane partitions (reluscope.plane / plane_through) checked against ground truth.

Ground truth here is independent of the partition code: dense grids of points evaluated
directly by the network, a ray-casting point-in-polygon test, the network's own outputs at
points sampled inside every region, and the region counts of regioncam.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import reluscope
from reluscope.errors import InputError
from reluscope.nets import cnn, mlp, resnet

F64 = torch.float64


# --------------------------------------------------------------------------- helpers


def unique_edges(part) -> np.ndarray:
    """Every edge of every polygon as an unordered vertex pair, once, shape (E, 2)."""
    pairs = []
    for p, c in zip(part.polygons.numpy(), part.counts.numpy(), strict=True):
        ring = p[:c]
        pairs.append(np.stack([ring, np.roll(ring, -1)], axis=1))
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(pairs, axis=0)


def edge_uses(part) -> dict[tuple[int, int], list[int]]:
    """For every unordered edge (vertex pair), the polygons that have it."""
    uses: dict[tuple[int, int], list[int]] = {}
    for k, (p, c) in enumerate(zip(part.polygons.tolist(), part.counts.tolist(), strict=True)):
        ring = p[:c]
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            uses.setdefault((min(a, b), max(a, b)), []).append(k)
    return uses


def box_pairs(pts: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """All (point, box) index pairs with the point inside the closed box [lo, hi].

    Points are sorted by their first coordinate, so each box's candidates are one slice of them.
    """
    order = torch.argsort(pts[:, 0])
    s_sorted = pts[order, 0].contiguous()
    first = torch.searchsorted(s_sorted, lo[:, 0].contiguous(), right=False)
    last = torch.searchsorted(s_sorted, hi[:, 0].contiguous(), right=True)
    lengths = (last - first).clamp_min(0)
    pj = torch.repeat_interleave(torch.arange(len(lo)), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    pi = order[first[pj] + torch.arange(len(pj)) - offsets[pj]]
    t = pts[pi, 1]
    keep = (t >= lo[pj, 1]) & (t <= hi[pj, 1])
    return pi[keep], pj[keep]


def distance_to_edges(pts: torch.Tensor, part, reach: float = 1e-6) -> torch.Tensor:
    """Distance from each point to the nearest polygon edge (segment); inf when beyond reach."""
    edges = torch.as_tensor(unique_edges(part))
    a, b = part.vertices[edges[:, 0]], part.vertices[edges[:, 1]]
    pi, pj = box_pairs(pts, torch.minimum(a, b) - reach, torch.maximum(a, b) + reach)
    d = b[pj] - a[pj]
    t = (((pts[pi] - a[pj]) * d).sum(1) / (d * d).sum(1).clamp_min(1e-300)).clamp(0, 1)
    dist = (pts[pi] - a[pj] - t[:, None] * d).norm(dim=1)
    out = torch.full((len(pts),), float("inf"), dtype=F64)
    return out.scatter_reduce(0, pi, dist, reduce="amin")


def ray_cast_inside(pts: torch.Tensor, part) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent point-in-polygon test by ray casting (no convexity or orientation assumed).

    Uses the padded polygon rows as they are: the padding repeats the last vertex, so the padded
    ring has only degenerate extra edges. Returns, per point, the number of polygons containing
    it and the lowest index of those (-1 if none).
    """
    ring = part.vertices[part.polygons]  # (P, W, 2)
    pi, pj = box_pairs(pts, ring.amin(1), ring.amax(1))
    r = ring[pj]
    nxt = r.roll(-1, dims=1)
    xa, ya, xb, yb = r[..., 0], r[..., 1], nxt[..., 0], nxt[..., 1]
    px, py = pts[pi, 0, None], pts[pi, 1, None]
    straddle = (ya > py) != (yb > py)
    x_cross = xa + (py - ya) * (xb - xa) / torch.where(straddle, yb - ya, 1.0)
    inside = (straddle & (px < x_cross)).sum(1) % 2 == 1
    n_in = torch.zeros(len(pts), dtype=torch.long).index_add_(0, pi, inside.long())
    big = part.num_regions
    first = torch.full((len(pts),), big, dtype=torch.long)
    first.scatter_reduce_(0, pi[inside], pj[inside], reduce="amin")
    return n_in, torch.where(first < big, first, -1)


def grid(extent, n: int) -> torch.Tensor:
    """n x n cell centres of the rectangle extent = (s0, s1, t0, t1)."""
    s0, s1, t0, t1 = extent
    s = s0 + (torch.arange(n, dtype=F64) + 0.5) / n * (s1 - s0)
    t = t0 + (torch.arange(n, dtype=F64) + 0.5) / n * (t1 - t0)
    ss, tt = torch.meshgrid(s, t, indexing="ij")
    return torch.stack([ss.reshape(-1), tt.reshape(-1)], dim=1)


def check_grid(part, n: int, margin: float = 1e-9) -> int:
    """Every grid point away from the edges is in exactly one region, with that region's pattern.

    Returns the number of grid points checked.
    """
    pts = grid(part.extent, n)
    far = distance_to_edges(pts, part) > margin
    pts = pts[far]
    assert len(pts) > 0.9 * n * n
    n_in, which = ray_cast_inside(pts, part)
    assert (n_in == 1).all(), f"{int((n_in != 1).sum())} grid points in != 1 polygon"
    loc = part.locate(pts)
    assert torch.equal(loc, which)
    got = part.net.pattern_vector(part.to_input(pts))
    stored = part.patterns()[loc]
    bad = (got != stored).any(1)
    assert not bad.any(), f"{int(bad.sum())} grid points with a pattern != their region's"
    return len(pts)


def sample_inside(part, per_region: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random convex combinations of every region's vertices, and the region of each."""
    cnt = part.counts
    w = -torch.log(torch.rand(part.num_regions, per_region, part.polygons.shape[1], generator=gen))
    slot = torch.arange(part.polygons.shape[1])
    w = w.to(F64) * (slot < cnt[:, None]).unsqueeze(1)
    w = w / w.sum(2, keepdim=True)
    pts = torch.einsum("rkw,rwd->rkd", w, part.vertices[part.polygons])
    owner = torch.arange(part.num_regions).repeat_interleave(per_region)
    return pts.reshape(-1, 2), owner


def for_regioncam(model: nn.Sequential) -> nn.Sequential:
    """A float32 copy that regioncam accepts (it needs a bias on every Linear)."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear) and layer.bias is None:
            new = nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                new.weight.copy_(layer.weight)
                new.bias.zero_()
            layer = new
        layers.append(layer)
    return nn.Sequential(*layers).float()


# --------------------------------------------------------------------------- cases


def small_cnn():
    return cnn(in_channels=1, image_size=8, channels=(2, 3), num_classes=4, seed=0)


def small_resnet():
    return resnet(in_channels=1, image_size=4, width=2, blocks=1, num_classes=3, seed=0)


def orthonormal_pair(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(int(np.prod(shape)), 2, generator=gen, dtype=F64))
    return q[:, 0].reshape(shape), q[:, 1].reshape(shape)


def cnn_case():
    u, v = orthonormal_pair((1, 8, 8), 1)
    origin = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    return reluscope.plane(small_cnn(), origin, u, v, extent=(-1.5, 1.5, -1, 1))


def resnet_case():
    u, v = orthonormal_pair((1, 4, 4), 5)
    # float64 module: BatchNorm is folded in the module's dtype, so a float32 module's folded
    # weights differ from the module's own float64 evaluation by ~1e-8
    model = small_resnet().double()
    return reluscope.plane(model, torch.zeros(1, 4, 4), u, v, extent=(-2, 2, -2, 2))


CASES = {
    "mlp-2-16-16-1": lambda: reluscope.plane(mlp([2, 16, 16, 1], seed=0)),
    "mlp-2-32-32-3": lambda: reluscope.plane(mlp([2, 32, 32, 3], seed=1)),
    "leaky": lambda: reluscope.plane(
        mlp([2, 16, 16, 1], activation="leaky_relu", slope=0.2, seed=2),
        extent=(-1.5, 2.0, -0.5, 1.0),
    ),
    "bias-free": lambda: reluscope.plane(
        mlp([2, 16, 16, 1], bias=False, seed=3), extent=(-1, 2, -0.5, 1)
    ),
    "deep": lambda: reluscope.plane(mlp([2, 12, 12, 12, 12, 1], seed=4, init_multiplier=1.5)),
    # a slanted plane with non-orthonormal directions and an offset origin
    "slanted": lambda: reluscope.plane(
        mlp([2, 16, 16, 2], seed=5),
        origin=[0.3, -0.2],
        u=[0.8, 0.3],
        v=[-0.5, 1.1],
        extent=(-1, 0.5, -0.7, 1),
    ),
    "cnn": cnn_case,
    "resnet": resnet_case,
}


@functools.cache
def case(name: str):
    return CASES[name]()


@pytest.fixture(params=list(CASES))
def part(request):
    return case(request.param)


# --------------------------------------------------------------------------- partition


def test_dense_grid_points_are_in_exactly_one_region_with_its_pattern(part):
    assert part.num_regions > 10
    checked = check_grid(part, 200)
    assert checked > 0.9 * 200 * 200


def region_sign_conflicts(part, rel: float = 1e-9) -> torch.Tensor:
    """Per region, whether some neuron is strictly positive at one of its vertices and strictly
    negative at another, with pre-activations computed by the network itself at the vertices.

    If no region has a conflict, every (convex) region lies inside one activation region: by
    induction over the layers, the pre-activations are affine on it and keep their sign.
    """
    pre = part.net.preactivations(part.to_input(part.vertices))
    z = torch.cat([v.reshape(part.num_vertices, -1) for v in pre.values()], dim=1)
    eps = rel * z.abs().amax(0).clamp_min(1e-300)
    pos, neg = z > eps, z < -eps
    idx = part.polygons
    return (pos[idx].any(1) & neg[idx].any(1)).any(1)


def test_every_region_lies_in_one_activation_region(part):
    conflicts = region_sign_conflicts(part)
    assert not conflicts.any(), f"regions {conflicts.nonzero().flatten().tolist()} are crossed"


def test_areas_sum_to_rectangle_and_are_positive(part):
    s0, s1, t0, t1 = part.extent
    total = (s1 - s0) * (t1 - t0)
    assert abs(float(part.areas.sum()) - total) <= 1e-12 * total
    assert (part.areas > 0).all()
    # shoelace on the polygon list, independently of the padded layout
    shoelace = [
        0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1)))
        for p in part.polygon_list()
    ]
    np.testing.assert_allclose(shoelace, part.areas.numpy(), rtol=1e-12, atol=1e-15)


def test_polygons_are_convex_and_counter_clockwise(part):
    scale = max(part.extent[1] - part.extent[0], part.extent[3] - part.extent[2])
    for k, poly in enumerate(part.polygon_list()):
        assert len(poly) >= 3
        assert np.array_equal(poly, part.polygon(k).numpy())
        e = np.roll(poly, -1, axis=0) - poly
        assert (np.linalg.norm(e, axis=1) > 0).all(), f"region {k} repeats a vertex"
        cross = e[:, 0] * np.roll(e[:, 1], -1) - e[:, 1] * np.roll(e[:, 0], -1)
        assert (cross >= -1e-12 * scale**2).all(), f"region {k} is not convex/CCW"
        assert cross.sum() > 0


def test_padding_repeats_the_last_vertex(part):
    for p, c in zip(part.polygons.tolist(), part.counts.tolist(), strict=True):
        assert all(i == p[c - 1] for i in p[c:])


def test_partition_is_a_conforming_subdivision(part):
    """Edges are shared whole by two regions, except on the rectangle's border; Euler holds."""
    s0, s1, t0, t1 = part.extent
    verts = part.vertices.numpy()
    used = np.unique(part.polygons.numpy())
    assert len(used) == part.num_vertices  # no orphan vertices
    # no two vertices at the same place
    assert len(np.unique(verts, axis=0)) == len(verts)
    # all vertices inside the rectangle
    assert (verts[:, 0] >= s0).all() and (verts[:, 0] <= s1).all()
    assert (verts[:, 1] >= t0).all() and (verts[:, 1] <= t1).all()
    uses = edge_uses(part)
    tol = 1e-12 * max(s1 - s0, t1 - t0)
    for (a, b), owners in uses.items():
        assert len(owners) in (1, 2)
        if len(owners) == 1:
            pa, pb = verts[a], verts[b]
            on_border = any(
                abs(pa[ax] - lim) <= tol and abs(pb[ax] - lim) <= tol
                for ax, lims in ((0, (s0, s1)), (1, (t0, t1)))
                for lim in lims
            )
            assert on_border, f"edge {a}-{b} has one region but is not on the border"
    # Euler: V - E + F = 1 for a subdivision of a disc
    assert part.num_vertices - len(uses) + part.num_regions == 1


def test_adjacency_matches_shared_edges_and_neighbours_differ(part):
    adj = part.adjacency()
    pairs = {tuple(sorted(p)) for p in adj.tolist()}
    assert len(pairs) == len(adj), "a pair is listed twice"
    expected = {tuple(sorted(o)) for o in edge_uses(part).values() if len(o) == 2}
    assert pairs == expected
    pats = part.patterns()
    assert pats.shape == (part.num_regions, part.net.num_neurons)
    assert (pats[adj[:, 0]] != pats[adj[:, 1]]).any(1).all()


def test_affine_maps_reproduce_the_network_inside_every_region(part):
    gen = torch.Generator().manual_seed(0)
    st, owner = sample_inside(part, 4, gen)
    x = part.to_input(st)
    truth = part.net(x)
    scale = 1.0 + float(truth.abs().max())
    jac, const = part.affine_maps()
    assert jac.shape == (part.num_regions, part.net.output_dim, part.net.input_dim)
    got = torch.einsum("nod,nd->no", jac[owner], x.reshape(len(x), -1)) + const[owner]
    assert float((got - truth).abs().max()) <= 1e-10 * scale
    a, c = part.plane_maps()
    assert a.shape == (part.num_regions, part.net.output_dim, 2)
    got = torch.einsum("nod,nd->no", a[owner], st) + c[owner]
    assert float((got - truth).abs().max()) <= 1e-10 * scale
    # the points are inside their own region, for both point-location methods
    assert torch.equal(part.locate(st), owner)


def test_vertex_outputs_equal_the_network(part):
    truth = part.net(part.to_input(part.vertices))
    assert part.outputs.shape == truth.shape
    scale = 1.0 + float(truth.abs().max())
    assert float((part.outputs - truth).abs().max()) <= 1e-10 * scale


def test_interior_points_and_locate(part):
    ip = part.interior_points
    assert torch.equal(part.locate(ip), torch.arange(part.num_regions))
    s0, s1, t0, t1 = part.extent
    outside = torch.tensor(
        [[s0 - 0.1, t0], [s1 + 1e-3, 0.5 * (t0 + t1)], [0.5 * (s0 + s1), t1 + 0.5]], dtype=F64
    )
    assert (part.locate(outside) == -1).all()


def maxabs(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def check_decision_boundary(part, threshold: float = 0.0) -> int:
    """Decision-boundary segments lie where the network ties (at the threshold, or between the
    segment's two classes, which are the arg-max there). Returns the number of segments."""
    seg, pairs = part.decision_boundary(threshold)
    assert seg.shape[1:] == (2, 2) and pairs.shape == (len(seg), 2)
    pts = torch.cat([seg[:, 0], seg[:, 1], seg.mean(1)])
    pr = torch.cat([pairs, pairs, pairs])
    out = part.net(part.to_input(pts))
    scale = 1.0 + float(part.outputs.abs().max())
    if out.shape[1] == 1:
        assert maxabs(out - threshold) <= 1e-9 * scale
    else:
        fi = out.gather(1, pr[:, :1])[:, 0]
        fj = out.gather(1, pr[:, 1:])[:, 0]
        assert maxabs(fi - fj) <= 1e-9 * scale
        assert maxabs(out.max(1).values - fi) <= 1e-9 * scale
    # segments are inside the rectangle and have positive length
    s0, s1, t0, t1 = part.extent
    assert (seg[..., 0] >= s0 - 1e-12).all() and (seg[..., 0] <= s1 + 1e-12).all()
    assert (seg[..., 1] >= t0 - 1e-12).all() and (seg[..., 1] <= t1 + 1e-12).all()
    assert ((seg[:, 1] - seg[:, 0]).norm(dim=1) > 0).all()
    return len(seg)


def test_decision_boundary_is_where_the_classes_tie(part):
    threshold = float(part.outputs[:, 0].median()) if part.net.output_dim == 1 else 0.0
    n = check_decision_boundary(part, threshold)
    if part.net.output_dim == 1:
        assert n > 0


def test_multiclass_decision_boundary_through_a_three_way_tie():
    model = mlp([2, 16, 16, 3], seed=11)
    with torch.no_grad():  # make all classes tie at the origin
        model[-1].bias -= model(torch.zeros(1, 2))[0]
    part = reluscope.plane(model)
    seg, pairs = part.decision_boundary()
    assert check_decision_boundary(part) >= 3
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (0, 2), (1, 2)}
    # every arg-max change along dense lines happens next to a boundary segment
    for t in (-0.6, -0.1, 0.35, 0.8):
        s = torch.linspace(-1, 1, 4001, dtype=F64)
        st = torch.stack([s, torch.full_like(s, t)], dim=1)
        cls = part.net(part.to_input(st)).argmax(1)
        change = (cls[1:] != cls[:-1]).nonzero().flatten()
        for k in change.tolist():
            mid = 0.5 * (st[k] + st[k + 1])
            a, b = seg[:, 0], seg[:, 1]
            d = b - a
            u = (((mid - a) * d).sum(1) / (d * d).sum(1)).clamp(0, 1)
            dist = (mid - a - u[:, None] * d).norm(dim=1).min()
            assert float(dist) <= 1e-3


def test_plane_inside_a_zero_set_is_not_split_by_rounding_noise():
    """Regression: a plane inside the first neuron's zero set sees only rounding noise of that
    neuron; with a tolerance relative to the noise, the noise split the plane."""
    w = torch.tensor(
        [[0.1, 0.3, 0.7], [1.0, 0.2, -0.5], [-0.4, 0.9, 0.3], [0.3, -0.6, 0.2]], dtype=F64
    )
    b = torch.tensor([0.0, 0.3, -0.2, 0.1], dtype=F64)
    basis = torch.cat([w[:1].T, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], dtype=F64)], 1)
    q, _ = torch.linalg.qr(basis)
    u, v = q[:, 1], q[:, 2]  # orthogonal to w[0]: the plane is in its zero set

    def net(rows):
        model = nn.Sequential(nn.Linear(3, len(rows)), nn.ReLU(), nn.Linear(len(rows), 1))
        model = model.double()
        with torch.no_grad():
            model[0].weight.copy_(w[rows])
            model[0].bias.copy_(b[rows])
        return model

    part = reluscope.plane(net([0, 1, 2, 3]), torch.zeros(3), u, v)
    without = reluscope.plane(net([1, 2, 3]), torch.zeros(3), u, v)
    assert part.num_regions == without.num_regions == 7
    assert torch.allclose(part.areas.sort().values, without.areas.sort().values, atol=1e-14)


# --------------------------------------------------------------------------- regioncam


@pytest.mark.parametrize(
    "widths,kwargs",
    [
        ([2, 8, 1], {"seed": 0}),
        ([2, 16, 16, 1], {"seed": 1}),
        ([2, 32, 32, 1], {"seed": 2}),
        ([2, 32, 32, 3], {"seed": 3}),
        ([2, 16, 16, 16, 1], {"seed": 4}),
        ([2, 24, 24, 24, 2], {"seed": 5, "init_multiplier": 2.0}),
        ([2, 16, 16, 1], {"seed": 6, "activation": "leaky_relu", "slope": 0.1}),
        ([2, 32, 32, 1], {"seed": 7, "bias": False}),
    ],
)
def test_region_count_equals_regioncam(widths, kwargs):
    regioncam = pytest.importorskip("regioncam")
    model = mlp(widths, **kwargs)  # float32 weights, seen identically by both
    part = reluscope.plane(model)
    cam = regioncam.Regioncam(size=1.0)
    cam.add(for_regioncam(model))
    assert part.num_regions == cam.num_faces


# --------------------------------------------------------------------------- non-2d inputs


@pytest.mark.parametrize("name,factory", [("cnn", small_cnn), ("resnet", small_resnet)])
def test_conv_plane_agrees_with_the_torch_module(name, factory):
    part = case(name)
    assert part.num_regions > 20
    assert part.net.input_shape == part.origin.shape
    # the torch module itself (float32 weights, evaluated in float64) at vertices and samples
    model = factory().double()
    st, owner = sample_inside(part, 2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_v = model(part.to_input(part.vertices))
        ref_s = model(part.to_input(st))
    scale = 1 + float(ref_v.abs().max())
    assert float((ref_v - part.outputs).abs().max()) <= 1e-9 * scale
    a, c = part.plane_maps()
    got = torch.einsum("nod,nd->no", a[owner], st) + c[owner]
    assert float((got - ref_s).abs().max()) <= 1e-9 * scale


def test_cnn_plane_with_input_shape_and_default_origin():
    u, v = orthonormal_pair((1, 8, 8), 4)
    part = reluscope.plane(small_cnn(), u=u, v=v, input_shape=(1, 8, 8))
    assert torch.equal(part.origin, torch.zeros(1, 8, 8, dtype=F64))
    check_grid(part, 40)


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_plane_through_marks_the_three_points(which):
    gen = torch.Generator().manual_seed(7)
    if which == "mlp":
        model, shape = mlp([2, 16, 16, 3], seed=8), (2,)
    else:
        model, shape = small_cnn(), (1, 8, 8)
    pts = 0.3 * torch.randn((3,) + shape, generator=gen, dtype=F64)
    part = reluscope.plane_through(model, pts, margin=0.3)
    assert part.marked_points.shape == (3, 2)
    back = part.to_input(part.marked_points)
    assert back.shape == (3,) + shape
    assert float((back - pts).abs().max()) <= 1e-12 * (1 + float(pts.abs().max()))
    # u, v orthonormal; origin the centroid
    u, v = part.u.reshape(-1), part.v.reshape(-1)
    assert abs(float(u.norm()) - 1) < 1e-12 and abs(float(v.norm()) - 1) < 1e-12
    assert abs(float(u @ v)) < 1e-12
    assert torch.allclose(part.origin, pts.mean(0), atol=1e-12)
    # the rectangle holds the points with the margin on every side
    s0, s1, t0, t1 = part.extent
    mp = part.marked_points
    spread = float((mp.max(0).values - mp.min(0).values).max())
    assert abs(float(mp[:, 0].min()) - s0 - 0.3 * spread) < 1e-12
    assert abs(s1 - float(mp[:, 0].max()) - 0.3 * spread) < 1e-12
    assert abs(float(mp[:, 1].min()) - t0 - 0.3 * spread) < 1e-12
    assert abs(t1 - float(mp[:, 1].max()) - 0.3 * spread) < 1e-12
    assert (part.locate(mp) >= 0).all()
    check_grid(part, 40)


def test_plane_does_not_modify_the_model_and_default_plane_is_the_input_plane():
    model = mlp([2, 8, 1], seed=9)
    before = [p.detach().clone() for p in model.parameters()]
    part = reluscope.plane(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    st = torch.tensor([[0.25, -0.5], [-0.75, 0.125]], dtype=F64)
    assert torch.equal(part.to_input(st), st)


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    return mlp([2, 8, 1], seed=0)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"origin": [0.0, 0.0, 0.0]}, ["origin", "3 values", "(2,)"]),
        ({"u": [1.0, 0.0, 0.0], "v": [0.0, 1.0]}, ["u", "3 values", "(2,)"]),
        ({"u": [1.0, 0.0], "v": [1.0]}, ["v", "1 values", "(2,)"]),
        ({"u": [1.0, 1.0], "v": [2.0, 2.0]}, ["parallel"]),
        ({"u": [1.0, 1.0], "v": [-3.0, -3.0]}, ["parallel"]),
        ({"u": [0.0, 0.0], "v": [0.0, 1.0]}, ["|u| = 0"]),
        ({"u": [1.0, 0.0], "v": [0.0, 0.0]}, ["|v| = 0"]),
        ({"u": [1.0, 0.0]}, ["u and v"]),
        ({"extent": (1.0, 1.0, -1.0, 1.0)}, ["empty extent", "(1.0, 1.0, -1.0, 1.0)"]),
        ({"extent": (-1.0, 1.0, 2.0, 1.0)}, ["empty extent", "(-1.0, 1.0, 2.0, 1.0)"]),
        ({"extent": (float("nan"), 1.0, -1.0, 1.0)}, ["finite", "nan"]),
        ({"extent": (0.0, 1.0, float("inf"), 2.0)}, ["finite", "inf"]),
        ({"extent": (0.0, 1.0, -1.0)}, ["4 numbers", "(0.0, 1.0, -1.0)"]),
        ({"extent": "abcd"}, ["extent", "abcd"]),
        ({"origin": [float("nan"), 0.0]}, ["origin", "NaN"]),
        ({"u": [float("inf"), 0.0], "v": [0.0, 1.0]}, ["u", "inf"]),
        ({"origin": "ab"}, ["origin", "ab"]),
        ({"origin": []}, ["origin", "empty"]),
    ],
)
def test_plane_bad_input(small, kwargs, words):
    with pytest.raises(InputError) as err:
        reluscope.plane(small, **kwargs)
    for w in words:
        assert w in str(err.value), str(err.value)


@pytest.mark.parametrize("call", ["plane", "plane_through"])
def test_nan_weights_are_rejected(call):
    model = mlp([2, 8, 8, 1], seed=0)
    with torch.no_grad():
        model[2].weight[3, 1] = float("nan")
    with pytest.raises(InputError, match=r"'2.weight' holds .*NaN"):
        if call == "plane":
            reluscope.plane(model)
        else:
            reluscope.plane_through(model, [[0, 0], [1, 0], [0, 1]])


@pytest.mark.parametrize(
    "points,words",
    [
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], ["collinear"]),
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], ["collinear"]),
        ([[0.0, 0.0], [0.0, 0.0], [2.0, 1.0]], ["coincide"]),
        ([[0.0, 0.0], [1.0, 1.0]], ["exactly 3 points", "got 2"]),
        ([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], ["exactly 3 points", "got 4"]),
        ([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], ["3 values", "takes 2"]),
        ([[0.0, float("nan")], [1.0, 1.0], [1.0, 0.0]], ["points", "NaN"]),
    ],
)
def test_plane_through_bad_input(small, points, words):
    with pytest.raises(InputError) as err:
        reluscope.plane_through(small, points)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_conv_model_without_input_shape_or_origin():
    u, v = orthonormal_pair((1, 8, 8), 0)
    # the input shape is taken from u when no origin is given
    inferred = reluscope.plane(small_cnn(), u=u, v=v)
    given = reluscope.plane(small_cnn(), torch.zeros(1, 8, 8), u, v)
    assert inferred.num_regions == given.num_regions
    assert torch.equal(inferred.vertices, given.vertices)
    with pytest.raises(InputError, match=r"\(64,\) was taken from the shape of u.*input_shape"):
        reluscope.plane(small_cnn(), u=u.reshape(-1), v=v.reshape(-1))
    with pytest.raises(InputError, match=r"\(1, 8, 8\).*give the plane's directions u and v"):
        reluscope.plane(small_cnn(), origin=torch.zeros(1, 8, 8))
    with pytest.raises(InputError, match=r"u has 56 values.*\(1, 8, 8\)"):
        reluscope.plane(small_cnn(), torch.zeros(1, 8, 8), torch.ones(1, 7, 8), v)


@pytest.mark.slow
@pytest.mark.parametrize(
    "widths,seed", [([2, 64, 64, 64, 1], 0), ([2, 128, 128, 4], 1), ([2, 32] + [32] * 6 + [1], 2)]
)
def test_larger_mlps_against_regioncam_and_a_dense_grid(widths, seed):
    regioncam = pytest.importorskip("regioncam")
    model = mlp(widths, seed=seed)
    part = reluscope.plane(model)
    cam = regioncam.Regioncam(size=1.0)
    cam.add(for_regioncam(model))
    assert part.num_regions == cam.num_faces
    check_grid(part, 400)
    assert not region_sign_conflicts(part).any()
    adj = part.adjacency()
    pats = part.patterns()
    assert (pats[adj[:, 0]] != pats[adj[:, 1]]).any(1).all()
    assert abs(float(part.areas.sum()) - 4.0) <= 1e-12 * 4.0


def test_draw_plane_draws_every_region_the_boundary_and_the_points():
    from matplotlib.collections import LineCollection, PolyCollection

    from reluscope.figures import new_figure
    from reluscope.regions.plot import draw_plane

    part = reluscope.plane_through(mlp([2, 12, 12, 3], seed=4), [[0, 0], [1, 0.2], [0.3, 1]])
    fig, axes = new_figure(3, 1)
    draw_plane(axes[0], part, points=part.marked_points, color_by="output")
    (polys,) = [c for c in axes[0].collections if isinstance(c, PolyCollection)]
    drawn = [p.vertices for p in polys.get_paths()]
    assert len(drawn) == part.num_regions
    for got, ring in zip(drawn, part.polygon_list(), strict=True):
        np.testing.assert_allclose(got[: len(ring)], ring)
    (lines,) = [c for c in axes[0].collections if isinstance(c, LineCollection)]
    segments = part.decision_boundary()[0].numpy()
    assert len(segments) > 0
    np.testing.assert_allclose(np.stack(lines.get_segments()), segments)
    (dots,) = [c for c in axes[0].collections if type(c).__name__ == "PathCollection"]
    np.testing.assert_allclose(dots.get_offsets(), part.marked_points.numpy())
    s0, s1, t0, t1 = part.extent
    assert axes[0].get_xlim() == (s0, s1) and axes[0].get_ylim() == (t0, t1)
    # given segments are drawn as they are; no edges; no boundary
    draw_plane(axes[1], part, segments=segments[:2], edge_width=0.0)
    (polys,) = [c for c in axes[1].collections if isinstance(c, PolyCollection)]
    assert list(polys.get_linewidths()) == [0.0] and len(polys.get_edgecolors()) == 0
    (lines,) = [c for c in axes[1].collections if isinstance(c, LineCollection)]
    np.testing.assert_allclose(np.stack(lines.get_segments()), segments[:2])
    draw_plane(axes[2], part, boundary=False)
    assert not [c for c in axes[2].collections if isinstance(c, LineCollection)]
    with pytest.raises(
        InputError, match=r"color_by must be one of \['random', 'output'\]; got 'x'"
    ):
        draw_plane(axes[2], part, color_by="x")
    with pytest.raises(InputError, match="edge_width must be a finite number >= 0; got -1"):
        draw_plane(axes[2], part, edge_width=-1)
