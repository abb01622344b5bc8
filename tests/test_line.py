"""Exact linear pieces along a segment (reluscope.line) checked against ground truth.

Ground truth: patterns of the network at 1e5 evenly spaced samples, closed-form breakpoints of
hand-built networks, and the edges of the exact plane partition crossed by the same segment.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reluscope
from reluscope.errors import InputError
from reluscope.nets import cnn, mlp

F64 = torch.float64
N_SAMPLES = 100_000


# --------------------------------------------------------------------------- helpers


def small_cnn():
    return cnn(in_channels=1, image_size=8, channels=(2, 3), num_classes=4, seed=0)


def randn(shape, seed, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def check_against_samples(part, n: int = N_SAMPLES) -> None:
    """Breakpoints are exactly where the pattern changes along n evenly spaced samples."""
    taus = torch.linspace(0, 1, n, dtype=F64)
    pats = part.net.pattern_vector(part.to_input(taus))
    bp = part.breakpoints
    assert bp[0] == 0 and bp[-1] == 1
    assert (bp[1:] > bp[:-1]).all()
    gap = 1e-9
    # 1. every pattern change between two samples has a breakpoint between them
    change = (pats[1:] != pats[:-1]).any(1).nonzero().flatten()
    for k in change.tolist():
        lo, hi = float(taus[k]) - 1e-12, float(taus[k + 1]) + 1e-12
        assert ((bp >= lo) & (bp <= hi)).any(), f"pattern change in [{lo}, {hi}] missed"
    # 2. samples inside a piece have the piece's pattern (and piece_of finds the piece)
    piece = torch.searchsorted(bp, taus, right=True) - 1
    dist = torch.minimum((taus - bp[piece.clamp(max=len(bp) - 1)]).abs(), torch.ones(()))
    dist = torch.minimum(dist, (bp[(piece + 1).clamp(max=len(bp) - 1)] - taus).abs())
    inner = (dist > gap) & (piece < part.num_pieces)
    stored = part.patterns()
    assert stored.shape == (part.num_pieces, part.net.num_neurons)
    assert torch.equal(pats[inner], stored[piece[inner]])
    assert torch.equal(part.piece_of(taus[inner]), piece[inner])
    # 3. every breakpoint has a pattern change within one sample spacing on each side
    checked = 0
    spacing = 1.0 / (n - 1)
    for b in bp[1:-1].tolist():
        left = int(np.floor((b - 1e-12) / spacing))
        right = int(np.ceil((b + 1e-12) / spacing))
        tl, tr = float(taus[left]), float(taus[right])
        if int(((bp > tl) & (bp < tr)).sum()) != 1:
            continue  # two breakpoints within one spacing: the changes may cancel
        assert (pats[left] != pats[right]).any(), f"no pattern change at breakpoint {b}"
        checked += 1
    assert checked >= 0.9 * (part.num_pieces - 1)
    # 4. neighbouring pieces differ (no spurious breakpoint)
    assert (stored[1:] != stored[:-1]).any(1).all()


def check_maps(part, seed: int = 0) -> None:
    """Outputs at breakpoints and affine maps of pieces agree with the network."""
    truth = part.net(part.to_input(part.breakpoints))
    scale = 1.0 + float(truth.abs().max())
    assert part.outputs.shape == truth.shape
    assert float((part.outputs - truth).abs().max()) <= 1e-10 * scale
    gen = torch.Generator().manual_seed(seed)
    k = part.num_pieces
    lam = torch.rand(k, 3, generator=gen, dtype=F64)
    taus = (
        part.breakpoints[:-1, None] + lam * (part.breakpoints[1:] - part.breakpoints[:-1])[:, None]
    )
    owner = torch.arange(k).repeat_interleave(3)
    x = part.to_input(taus.reshape(-1))
    jac, const = part.affine_maps()
    got = torch.einsum("nod,nd->no", jac[owner], x.reshape(len(x), -1)) + const[owner]
    assert float((got - part.net(x)).abs().max()) <= 1e-10 * scale


def edge_crossings(plane_part, st0: torch.Tensor, st1: torch.Tensor) -> torch.Tensor:
    """Parameters in (0, 1) where the segment st0 -> st1 crosses edges of a plane partition,
    merged within 1e-9."""
    pairs = []
    for p, c in zip(plane_part.polygons.tolist(), plane_part.counts.tolist(), strict=True):
        ring = p[:c]
        pairs += [(min(a, b), max(a, b)) for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    e = torch.tensor(sorted(set(pairs)))
    a, b = plane_part.vertices[e[:, 0]], plane_part.vertices[e[:, 1]]
    d, r = st1 - st0, b - a
    # st0 + tau d = a + s r  ->  [d, -r] (tau, s) = a - st0
    det = d[0] * (-r[:, 1]) - d[1] * (-r[:, 0])
    ok = det.abs() > 1e-14 * d.norm() * r.norm(dim=1)
    w = a - st0
    tau = (w[:, 0] * (-r[:, 1]) - w[:, 1] * (-r[:, 0])) / torch.where(ok, det, 1.0)
    s = (d[0] * w[:, 1] - d[1] * w[:, 0]) / torch.where(ok, det, 1.0)
    hit = ok & (s >= -1e-12) & (s <= 1 + 1e-12) & (tau > 1e-9) & (tau < 1 - 1e-9)
    t = torch.sort(tau[hit]).values
    if len(t) == 0:
        return t
    keep = torch.cat([torch.ones(1, dtype=torch.bool), t[1:] - t[:-1] > 1e-9])
    return t[keep]


def one_layer(weight, bias, head=None) -> nn.Sequential:
    """relu(W x + b) followed by a linear head (all float64)."""
    weight = torch.as_tensor(weight, dtype=F64)
    model = nn.Sequential(
        nn.Linear(weight.shape[1], weight.shape[0]), nn.ReLU(), nn.Linear(weight.shape[0], 1)
    ).double()
    with torch.no_grad():
        model[0].weight.copy_(weight)
        model[0].bias.copy_(torch.as_tensor(bias, dtype=F64))
        if head is not None:
            model[2].weight.copy_(torch.as_tensor(head, dtype=F64).reshape(1, -1))
    return model


# --------------------------------------------------------------------------- sampling


LINE_CASES = {
    "mlp-2-16-16-1": lambda: reluscope.line(mlp([2, 16, 16, 1], seed=0), [-1.0, -0.8], [1.0, 0.9]),
    "mlp-2-32-32-3": lambda: reluscope.line(mlp([2, 32, 32, 3], seed=1), [0.9, -1.0], [-1, 0.7]),
    "leaky": lambda: reluscope.line(
        mlp([2, 16, 16, 1], activation="leaky_relu", slope=0.3, seed=2), [-2.0, 0.0], [2.0, 0.5]
    ),
    "bias-free": lambda: reluscope.line(
        mlp([2, 16, 16, 1], bias=False, seed=3), [-1.0, -0.3], [1.0, 0.4]
    ),
    "deep-10d": lambda: reluscope.line(
        mlp([10, 24, 24, 24, 2], seed=4), randn(10, 1), randn(10, 2)
    ),
    "cnn": lambda: reluscope.line(small_cnn(), randn((1, 8, 8), 3), randn((1, 8, 8), 4)),
}


@pytest.fixture(params=list(LINE_CASES), scope="module")
def seg(request):
    return LINE_CASES[request.param]()


def test_breakpoints_agree_with_fine_sampling(seg):
    assert seg.num_pieces >= 5
    check_against_samples(seg)


def test_outputs_and_affine_maps_agree_with_the_network(seg):
    check_maps(seg)


def test_piece_of_and_midpoints(seg):
    bp = seg.breakpoints
    assert torch.equal(seg.piece_of(seg.midpoints), torch.arange(seg.num_pieces))
    # a breakpoint belongs to the piece on its left; 0 to the first piece
    assert torch.equal(seg.piece_of(bp[1:]), torch.arange(seg.num_pieces))
    assert int(seg.piece_of(bp[:1])[0]) == 0
    assert abs(seg.length - float((seg.end - seg.start).norm())) == 0
    ends = seg.to_input(torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.equal(ends[0], seg.start)
    assert torch.allclose(ends[1], seg.end, rtol=0, atol=1e-14 * (1 + float(seg.end.abs().max())))


def test_cnn_line_agrees_with_the_torch_module():
    part = LINE_CASES["cnn"]()
    model = small_cnn().double()
    with torch.no_grad():
        ref = model(part.to_input(part.breakpoints))
    assert float((ref - part.outputs).abs().max()) <= 1e-9 * (1 + float(ref.abs().max()))


def test_line_with_input_shape_and_flat_points():
    start, end = randn(64, 5), randn(64, 6)
    part = reluscope.line(small_cnn(), start, end, input_shape=(1, 8, 8))
    assert part.start.shape == (1, 8, 8)
    ref = reluscope.line(small_cnn(), start.reshape(1, 8, 8), end.reshape(1, 8, 8))
    assert torch.equal(part.breakpoints, ref.breakpoints)
    check_against_samples(part, 20_000)


# --------------------------------------------------------------------------- against the plane


def plane_and_segment(which: str):
    if which == "mlp":
        plane = reluscope.plane(mlp([2, 16, 16, 16, 1], seed=5))
        model = plane.net
    else:
        q, _ = torch.linalg.qr(randn((64, 2), 6))
        origin = randn((1, 8, 8), 7)
        u, v = q[:, 0].reshape(1, 8, 8), q[:, 1].reshape(1, 8, 8)
        plane = reluscope.plane(small_cnn(), origin, u, v, extent=(-1.5, 1.5, -1.0, 1.0))
        model = plane.net
    return plane, model


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_breakpoints_equal_the_plane_edges_crossed(which):
    plane, model = plane_and_segment(which)
    gen = torch.Generator().manual_seed(8)
    s0, s1, t0, t1 = plane.extent
    lo = torch.tensor([s0, t0], dtype=F64)
    hi = torch.tensor([s1, t1], dtype=F64)
    for _ in range(4):
        st = lo + (hi - lo) * (0.02 + 0.96 * torch.rand(2, 2, generator=gen, dtype=F64))
        part = reluscope.line(model, plane.to_input(st[:1])[0], plane.to_input(st[1:])[0])
        crossings = edge_crossings(plane, st[0], st[1])
        inner = part.breakpoints[1:-1]
        assert len(inner) == len(crossings)
        assert float((inner - crossings).abs().max(0).values) <= 1e-9 if len(inner) else True
        # each piece lies in the plane region with the same pattern
        mid = st[0] + part.midpoints[:, None] * (st[1] - st[0])
        region = plane.locate(mid)
        assert (region >= 0).all()
        assert torch.equal(part.patterns(), plane.patterns()[region])
        assert (region[1:] != region[:-1]).all()


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_segment_through_plane_vertices(which):
    """Segments from vertex to vertex of the plane partition, and short segments centred on a
    vertex, pass exactly through places where several neurons vanish at once; each such place
    is one breakpoint, with no empty piece."""
    plane, model = plane_and_segment(which)
    # interior vertices where at least 4 regions meet: two or more zero sets cross there
    meet = torch.zeros(plane.num_vertices, dtype=torch.long)
    for p, c in zip(plane.polygons.tolist(), plane.counts.tolist(), strict=True):
        meet[sorted(set(p[:c]))] += 1
    s0, s1, t0, t1 = plane.extent
    vx = plane.vertices
    m = 0.05
    interior = (vx[:, 0] > s0 + m) & (vx[:, 0] < s1 - m) & (vx[:, 1] > t0 + m) & (vx[:, 1] < t1 - m)
    idx = (interior & (meet >= 4)).nonzero().flatten()
    assert len(idx) >= 6
    gen = torch.Generator().manual_seed(9)
    segments = []
    for _ in range(6):
        a, b = idx[torch.randperm(len(idx), generator=gen)[:2]]
        segments.append((vx[a], vx[b]))
        angle = 2 * np.pi * float(torch.rand((), generator=gen, dtype=F64))
        d = m * torch.tensor([np.cos(angle), np.sin(angle)], dtype=F64)
        segments.append((vx[a] - d, vx[a] + d))  # through the vertex at tau = 1/2
    for st0, st1 in segments:
        part = reluscope.line(model, plane.to_input(st0[None])[0], plane.to_input(st1[None])[0])
        widths = part.breakpoints[1:] - part.breakpoints[:-1]
        assert float(widths.min()) > 1e-9, "an empty piece"
        crossings = edge_crossings(plane, st0, st1)
        inner = part.breakpoints[1:-1]
        assert len(inner) == len(crossings)
        if len(inner):
            assert float((inner - crossings).abs().max()) <= 1e-9
        check_maps(part)
        stored = part.patterns()
        assert (stored[1:] != stored[:-1]).any(1).all()


# --------------------------------------------------------------------------- closed form


def test_single_neuron_breakpoint_is_exact():
    gen = torch.Generator().manual_seed(10)
    for _ in range(5):
        w = torch.randn(5, generator=gen, dtype=F64)
        b = float(torch.randn((), generator=gen, dtype=F64))
        a, e = torch.randn(5, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64)
        za, ze = float(w @ a + b), float(w @ e + b)
        if za * ze > 0:  # make the segment cross the hyperplane
            e = e - (ze + np.sign(ze) * 0.5) / float(w @ w) * w
            ze = float(w @ e + b)
        tau = za / (za - ze)  # exact: w.(a + tau (e - a)) + b = 0
        part = reluscope.line(one_layer(w[None], [b]), a, e)
        assert part.num_pieces == 2
        assert part.breakpoints[0] == 0 and part.breakpoints[2] == 1
        assert abs(float(part.breakpoints[1]) - tau) <= 1e-14
        # the neuron is off on one piece, on the other
        pats = part.patterns()[:, 0].tolist()
        assert pats == [za > 0, ze > 0]


@pytest.mark.parametrize(
    "start,end,expected",
    [
        ([-1.0, 0.0], [3.0, 0.0], [0.0, 0.25, 1.0]),  # crosses x = 0 at a quarter
        ([0.5, 0.0], [3.0, 1.0], [0.0, 1.0]),  # never crosses
        ([0.0, -1.0], [2.0, 5.0], [0.0, 1.0]),  # starts on the zero set
        ([2.0, 1.0], [0.0, -1.0], [0.0, 1.0]),  # ends on the zero set
        ([0.0, -1.0], [0.0, 1.0], [0.0, 1.0]),  # runs inside the zero set
    ],
)
def test_breakpoints_of_relu_x(start, end, expected):
    part = reluscope.line(one_layer([[1.0, 0.0]], [0.0]), start, end)
    assert part.breakpoints.tolist() == expected


def test_two_layer_closed_form_and_leaky():
    # f(x) = relu(relu(x) - 0.5) on x in [-1, 2]: kinks at x = 0 and x = 0.5
    for act, slope in ((nn.ReLU(), 0.0), (nn.LeakyReLU(0.25), 0.25)):
        model = nn.Sequential(nn.Linear(1, 1), act, nn.Linear(1, 1), act).double()
        with torch.no_grad():
            model[0].weight.fill_(1.0)
            model[0].bias.fill_(0.0)
            model[2].weight.fill_(1.0)
            model[2].bias.fill_(-0.5)
        part = reluscope.line(model, [-1.0], [2.0])
        assert part.num_pieces == 3
        assert torch.allclose(part.breakpoints, torch.tensor([0, 1 / 3, 0.5, 1], dtype=F64))
        jac, const = part.affine_maps()
        s = slope
        # slopes: x<0: s*s ; 0<x<0.5: s ; x>0.5: 1
        assert torch.allclose(jac[:, 0, 0], torch.tensor([s * s, s, 1.0], dtype=F64))
        assert torch.allclose(const[:, 0], torch.tensor([-0.5 * s, -0.5 * s, -0.5], dtype=F64))


def test_second_layer_neuron_identically_zero_on_a_piece():
    # relu(relu(x)): the second neuron is exactly 0 wherever the first is off
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1), nn.ReLU()).double()
    with torch.no_grad():
        for k in (0, 2):
            model[k].weight.fill_(1.0)
            model[k].bias.fill_(0.0)
    part = reluscope.line(model, [-1.0], [2.0])
    assert part.breakpoints.tolist() == pytest.approx([0.0, 1 / 3, 1.0], abs=1e-15)


def test_neurons_vanishing_at_the_same_point_give_one_breakpoint():
    """Regression: two neurons of one layer whose zero sets meet the segment at the same point
    used to give two breakpoints 1e-17 apart (an empty piece)."""
    w = torch.tensor([[1.0, 0.3], [0.7, -1.0], [0.1, 0.9]], dtype=F64)
    b = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
    p = torch.linalg.solve(w[:2], -b[:2])  # neurons 0 and 1 vanish at p
    model = one_layer(w, b)
    for d in ([0.3, 0.7], [1.0, 0.0], [0.123, -0.77], [-0.4, 0.01]):
        d = torch.tensor(d, dtype=F64)
        for far in (1.0, 2.1, 0.37):
            part = reluscope.line(model, p - d, p + far * d)
            widths = part.breakpoints[1:] - part.breakpoints[:-1]
            assert float(widths.min()) > 1e-9, part.breakpoints.tolist()
            near = (part.breakpoints - 1 / (1 + far)).abs() < 1e-12
            assert int(near.sum()) == 1
            pats = part.patterns()
            assert (pats[1:] != pats[:-1]).any(1).all()
    # duplicated neurons (identical rows) cross at the same computed point: one breakpoint
    dup = one_layer(torch.cat([w, w[:1]]), torch.cat([b, b[:1]]))
    part = reluscope.line(dup, [-1.0, -1.0], [1.0, 1.0])
    ref = reluscope.line(model, [-1.0, -1.0], [1.0, 1.0])
    assert torch.equal(part.breakpoints, ref.breakpoints)


def test_segment_inside_a_zero_set_is_not_split_by_rounding_noise():
    """Regression: along 0.1 x + 0.3 y = 0 the first neuron is only rounding noise (+-5e-17);
    its tolerance was relative to that noise, so the noise's sign change made a breakpoint."""
    w = torch.tensor([[0.1, 0.3], [1.0, 0.2], [-0.4, 0.9]], dtype=F64)
    b = torch.tensor([0.0, 0.3, -0.2], dtype=F64)
    part = reluscope.line(one_layer(w, b), [3.0, -1.0], [-3.0, 1.0])
    # (x, y) = (3 - 6 tau, -1 + 2 tau): neuron 1 is 3.1 - 5.6 tau, neuron 2 is 4.2 tau - 2.3
    expected = [2.3 / 4.2, 3.1 / 5.6]
    assert part.num_pieces == 3
    assert part.breakpoints[1:-1].tolist() == pytest.approx(expected, abs=1e-14)


