"""Property-based tests of plane partitions on small, often degenerate, random MLPs.

Ground truth: an exact (rational arithmetic) count of the faces of a line arrangement in a
rectangle for one-hidden-layer networks; structural expectations (dead or constant layers,
duplicated neurons) and regioncam for two hidden layers; and the network itself on a grid.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import reluscope

F64 = torch.float64
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Rectangles containing the origin, with corners exact in binary floating point.
EXTENTS = [(-1.0, 1.0, -1.0, 1.0), (-1.5, 1.0, -0.75, 1.25), (-0.5, 2.0, -1.0, 0.5)]


# --------------------------------------------------------------------------- ground truth


def rect(extent) -> list[tuple[float, float]]:
    """The corners of the rectangle (s0, s1, t0, t1), counter-clockwise."""
    s0, s1, t0, t1 = extent
    return [(s0, t0), (s1, t0), (s1, t1), (s0, t1)]


def arrangement_faces(weight, bias, corners) -> int:
    """Exact number of faces cut out of a convex polygon (corners counter-clockwise) by the lines
    w . x + b = 0, in rational arithmetic on the given floating-point numbers.

    Rows with w = 0 give no line; proportional rows give the same line. With L distinct lines
    crossing the open polygon and, for each point p strictly inside where k_p >= 2 of them
    meet, faces = 1 + L + sum_p (k_p - 1): a line added to the arrangement is cut into one
    more piece than the number of distinct points where it meets the earlier lines.
    """
    corners = [(Fraction(float(x)), Fraction(float(y))) for x, y in corners]
    edges = list(zip(corners, corners[1:] + corners[:1], strict=True))

    def strictly_inside(x, y):
        return all((bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0 for (ax, ay), (bx, by) in edges)

    lines = set()
    for (a, b), c in zip(weight, bias, strict=True):
        a, b, c = Fraction(float(a)), Fraction(float(b)), Fraction(float(c))
        if a == 0 and b == 0:
            continue
        vals = [a * x + b * y + c for x, y in corners]
        if not (any(v > 0 for v in vals) and any(v < 0 for v in vals)):
            continue
        piv = a if a != 0 else b
        lines.add((a / piv, b / piv, c / piv))
    lines = sorted(lines)
    meets: dict[tuple[Fraction, Fraction], set[int]] = {}
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            a1, b1, c1 = lines[i]
            a2, b2, c2 = lines[j]
            det = a1 * b2 - a2 * b1
            if det == 0:
                continue
            x = (b1 * c2 - b2 * c1) / det
            y = (a2 * c1 - a1 * c2) / det
            if strictly_inside(x, y):
                meets.setdefault((x, y), set()).update((i, j))
    return 1 + len(lines) + sum(len(k) - 1 for k in meets.values())


def test_arrangement_faces_by_hand():
    square = rect((-1.0, 1.0, -1.0, 1.0))
    assert arrangement_faces([], [], square) == 1
    assert arrangement_faces([(1, 0)], [0], square) == 2
    assert arrangement_faces([(1, 0), (-2, 0)], [0, 0], square) == 2  # same line
    assert arrangement_faces([(1, 0), (0, 1)], [0, 0], square) == 4
    assert arrangement_faces([(1, 0), (0, 1), (1, 1)], [0, 0, 0], square) == 6  # concurrent
    assert arrangement_faces([(1, 0), (0, 1), (1, 1)], [0, 0, 0.5], square) == 7
    assert arrangement_faces([(1, 0)], [1], square) == 1  # on the border
    assert arrangement_faces([(1, 1), (1, -1)], [2, 0], square) == 2  # touches a corner
    assert arrangement_faces([(1, 1), (1, 2)], [0, 1], square) == 3  # meet on a corner
    assert arrangement_faces([(0, 0)], [1], square) == 1


# --------------------------------------------------------------------------- networks


def make_mlp(layers, activation: str, slope: float) -> nn.Sequential:
    """A float64 MLP from a list of (weight, bias) arrays."""
    mods: list[nn.Module] = []
    for k, (w, b) in enumerate(layers):
        w = torch.as_tensor(np.asarray(w, dtype=np.float64))
        lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))
        mods.append(lin)
        if k < len(layers) - 1:
            mods.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(slope))
    return nn.Sequential(*mods)


@st.composite
def integer_layer(draw, n_in: int, bias_free: bool):
    """A layer of 1..6 neurons with small integer weights and frequent degeneracies: zero rows,
    duplicated rows, and positive or negative multiples of earlier rows (same hyperplane)."""
    n = draw(st.integers(1, 6))
    ints = st.integers(-3, 3)
    rows: list[list[int]] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["fresh", "fresh", "zero", "copy", "multiple"]))
        if kind == "zero":
            rows.append([0] * (n_in + 1))
        elif kind in ("copy", "multiple") and rows:
            base = rows[draw(st.integers(0, len(rows) - 1))]
            m = 1 if kind == "copy" else draw(st.sampled_from([-2, -1, 2, 3]))
            rows.append([m * x for x in base])
        else:
            rows.append([draw(ints) for _ in range(n_in + 1)])
    w = np.array([r[:n_in] for r in rows], dtype=np.float64)
    b = np.zeros(n) if bias_free else np.array([r[n_in] for r in rows], dtype=np.float64)
    return w, b


activations = st.sampled_from([("relu", 0.0), ("leaky_relu", 0.1), ("leaky_relu", -0.5)])


# --------------------------------------------------------------------------- checks


def check_partition(part, n_grid: int = 40) -> None:
    """Areas, convexity, grid consistency and activation-region checks for a small partition."""
    s0, s1, t0, t1 = part.extent
    total = (s1 - s0) * (t1 - t0)
    areas = part.areas
    assert abs(float(areas.sum()) - total) <= 1e-12 * total
    assert (areas > 0).all()
    polys = part.polygon_list()
    for poly in polys:
        e = np.roll(poly, -1, axis=0) - poly
        cross = e[:, 0] * np.roll(e[:, 1], -1) - e[:, 1] * np.roll(e[:, 0], -1)
        assert (cross >= -1e-12 * total).all()
    # grid: cell centres, away from every edge
    s = s0 + (np.arange(n_grid) + 0.5) / n_grid * (s1 - s0)
    t = t0 + (np.arange(n_grid) + 0.5) / n_grid * (t1 - t0)
    pts = np.stack(np.meshgrid(s, t, indexing="ij"), -1).reshape(-1, 2)
    a = np.concatenate(polys)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    d = b - a
    lam = np.clip(((pts[:, None] - a) * d).sum(2) / np.maximum((d * d).sum(1), 1e-300), 0, 1)
    dist = np.linalg.norm(pts[:, None] - a - lam[..., None] * d, axis=2).min(1)
    pts = pts[dist > 1e-7]
    inside = np.zeros((len(pts), len(polys)), dtype=bool)
    for k, poly in enumerate(polys):  # ray casting, independent of the library
        xa, ya = poly[:, 0], poly[:, 1]
        xb, yb = np.roll(xa, -1), np.roll(ya, -1)
        px, py = pts[:, :1], pts[:, 1:]
        straddle = (ya > py) != (yb > py)
        xc = xa + (py - ya) * (xb - xa) / np.where(straddle, yb - ya, 1.0)
        inside[:, k] = (straddle & (px < xc)).sum(1) % 2 == 1
    assert (inside.sum(1) == 1).all()
    owner = inside.argmax(1)
    pts_t = torch.as_tensor(pts)
    assert torch.equal(part.locate(pts_t), torch.as_tensor(owner))
    pats = part.net.pattern_vector(part.to_input(pts_t))
    assert torch.equal(pats, part.patterns()[owner])
    # every region lies in one activation region (pre-activations at its vertices, computed by
    # the network, never strictly of both signs), and neighbours differ
    pre = part.net.preactivations(part.to_input(part.vertices))
    z = torch.cat([v.reshape(part.num_vertices, -1) for v in pre.values()], dim=1)
    eps = 1e-9 * z.abs().amax().clamp_min(1e-300)
    idx = part.polygons
    assert not ((z > eps)[idx].any(1) & (z < -eps)[idx].any(1)).any()
    adj = part.adjacency()
    pat = part.patterns()
    assert (pat[adj[:, 0]] != pat[adj[:, 1]]).any(1).all()
    # the network output at the vertices
    out = part.net(part.to_input(part.vertices))
    assert float((out - part.outputs).abs().max()) <= 1e-10 * (1 + float(out.abs().max()))


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(
    data=st.data(),
    bias_free=st.booleans(),
    act=activations,
    extent=st.sampled_from(EXTENTS),
    n_out=st.integers(1, 3),
)
def test_one_hidden_layer_count_is_the_exact_arrangement_count(data, bias_free, act, extent, n_out):
    w1, b1 = data.draw(integer_layer(2, bias_free))
    head = data.draw(integer_layer(len(w1), bias_free))[0][:n_out]
    head = np.resize(head, (n_out, len(w1)))
    model = make_mlp([(w1, b1), (head, np.zeros(n_out))], *act)
    part = reluscope.plane(model, extent=extent)
    assert part.num_regions == arrangement_faces(w1, b1, rect(extent))
    check_partition(part)


@st.composite
def two_layer_case(draw):
    """2 -> n1 -> n2 -> n_out with seeded float weights and one degeneracy (or none).

    Returns the model's layers, the degeneracy, and n1, n2.
    """
    n1, n2, n_out = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    bias_free = draw(st.booleans())
    rng = np.random.default_rng(seed)
    # float32-representable values, so regioncam (float32) sees the same network
    w1 = rng.normal(size=(n1, 2)).astype(np.float32).astype(np.float64)
    b1 = rng.normal(scale=0.5, size=n1).astype(np.float32).astype(np.float64)
    w2 = rng.normal(size=(n2, n1)).astype(np.float32).astype(np.float64)
    b2 = rng.normal(scale=0.5, size=n2).astype(np.float32).astype(np.float64)
    w3 = rng.normal(size=(n_out, n2)).astype(np.float32).astype(np.float64)
    b3 = np.zeros(n_out)
    if bias_free:
        b1, b2 = np.zeros(n1), np.zeros(n2)
    kind = draw(
        st.sampled_from(
            ["none", "zero1", "zero2", "dead1", "dead2", "dup1", "dup2", "scaled1", "zero-row2"]
        )
    )
    if kind == "zero1":
        w1[:] = 0
    elif kind == "zero2":
        w2[:] = 0
    elif kind == "dead1":
        b1[:] = -1000.0
    elif kind == "dead2":
        b2[:] = -1000.0
    elif kind == "dup1":  # a duplicated first-layer neuron: same line, counted once
        w1, b1 = np.concatenate([w1, w1[:1]]), np.concatenate([b1, b1[:1]])
        w2 = np.concatenate([w2, w2[:, :1]], axis=1)
    elif kind == "scaled1":  # a neuron with the same zero set, opposite orientation
        w1, b1 = np.concatenate([w1, -2 * w1[:1]]), np.concatenate([b1, -2 * b1[:1]])
        w2 = np.concatenate([w2, w2[:, :1]], axis=1)
    elif kind == "dup2":
        w2, b2 = np.concatenate([w2, w2[-1:]]), np.concatenate([b2, b2[-1:]])
        w3 = np.concatenate([w3, w3[:, -1:]], axis=1)
    elif kind == "zero-row2":
        w2[0] = 0
    return [(w1, b1), (w2, b2), (w3, b3)], kind


@SETTINGS
@given(case=two_layer_case(), act=activations)
def test_two_hidden_layers_against_structure_and_regioncam(case, act):
    layers, kind = case
    (w1, b1), (w2, b2), (w3, b3) = layers
    model = make_mlp(layers, *act)
    extent = (-1.0, 1.0, -1.0, 1.0)
    part = reluscope.plane(model, extent=extent)
    check_partition(part)
    first = arrangement_faces(w1, b1, rect(extent))
    if kind == "zero1":
        assert part.num_regions == 1
    elif kind == "dead1":
        # every first-layer unit is on its negative side throughout the rectangle, so layer 1
        # is the affine map x -> slope (W1 x + b1): the regions are the arrangement of layer 2's
        # lines composed with it (one region for ReLU, slope 0)
        slope = act[1]
        composed = arrangement_faces(slope * w2 @ w1, slope * w2 @ b1 + b2, rect(extent))
        assert part.num_regions == composed
    elif kind in ("zero2", "dead2"):
        assert part.num_regions == first
    else:
        assert part.num_regions >= first
    reference = layers
    if kind in ("dup1", "dup2"):
        # the same network without the duplicate (its outgoing weights merged into the
        # original's) has the same regions
        if kind == "dup2":
            reference = [(w1, b1), (w2[:-1], b2[:-1]), (w3[:, :-1], b3)]
        else:
            w2r = w2[:, :-1].copy()
            w2r[:, 0] += w2[:, -1]
            reference = [(w1[:-1], b1[:-1]), (w2r, b2), (w3, b3)]
        ref = reluscope.plane(make_mlp(reference, *act), extent=extent)
        assert part.num_regions == ref.num_regions
        assert torch.allclose(part.areas.sort().values, ref.areas.sort().values, atol=1e-13)
    # regioncam on the network (or the one without duplicates: regioncam counts one face too
    # many for a duplicated second-layer neuron in bias-free networks); it panics on a Linear
    # layer with one input and several outputs
    # regioncam also splits twice along two coincident hyperplanes (kind scaled1)
    usable = all(not (w.shape[1] == 1 and w.shape[0] > 1) for w, _ in reference)
    if act[1] >= 0 and kind != "scaled1" and usable:
        regioncam = pytest.importorskip("regioncam")
        cam = regioncam.Regioncam(size=1.0)
        cam.add(make_mlp(reference, *act).float())
        assert part.num_regions == cam.num_faces


def test_a_dead_leaky_relu_layer_is_affine_not_constant():
    """First-layer biases -1000 put every leaky-ReLU unit on its negative side: layer 1 is the
    affine map x -> -0.5 (W1 x + b1), and layer 2 still bends the plane (here once)."""
    rng = np.random.default_rng(154)
    w1 = rng.normal(size=(3, 2)).astype(np.float32).astype(np.float64)
    rng.normal(size=3)  # the biases drawn, then replaced
    w2 = rng.normal(size=(4, 3)).astype(np.float32).astype(np.float64)
    b2 = rng.normal(scale=0.5, size=4).astype(np.float32).astype(np.float64)
    b1 = np.full(3, -1000.0)
    layers = [(w1, b1), (w2, b2), (np.ones((1, 4)), np.zeros(1))]
    extent = (-1.0, 1.0, -1.0, 1.0)
    leaky = reluscope.plane(make_mlp(layers, "leaky_relu", -0.5), extent=extent)
    composed = arrangement_faces(-0.5 * w2 @ w1, -0.5 * w2 @ b1 + b2, rect(extent))
    assert leaky.num_regions == composed == 2
    assert reluscope.plane(make_mlp(layers, "relu", 0.0), extent=extent).num_regions == 1


@SETTINGS
@given(
    data=st.data(),
    act=activations,
    quarter=st.integers(0, 3),
    angle=st.floats(0.05, np.pi / 2 - 0.05),
    scale=st.sampled_from([0.5, 1.0, 3.0]),
    bias_free=st.booleans(),
)
def test_rotated_plane_count_is_the_exact_arrangement_count(
    data, act, quarter, angle, scale, bias_free
):
    """The plane {s u + t v} with u, v a rotation times scale: the rectangle is a rotated square
    in input space, where the integer lines' arrangement is counted exactly."""
    w1, b1 = data.draw(integer_layer(2, bias_free))
    model = make_mlp([(w1, b1), (np.ones((1, len(w1))), np.zeros(1))], *act)
    angle += quarter * np.pi / 2
    c, s = np.cos(angle), np.sin(angle)
    u, v = [scale * c, scale * s], [-scale * s, scale * c]
    half = 1.0 / scale
    part = reluscope.plane(model, [0.0, 0.0], u, v, extent=(-half, half, -half, half))
    check_partition(part)
    corners = part.to_input(torch.tensor(rect(part.extent), dtype=F64)).tolist()
    assert part.num_regions == arrangement_faces(w1, b1, corners)
