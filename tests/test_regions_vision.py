"""Exact regions and local complexity through multi-breakpoint activations and max units.

Ground truth: regioncam (which implements max pooling over a layer), dense grids against the
exact partition (every grid point's pattern equals its region's; no two regions share a
pattern), the breakpoints of the exact 1-D partition against the 1-D co-area limit of LC, and
the sketch estimate (many probes) against the exact method.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reluscope
from reluscope.errors import InputError
from reluscope.measures import local_complexity
from reluscope.nets import trace

F64 = torch.float64


def max_unit_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(2, 12),
        nn.ReLU6(),
        nn.Linear(12, 12),
        nn.Unflatten(1, (2, 6)),
        nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
        nn.Flatten(),
        nn.Hardtanh(-0.3, 0.4),
        nn.Linear(8, 3),
    )


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(3, 4, 3),
        nn.PReLU(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_pool_region_count_equals_regioncam(seed):
    regioncam = pytest.importorskip("regioncam")
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 6))
    model = nn.Sequential(*body, nn.Unflatten(1, (1, 6)), nn.MaxPool1d(6), nn.Flatten())
    part = reluscope.plane(model)
    cam = regioncam.Regioncam(size=1.0)
    cam.add(body)
    cam.max_pool()
    assert part.num_regions == cam.num_faces > 10


def check_partition(part, net, grid: int = 150) -> None:
    pats = part.patterns()
    # one region per pattern: no region was split where no pattern changes
    assert torch.unique(pats, dim=0).shape[0] == part.num_regions
    s0, s1, t0, t1 = part.extent
    gs = torch.linspace(s0, s1, grid + 2, dtype=F64)[1:-1]
    gt = torch.linspace(t0, t1, grid + 2, dtype=F64)[1:-1]
    st = torch.cartesian_prod(gs, gt)
    where = part.locate(st)
    assert bool((where >= 0).all())
    # the pattern is constant inside each region
    assert bool((net.pattern_vector(part.to_input(st)) == pats[where]).all())
    area = (s1 - s0) * (t1 - t0)
    assert float(part.areas.sum()) == pytest.approx(area, rel=1e-9)
    assert bool((part.areas > 0).all())


@pytest.mark.parametrize("seed", [0, 3])
def test_plane_through_activations_and_max_units_matches_dense_grid(seed):
    net = trace(max_unit_net(seed).double().eval(), (2,))
    part = reluscope.plane(net, extent=(-2, 2, -2, 2))
    assert part.num_regions > 30
    check_partition(part, net)
    # the outputs at the vertices are the network's
    assert torch.allclose(part.outputs, net(part.to_input(part.vertices)), atol=1e-10)


def test_conv_maxpool_prelu_plane_matches_dense_grid():
    model = conv_net().double().eval()
    net = trace(model, (1, 6, 6))
    g = torch.Generator().manual_seed(0)
    origin, u, v = (torch.randn(1, 6, 6, generator=g, dtype=F64) for _ in range(3))
    part = reluscope.plane(net, origin, u, v, (-0.5, 0.5, -0.5, 0.5))
    assert part.num_regions > 50
    check_partition(part, net, grid=100)
    with torch.no_grad():
        ref = model(part.to_input(part.vertices))
    assert torch.allclose(part.outputs, ref, atol=1e-10)


def test_line_breakpoints_are_the_pattern_changes():
    net = trace(max_unit_net(1).double().eval(), (2,))
    lp = reluscope.line(net, torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.5]))
    pats = lp.patterns()
    # adjacent pieces differ (no spurious breakpoint) ...
    assert not bool((pats[1:] == pats[:-1]).all(dim=1).any())
    # ... and a dense grid sees a pattern change only across a breakpoint
    tau = torch.linspace(0, 1, 40001, dtype=F64)
    pv = net.pattern_vector(lp.to_input(tau))
    changed = (pv[1:] != pv[:-1]).any(dim=1)
    piece = lp.piece_of(tau)
    assert bool((piece[1:][changed] != piece[:-1][changed]).all())
    assert int(changed.sum()) >= lp.num_pieces - 3  # a grid can miss a very short piece


def test_lc_counts_breakpoints_and_ties_in_one_dimension():
    # co-area in 1-D: for sigma -> 0 and x uniform on [a, b], LC = breakpoints / (b - a)
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(1, 8),
        nn.ReLU6(),
        nn.Linear(8, 6),
        nn.Unflatten(1, (1, 6)),
        nn.MaxPool1d(3, stride=1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )
    with torch.no_grad():
        model[0].weight.mul_(4.0)
    net = trace(model.double().eval(), (1,))
    a, b = -1.5, 1.5
    lp = reluscope.line(net, torch.tensor([a]), torch.tensor([b]))
    expected = (lp.num_pieces - 1) / (b - a)
    assert lp.num_pieces > 6
    # the grid must resolve the kernel: spacing 2e-5 against widths sigma / |grad g|
    x = torch.linspace(a, b, 150001, dtype=F64).reshape(-1, 1)
    lc = local_complexity(net, x, sigma=2e-3, batch_size=50000)
    assert lc.value == pytest.approx(expected, rel=0.01)
    per_site = [lc.per_layer[s.name] * (b - a) for s in net.sites]
    pats = lp.patterns()
    width = net.sites[0].pattern_width
    changes = [
        int((pats[1:, :width] != pats[:-1, :width]).any(1).sum()),
        int((pats[1:, width:] != pats[:-1, width:]).any(1).sum()),
    ]
    assert changes[1] > 0  # ties of the max units are among the breakpoints
    assert per_site == pytest.approx(changes, abs=0.05)


def test_exact_lc_equals_many_probe_sketch_through_max_units():
    net = trace(conv_net().double().eval(), (1, 6, 6))
    x = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    exact = local_complexity(net, x, sigma=0.2, seed=3)
    sketch = local_complexity(net, x, sigma=0.2, seed=3, method="sketch", probes=4000)
    assert exact.extra["truncation_bound"] < 1e-6 * exact.value
    assert sketch.value == pytest.approx(
        exact.value, rel=4 * sketch.extra["probe_stderr"] / sketch.value + 1e-3
    )


def test_max_regions_stops_with_a_clear_message():
    with pytest.raises(InputError, match="max_regions"):
        reluscope.plane(max_unit_net(0), extent=(-2, 2, -2, 2), max_regions=10)


def test_neighborhood_counts_a_max_units_tie_inside_the_hull():
    from reluscope.measures import neighborhood_complexity

    model = nn.Sequential(nn.MaxPool1d(2), nn.Flatten())
    x = torch.tensor([[[0.0, 1e-3, -5.0, 5.0]]], dtype=F64)
    # the tie x0 = x1 is at distance 1e-3 / sqrt(2) from x; the other unit is far from its tie
    wide = neighborhood_complexity(model, x, radius=1e-2, n_vertices=8, input_shape=(1, 4))
    narrow = neighborhood_complexity(model, x, radius=1e-4, n_vertices=8, input_shape=(1, 4))
    assert (wide.value, narrow.value) == (1.0, 0.0)