def test_python_floats_are_not_rounded_to_float32():
    part = reluscope.line(one_layer([[1.0, 0.0]], [0.0]), [0.1, 0.3], [0.7, 0.9])
    assert part.start.tolist() == [0.1, 0.3] and part.end.tolist() == [0.7, 0.9]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "start,end,words",
    [
        ([0.0, 0.0, 0.0], [1.0, 1.0], ["start", "3 values", "(2,)"]),
        ([0.0, 0.0], [1.0], ["end", "1 values", "(2,)"]),
        ([0.5, 0.5], [0.5, 0.5], ["coincide"]),
        ([float("nan"), 0.5], [0.5, 0.5], ["start", "NaN"]),
        ([0.0, 0.5], [float("inf"), 0.5], ["end", "inf"]),
        ("ab", [0.0, 0.0], ["start", "ab"]),
        ([0.0, 0.0], None, ["end", "None"]),
        ([], [0.0, 0.0], ["start", "empty"]),
    ],
)
def test_line_bad_input(start, end, words):
    with pytest.raises(InputError) as err:
        reluscope.line(mlp([2, 8, 1], seed=0), start, end)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_line_nan_weights():
    model = mlp([2, 8, 8, 1], seed=0)
    with torch.no_grad():
        model[0].bias[2] = float("nan")
    with pytest.raises(InputError, match=r"'0.bias' holds .*NaN"):
        reluscope.line(model, [0.0, 0.0], [1.0, 1.0])


def test_line_conv_model_shape_errors():
    # a flat start cannot be the shape of a conv input: the error names the shape tried
    with pytest.raises(InputError, match=r"\(64,\)"):
        reluscope.line(small_cnn(), torch.zeros(64), torch.ones(64))
    with pytest.raises(InputError, match=r"end has 63 values.*\(1, 8, 8\)"):
        reluscope.line(small_cnn(), torch.zeros(1, 8, 8), torch.ones(63))
