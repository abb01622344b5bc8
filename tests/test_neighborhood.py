"""Neighbourhood (cross-polytope) complexity: exact first-layer counts, monotonicity, streaming."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_helpers import DictDataset, assert_same_result, stream
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reluscope as rs
from reluscope.measures.jacobians import site_jacobians
from reluscope.measures.neighborhood import (
    NeighborhoodMeter,
    cross_polytope,
    neighborhood_complexity,
    orthonormal_frame,
)
from reluscope.nets import cnn, mlp


def first_layer_crossings(model, x, radius, n_vertices, seed=0, input_shape=None):
    """Per point, the number of first-site hyperplanes w.y + b = 0 that meet the cross-polytope.

    The minimum and maximum of w.y + b over conv(V_x) are attained at vertices:
    w.x + b -+ r max_p |w.v_p|, so the hyperplane meets it iff |w.x + b| < r max_p |w.v_p|.
    """
    net = rs.nets.as_pwlnet(model, input_shape)
    site = net.sites[0].name
    z = net.preactivations(x)[site].reshape(len(x), -1)
    w = site_jacobians(net, x, site)[site]  # (batch, n, d): the rows w of each hyperplane
    frame = orthonormal_frame(net.input_dim, n_vertices // 2, seed)
    reach = radius * (w @ frame.T).abs().amax(dim=2)
    return (z.abs() < reach).sum(dim=1).double()


def per_point(model, x, radius, n_vertices=8, **kwargs) -> NeighborhoodMeter:
    meter = NeighborhoodMeter(model, radius=radius, n_vertices=n_vertices, **kwargs)
    meter.update(x)
    return meter


def test_frame_is_orthonormal_seeded_and_dtype_independent():
    f = orthonormal_frame(7, 5, seed=3)
    torch.testing.assert_close(f @ f.T, torch.eye(5, dtype=torch.float64))
    assert torch.equal(f, orthonormal_frame(7, 5, seed=3))
    assert not torch.equal(f, orthonormal_frame(7, 5, seed=4))
    assert torch.equal(orthonormal_frame(7, 5, seed=3, dtype=torch.float32), f.float())
    # vertices: x + r v_p for every p, then x - r v_p, then the centre x
    x = torch.zeros(2, 7, dtype=torch.float64)
    v = cross_polytope(x, f, 0.5, include_center=True)
    assert v.shape == (2, 11, 7)
    torch.testing.assert_close(v[0, :5], 0.5 * f)
    torch.testing.assert_close(v[0, 5:10], -0.5 * f)
    assert torch.equal(v[0, 10], x[0])


@pytest.mark.parametrize(
    ("model", "shape", "n_vertices"),
    [
        (mlp([6, 20, 10, 3], seed=0), (6,), 8),
        (mlp([4, 30, 2], seed=1), (4,), 8),
        (cnn(in_channels=1, image_size=4, channels=(3,), num_classes=2, seed=2), (1, 4, 4), 10),
    ],
)
def test_first_layer_count_is_exact(model, shape, n_vertices):
    model = model.double()
    x = torch.randn((30,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for radius in (0.05, 0.3, 1.5):
        meter = per_point(model, x, radius, n_vertices, input_shape=shape)
        first = meter.sites[0].name
        expected = first_layer_crossings(model, x, radius, n_vertices, input_shape=shape)
        assert torch.equal(meter.point_values(x)[first], expected)
    assert 0 < expected.mean() < meter.sites[0].size


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 8), min_size=2, max_size=4),
    radii=st.lists(st.floats(1e-3, 5.0), min_size=2, max_size=4),
    n_directions=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_first_layer_count_is_monotone_in_radius(widths, radii, n_directions, seed):
    d = 3
    model = mlp([d] + widths + [2], seed=seed).double()
    x = torch.randn(10, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    counts = []
    for r in sorted(radii):
        meter = per_point(model, x, r, 2 * n_directions, seed=seed)
        counts.append(meter.point_values(x)["1"])
        assert torch.equal(counts[-1], first_layer_crossings(model, x, r, 2 * n_directions, seed))
    for smaller, larger in zip(counts, counts[1:], strict=False):
        assert (smaller <= larger).all()


def _abs_net() -> nn.Sequential:
    """1-D input; site 1: relu(x), relu(-x); site 2: |x| - 0.5."""
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
        model[2].bias.fill_(-0.5)
    return model.double()


def test_deeper_layers_are_approximate_and_not_monotone():
    # Around x = 0.1 the zero set {|y| = 0.5} of site 3 meets [x - r, x + r] for both radii,
    # but at r = 1 both vertices lie outside it: only the first layer is exact.
    x = torch.tensor([[0.1]], dtype=torch.float64)
    small = neighborhood_complexity(_abs_net(), x, radius=0.5, n_vertices=2)
    large = neighborhood_complexity(_abs_net(), x, radius=1.0, n_vertices=2)
    assert small.per_layer == {"1": 2.0, "3": 1.0}
    assert large.per_layer == {"1": 2.0, "3": 0.0}
    with_center = neighborhood_complexity(
        _abs_net(), x, radius=1.0, n_vertices=3, include_center=True
    )
    assert with_center.per_layer == {"1": 2.0, "3": 1.0}


def test_center_never_changes_the_first_layer_and_only_adds():
    model = mlp([5, 12, 12, 2], seed=4).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    without = per_point(model, x, 0.7, 8)
    with_center = per_point(model, x, 0.7, 9, include_center=True)
    assert with_center.n_directions == without.n_directions == 4
    assert torch.equal(with_center.point_values(x)["1"], without.point_values(x)["1"])
    assert (with_center.point_values(x)["3"] >= without.point_values(x)["3"]).all()


def test_result_fields_and_layers():
    model = mlp([5, 10, 6, 2], seed=5)
    x = torch.randn(25, 5)
    res = neighborhood_complexity(model, x, radius=0.5, n_vertices=6)
    assert res.name == "neighborhood" and res.num_points == 25
    assert res.value == pytest.approx(sum(res.per_layer.values()))
    assert res.layer_extra["fraction"]["1"] == pytest.approx(res.per_layer["1"] / 10)
    assert res.layer_extra["fraction"]["3"] == pytest.approx(res.per_layer["3"] / 6)
    assert res.extra["fraction"] == pytest.approx(res.value / 16)
    assert res.stderr > 0 and set(res.per_layer_stderr) == {"1", "3"}
    assert res.params["n_directions"] == 3 and res.params["dtype"] == "float32"
    one = neighborhood_complexity(model, x, radius=0.5, n_vertices=6, layers=["3"])
    assert one.per_layer == {"3": res.per_layer["3"]} and one.value == res.per_layer["3"]
    records = res.to_records(split="train")
    assert {(r["metric"], r["layer"]) for r in records} >= {
        ("neighborhood", None),
        ("neighborhood", "1"),
        ("neighborhood.fraction", "1"),
    }


def test_float32_model_float64_option_and_batch_size_invariance():
    model = mlp([4, 16, 16, 2], seed=6)
    x = torch.randn(33, 4)
    a = neighborhood_complexity(
        model, x, radius=0.4, n_vertices=4, batch_size=5, dtype=torch.float64
    )
    b = neighborhood_complexity(
        model, x, radius=0.4, n_vertices=4, batch_size=64, dtype=torch.float64
    )
    assert_same_result(a, b)
    assert a.params["dtype"] == "float64"
    c = neighborhood_complexity(model, x, radius=0.4, n_vertices=4)
    assert c.params["dtype"] == "float32"
    assert c.value == pytest.approx(a.value, abs=0.2)


def test_streaming_over_dataloaders_equals_tensor_call():
    model = mlp([4, 8, 8, 2], seed=7).double()
    x = torch.randn(21, 4, dtype=torch.float64)
    ref = neighborhood_complexity(model, x, radius=0.3, n_vertices=6)
    tuples = DataLoader(TensorDataset(x, torch.zeros(21)), batch_size=8)
    assert_same_result(neighborhood_complexity(model, tuples, radius=0.3, n_vertices=6), ref)
    dicts = DataLoader(DictDataset(x, "pixels"), batch_size=5)
    assert_same_result(
        neighborhood_complexity(model, dicts, radius=0.3, n_vertices=6, input_key="pixels"), ref
    )
    meter = stream(
        NeighborhoodMeter(model, radius=0.3, n_vertices=6, batch_size=2, input_key="pixels"), dicts
    )
    assert_same_result(meter.compute(), ref)
    meter.reset()
    meter.update(x[0])  # a single point
    assert meter.compute().num_points == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(radius=0.0), "radius"),
        (dict(radius=-1.0), "radius"),
        (dict(radius=float("nan")), "radius"),
        (dict(radius=float("inf")), "radius"),
        (dict(radius="big"), "radius"),
        (dict(n_vertices=1), "n_vertices"),
        (dict(n_vertices=0), "n_vertices"),
        (dict(n_vertices=5), "even"),
        (dict(n_vertices=4, include_center=True), "odd"),
        (dict(n_vertices=1, include_center=True), "odd"),
        (dict(n_vertices=8), "only 3 dimensions"),
        (dict(n_vertices=2.0), "integer"),
        (dict(seed=-1), "seed"),
        (dict(include_center=1), "include_center"),
        (dict(layers=["0"]), r"sites \['1', '3'\]"),
    ],
)
def test_bad_options(kwargs, match):
    args = dict(radius=0.5, n_vertices=4) | kwargs
    with pytest.raises(rs.InputError, match=match):
        neighborhood_complexity(mlp([3, 4, 4, 2]), torch.randn(5, 3), **args)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (torch.randn(5, 4), r"expected \(batch, 3\)"),
        (torch.tensor([[1.0, float("nan"), 0.0]]), "NaN"),
        (torch.zeros(0, 3), "empty"),
        (DataLoader(TensorDataset(torch.zeros(0, 3)), batch_size=2), "empty"),
        (DataLoader([{"a": torch.zeros(3)}], batch_size=1), "input_key"),
    ],
)
def test_bad_data(data, match):
    with pytest.raises(rs.InputError, match=match):
        neighborhood_complexity(mlp([3, 4, 4, 2]), data, radius=0.5, n_vertices=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    model = mlp([6, 32, 32, 3], seed=0).double()
    x = torch.randn(50, 6, dtype=torch.float64)
    gpu = neighborhood_complexity(model.cuda(), x, radius=0.5, n_vertices=10)
    assert_same_result(
        gpu, neighborhood_complexity(model.cpu(), x, radius=0.5, n_vertices=10), rel=1e-6
    )
