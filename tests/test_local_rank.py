"""Site Jacobians and local rank, against torch.func.jacrev on the torch modules (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_helpers import DictDataset, assert_same_result, stream
from torch import nn
from torch.func import jacrev
from torch.utils.data import DataLoader, TensorDataset

import reluscope as rs
from reluscope.measures.jacobians import output_jacobian, site_jacobians
from reluscope.measures.local_rank import LocalRankMeter, local_rank
from reluscope.nets import cnn, mlp, resnet


def preactivation_fn(model: nn.Module, path: str):
    """x (one point) -> the flattened input of the activation module at ``path``, via a hook."""
    module = model.get_submodule(path)

    def f(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        try:
            model(x.unsqueeze(0))
        finally:
            handle.remove()
        return seen[0].reshape(-1)

    return f


def reference_jacobians(model: nn.Module, x: torch.Tensor, path: str) -> torch.Tensor:
    """(batch, n_site, input_dim) by jacrev, one point at a time."""
    f = preactivation_fn(model, path)
    return torch.stack([jacrev(f)(p).reshape(-1, p.numel()) for p in x])


MODELS = {
    "mlp": (lambda: mlp([5, 7, 6, 4, 3], seed=1), (5,)),
    "leaky_mlp": (lambda: mlp([4, 6, 5, 2], activation="leaky_relu", slope=0.2, seed=2), (4,)),
    "cnn": (
        lambda: cnn(in_channels=2, image_size=6, channels=(3, 2), num_classes=3, seed=3),
        (2, 6, 6),
    ),
    "cnn_bn": (
        lambda: cnn(in_channels=1, image_size=4, channels=(2,), batchnorm=True, seed=4),
        (1, 4, 4),
    ),
    "resnet": (
        lambda: resnet(in_channels=1, image_size=4, width=2, blocks=1, num_classes=2, seed=5),
        (1, 4, 4),
    ),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_site_and_output_jacobians_equal_jacrev(kind):
    factory, shape = MODELS[kind]
    model = factory().double()
    x = torch.randn((5,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    net = rs.trace(model, shape)
    jacs = site_jacobians(net, x, chunk_size=2)
    assert list(jacs) == [s.name for s in net.sites]
    for site in net.sites:
        ref = reference_jacobians(model, x, site.name)
        assert jacs[site.name].shape == (5, site.size, net.input_dim)
        torch.testing.assert_close(jacs[site.name], ref, rtol=1e-10, atol=1e-12)
    out_ref = torch.stack([jacrev(lambda p: model(p.unsqueeze(0)).reshape(-1))(p) for p in x])
    torch.testing.assert_close(
        output_jacobian(net, x), out_ref.reshape(5, -1, net.input_dim), rtol=1e-10, atol=1e-12
    )


def test_site_jacobians_of_some_sites_and_single_point():
    model = mlp([3, 4, 4, 2], seed=0).double()
    x = torch.randn(3, dtype=torch.float64)
    jacs = site_jacobians(model, x, sites="1")
    assert list(jacs) == ["1"] and jacs["1"].shape == (1, 4, 3)
    torch.testing.assert_close(jacs["1"][0], model[0].weight)
    with pytest.raises(rs.InputError, match=r"sites \['1', '3'\]"):
        site_jacobians(model, x, sites=["nope"])
    with pytest.raises(rs.InputError, match="chunk_size"):
        site_jacobians(model, x, chunk_size=0)


def test_ranks_equal_brute_force_jacrev_ranks():
    model = mlp([6, 8, 3, 8, 5], seed=7).double()
    x = torch.randn(12, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    meter = LocalRankMeter(model, atol=0.01, batch_size=5)
    meter.update(x)
    res = meter.compute()
    for path in ("1", "3", "5"):
        ranks = torch.linalg.matrix_rank(reference_jacobians(model, x, path), atol=0.01, rtol=0.0)
        assert torch.equal(meter.point_values(x)[path], ranks.double())
        assert res.per_layer[path] == pytest.approx(ranks.double().mean().item())
        sd = ranks.double().std().item() / 12**0.5
        assert res.per_layer_stderr[path] == pytest.approx(sd)
    assert res.name == "local_rank" and res.num_points == 12
    assert res.value == pytest.approx(sum(res.per_layer.values()))  # the total over the sites
    totals = sum(meter.point_values(x)[p] for p in ("1", "3", "5"))
    assert torch.equal(meter.point_values(x)["local_rank"], totals)
    assert res.per_layer["3"] <= 3


def _low_rank(generator: torch.Generator, rows: int, cols: int, rank: int) -> torch.Tensor:
    a = torch.randn(rows, rank, dtype=torch.float64, generator=generator)
    return a @ torch.randn(rank, cols, dtype=torch.float64, generator=generator)


def _set_ranks(model: nn.Sequential, ranks: list[int], generator: torch.Generator) -> None:
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for lin, r in zip(linears, ranks, strict=False):
            if r < min(lin.weight.shape):
                lin.weight.copy_(_low_rank(generator, *lin.weight.shape, r))


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 7), min_size=3, max_size=5),
    ranks=st.lists(st.integers(1, 7), min_size=4, max_size=4),
    seed=st.integers(0, 1000),
)
def test_rank_at_most_earlier_weight_ranks_input_dim_and_width(widths, ranks, seed):
    gen = torch.Generator().manual_seed(seed)
    model = mlp(widths + [2], seed=seed).double()
    _set_ranks(model, ranks, gen)
    x = torch.randn(8, widths[0], dtype=torch.float64, generator=gen)
    meter = LocalRankMeter(model)
    meter.update(x)
    res = meter.compute()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    bound = widths[0]
    for site, lin in zip(meter.sites, linears, strict=False):
        bound = min(bound, int(torch.linalg.matrix_rank(lin.weight)), site.size)
        assert meter.point_values(x)[site.name].max().item() <= bound
        assert res.per_layer[site.name] <= bound


def test_rank_r_first_layer_forces_rank_at_most_r_everywhere():
    gen = torch.Generator().manual_seed(3)
    model = mlp([10, 12, 12, 12, 4], seed=3).double()
    _set_ranks(model, [3], gen)
    x = torch.randn(20, 10, dtype=torch.float64, generator=gen)
    meter = LocalRankMeter(model)
    meter.update(x)
    for site in meter.sites:
        assert meter.point_values(x)[site.name].max().item() <= 3
    assert meter.point_values(x)["1"].min().item() == 3  # the first layer's Jacobian is W_1


def test_tolerances_and_dead_layer():
    model = mlp([5, 6, 6, 2], seed=0).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    assert local_rank(model, x).per_layer["1"] == 5
    assert local_rank(model, x, rtol=1 - 1e-9).per_layer["1"] == 1  # only sigma_max > tol
    assert local_rank(model, x, atol=1e6).value == 0
    with torch.no_grad():
        model[0].bias.fill_(-1e3)  # layer 1 dead everywhere: nothing reaches layer 2
    res = local_rank(model, x)
    assert res.per_layer == {"1": 5.0, "3": 0.0}


def test_layers_selection_dtype_and_cnn():
    model = cnn(in_channels=1, image_size=4, channels=(2, 2), num_classes=3, seed=0)
    x = torch.randn(6, 1, 4, 4)
    full = local_rank(model, x, input_shape=(1, 4, 4), dtype=torch.float64)
    one = local_rank(model, x, layers="1", input_shape=(1, 4, 4), dtype=torch.float64)
    assert one.per_layer == {"1": full.per_layer["1"]} and one.value == full.per_layer["1"]
    assert full.params["dtype"] == "float64"
    assert local_rank(model, x, input_shape=(1, 4, 4)).params["dtype"] == "float32"
    assert list(full.per_layer) == ["1", "4"]
    assert 0 < full.per_layer["1"] <= 16 and full.per_layer["4"] <= 2 * 2 * 2


def test_streaming_over_dataloaders_equals_tensor_call():
    model = mlp([4, 5, 5, 3], seed=2).double()
    x = torch.randn(17, 4, dtype=torch.float64)
    ref = local_rank(model, x, atol=0.1)
    tuples = DataLoader(TensorDataset(x, torch.zeros(17)), batch_size=5)
    assert_same_result(local_rank(model, tuples, atol=0.1), ref)
    assert_same_result(
        local_rank(model, DataLoader(DictDataset(x, "image"), batch_size=4), atol=0.1), ref
    )
    meter = stream(LocalRankMeter(model, atol=0.1, batch_size=3), tuples)
    assert_same_result(meter.compute(), ref)
    meter.reset()
    meter.update(x[:2])
    assert meter.compute().num_points == 2


@pytest.mark.parametrize(
    ("kwargs", "data", "match"),
    [
        (dict(atol=-0.1), None, "atol"),
        (dict(rtol=-1), None, "rtol"),
        (dict(atol=float("nan")), None, "atol"),
        (dict(layers=["9"]), None, r"sites \['1', '3'\]; got \['9'\]"),
        (dict(layers=[]), None, "layers must be a non-empty list"),
        (dict(batch_size=0), None, "batch_size"),
        ({}, torch.randn(4, 5), r"expected \(batch, 3\)"),
        ({}, torch.tensor([[0.0, float("nan"), 1.0]]), "NaN"),
        ({}, torch.tensor([[0.0, float("inf"), 1.0]]), "NaN or inf"),
        ({}, torch.zeros(0, 3), "empty"),
        ({}, [], "empty"),
    ],
)
def test_bad_input(kwargs, data, match):
    model = mlp([3, 4, 4, 2], seed=0)
    data = torch.randn(5, 3) if data is None else data
    with pytest.raises(rs.InputError, match=match):
        local_rank(model, data, **kwargs)


def test_bad_model_and_empty_meter():
    with pytest.raises(rs.InputError, match="no ReLU"):
        local_rank(nn.Linear(3, 2), torch.randn(4, 3))
    with pytest.raises(rs.InputError, match="input shape"):
        LocalRankMeter(cnn(image_size=4, channels=(2,)))
    # the functional form reads a CNN's input shape from a data tensor
    assert local_rank(cnn(image_size=4, channels=(2,)), torch.randn(4, 1, 4, 4)).num_points == 4
    with pytest.raises(rs.InputError, match="before any data"):
        LocalRankMeter(mlp([3, 4, 2])).compute()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    model = mlp([6, 8, 8, 3], seed=0)
    x = torch.randn(16, 6)
    assert_same_result(local_rank(model.cuda(), x), local_rank(model.cpu(), x), rel=1e-6)
