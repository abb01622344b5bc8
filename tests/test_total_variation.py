"""Total variation against jacrev, the LC-TV bound on random networks, the count B, streaming."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_helpers import DictDataset, assert_same_result, stream
from torch import nn
from torch.func import jacrev
from torch.utils.data import DataLoader, TensorDataset

import reluscope as rs
from reluscope.measures.jacobians import site_jacobians
from reluscope.measures.lipschitz import lipschitz_from_sites
from reluscope.measures.total_variation import (
    TotalVariationMeter,
    c_eta,
    factoring_sites,
    total_variation,
)
from reluscope.nets import cnn, mlp, resnet

OUTPUTS = ["logits", 1, "predicted", "norm"]


def reference_norms(model: nn.Module, x: torch.Tensor, output) -> torch.Tensor:
    """Per point ||grad_x f(x)|| by jacrev of the module itself."""

    def f(p: torch.Tensor) -> torch.Tensor:
        out = model(p.unsqueeze(0)).reshape(-1)
        if output == "logits":
            return out
        if output == "norm":
            return out.norm()
        if output == "predicted":
            return out[model(p.unsqueeze(0)).reshape(-1).argmax()]
        return out[output]

    return torch.stack([jacrev(f)(p).reshape(-1).norm() for p in x])


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("kind", ["mlp", "leaky_mlp", "cnn"])
def test_tv_equals_mean_jacrev_norm(kind, output):
    gen = torch.Generator().manual_seed(0)
    if kind == "cnn":
        model, shape = cnn(in_channels=1, image_size=6, channels=(3, 2), num_classes=3), (1, 6, 6)
    else:
        act = "leaky_relu" if kind == "leaky_mlp" else "relu"
        model, shape = mlp([5, 9, 7, 3], activation=act, slope=0.1, seed=1), (5,)
    model = model.double()
    x = torch.randn((20,) + shape, dtype=torch.float64, generator=gen)
    res = total_variation(model, x, output=output, input_shape=shape, batch_size=7)
    ref = reference_norms(model, x, output)
    assert res.name == "tv" and res.num_points == 20 and res.params["output"] == output
    assert res.value == pytest.approx(ref.mean().item(), rel=1e-10)
    assert res.stderr == pytest.approx(ref.std().item() / math.sqrt(20), rel=1e-8)


def test_norm_output_is_zero_where_the_output_vanishes():
    model = mlp([3, 4, 2], bias=False, seed=0).double()
    res = total_variation(model, torch.zeros(2, 3), output="norm")
    assert res.value == 0.0


def test_bound_quantities():
    model = mlp([4, 10, 8, 6, 3], seed=2).double()
    x = torch.randn(15, 4, dtype=torch.float64)
    res = total_variation(model, x, eta=1.0, sigma=1.0)
    net = rs.trace(model, (4,))
    lips = lipschitz_from_sites(net)
    jacs = site_jacobians(net, x)
    for name in lips:
        assert res.layer_extra["lipschitz"][name] == lips[name]
        op = torch.linalg.matrix_norm(jacs[name], ord=2).mean().item()
        assert res.layer_extra["jacobian_op_norm"][name] == pytest.approx(op, rel=1e-12)
        tv = torch.linalg.matrix_norm(jacs[name]).mean().item()  # the site's own TV
        assert res.per_layer[name] == pytest.approx(tv, rel=1e-12)
    lip_max = max(lips.values())
    assert res.extra["lipschitz_above"] == lip_max
    mean_op = sum(res.layer_extra["jacobian_op_norm"][n] for n in lips) / 3
    assert res.extra["tv_bound"] == pytest.approx(math.sqrt(3) * lip_max * mean_op)
    assert res.extra["c_eta"] == pytest.approx(math.exp(-0.5) / math.sqrt(2 * math.pi))
    scalar = total_variation(model, x, output=0, eta=0.02, sigma=0.01)
    assert scalar.extra["tv_bound"] == pytest.approx(lip_max * mean_op)
    assert scalar.extra["c_eta"] == pytest.approx(math.exp(-2) / (math.sqrt(2 * math.pi) * 0.01))
    assert total_variation(model, x).extra["c_eta"] == 0.0  # exp(-5000) underflows
    assert c_eta(0.5, 2.0) == pytest.approx(math.exp(-1 / 32) / (2 * math.sqrt(2 * math.pi)))
    sub = total_variation(model, x, layers=["3"])
    assert sub.extra["tv_bound"] == pytest.approx(
        math.sqrt(3) * lips["3"] * res.layer_extra["jacobian_op_norm"]["3"]
    )
    assert total_variation(model, x, bound=False).extra == {}
    assert {(r["metric"], r["layer"]) for r in res.to_records()} >= {
        ("tv", None),
        ("tv", "1"),
        ("tv.tv_bound", None),
        ("tv.B", None),
        ("tv.lipschitz", "1"),
    }


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    n_in=st.integers(1, 6),
    n_out=st.integers(1, 4),
    scale=st.floats(0.3, 3.0),
    leaky=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_tv_bound_holds_on_random_mlps(widths, n_in, n_out, scale, leaky, seed):
    act = "leaky_relu" if leaky else "relu"
    model = mlp(
        [n_in] + widths + [n_out], activation=act, slope=0.3, init_multiplier=scale, seed=seed
    )
    x = torch.randn(16, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for output in ("logits", n_out - 1, "predicted", "norm"):
        res = total_variation(model, x, output=output, dtype=torch.float64)
        assert res.value <= res.extra["tv_bound"] * (1 + 1e-9)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_tv_bound_holds_on_a_small_cnn(batchnorm):
    model = cnn(in_channels=2, image_size=8, channels=(4, 3), batchnorm=batchnorm, seed=3)
    net = rs.trace(model, (2, 8, 8)).to(dtype=torch.float64)
    x = torch.randn(12, 2, 8, 8, dtype=torch.float64)
    res = total_variation(net, x)  # the bound's Lanczos norms are computed once, here
    assert 0 < res.value <= res.extra["tv_bound"]
    scalar_bound = res.extra["tv_bound"] / math.sqrt(10)  # min(output_dim, input_dim) = 10
    for output in OUTPUTS[1:]:
        assert 0 < total_variation(net, x, output=output, bound=False).value <= scalar_bound


def test_resnet_bound_uses_the_sites_outside_residual_branches():
    model = resnet(in_channels=1, image_size=4, width=3, blocks=2, num_classes=3, seed=1)
    net = rs.trace(model, (1, 4, 4))
    assert [s.name for s in factoring_sites(net)] == ["2", "3.relu", "4.relu"]
    x = torch.randn(10, 1, 4, 4, dtype=torch.float64)
    for output in OUTPUTS:
        res = total_variation(net, x, output=output, dtype=torch.float64)
        assert res.params["layers"] == ["2", "3.relu", "4.relu"]
        assert 0 < res.value <= res.extra["tv_bound"]
    with pytest.raises(rs.InputError, match=r"\['3.body.2'\] lie on residual branches"):
        total_variation(net, x, layers=["2", "3.body.2"])
    assert total_variation(net, x, layers=["3.body.2"], bound=False).extra == {}


def test_b_is_zero_for_wide_random_nets():
    model = mlp([20, 128, 128, 128, 10], seed=4)
    x = torch.randn(200, 20)
    assert total_variation(model, x, output="predicted").extra["B"] == 0.0


def _dead_net() -> nn.Sequential:
    """1-D input. Site 1 (2 neurons): x - 1, x - 2, all inactive iff x <= 1. Site 3 (3 neurons):
    h1 + h2 - 1 each, all inactive iff x <= 2. Site 5: 4 neurons."""
    model = mlp([1, 2, 3, 4, 1], seed=0).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.copy_(torch.tensor([-1.0, -2.0]))
        model[2].weight.fill_(1.0)
        model[2].bias.fill_(-1.0)
    return model


def test_b_equals_a_hand_count_with_dead_layers():
    x = torch.tensor([[0.0], [1.5], [3.0]], dtype=torch.float64)
    # x = 0: site 1 dead -> sites 3 and 5 not good (3 + 4); x = 1.5: site 3 dead -> site 5 (4)
    meter = TotalVariationMeter(_dead_net())
    meter.update(x)
    assert meter.point_values(x)["bad_neurons"].tolist() == [7.0, 4.0, 0.0]
    assert meter.compute().extra["B"] == pytest.approx(11 / 3)
    # counting only site 5, still after any fully inactive earlier site
    assert total_variation(_dead_net(), x, layers=["5"]).extra["B"] == pytest.approx(8 / 3)


def test_streaming_over_dataloaders_equals_tensor_call():
    model = mlp([4, 6, 6, 2], seed=5).double()
    x = torch.randn(19, 4, dtype=torch.float64)
    ref = total_variation(model, x, output="predicted")
    tuples = DataLoader(TensorDataset(torch.zeros(19), x), batch_size=6)
    assert_same_result(total_variation(model, tuples, output="predicted", input_key=1), ref)
    assert_same_result(
        total_variation(model, DataLoader(DictDataset(x, "x"), batch_size=4), output="predicted"),
        ref,
    )
    meter = stream(
        TotalVariationMeter(model, output="predicted", batch_size=5, input_key=1), tuples
    )
    assert_same_result(meter.compute(), ref)
    meter.reset()
    with pytest.raises(rs.InputError, match="before any data"):
        meter.compute()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(output="softmax"), r"unknown output 'softmax'.*'logits', 'predicted', 'norm'"),
        (dict(output=2), r"2 outputs, expected 0 <= output < 2"),
        (dict(output=-1), "0 <= output"),
        (dict(output=True), "unknown output"),
        (dict(output=1.0), "unknown output"),
        (dict(eta=0.0), "eta"),
        (dict(eta=-1.0), "eta"),
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(bound="yes"), "bound"),
        (dict(layers=["relu"]), r"sites \['1', '3'\]"),
        (dict(dtype=torch.int64), "dtype must be torch.float32 or torch.float64"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(rs.InputError, match=match):
        total_variation(mlp([3, 4, 4, 2]), torch.randn(5, 3), **kwargs)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (torch.randn(5, 2), r"expected \(batch, 3\)"),
        (torch.full((2, 3), float("inf")), "NaN or inf"),
        (torch.zeros(0, 3), "empty"),
        ([], "empty"),
        (DataLoader(TensorDataset(torch.randn(4, 3)), batch_size=2), None),
    ],
)
def test_bad_data(data, match):
    model = mlp([3, 4, 4, 2])
    if match is None:  # a DataLoader with tuples of inputs only is fine
        assert total_variation(model, data).num_points == 4
        return
    with pytest.raises(rs.InputError, match=match):
        total_variation(model, data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    model = mlp([6, 16, 16, 3], seed=0).double()
    x = torch.randn(32, 6, dtype=torch.float64)
    gpu = total_variation(model.cuda(), x)
    cpu = total_variation(model.cpu(), x)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-10)
    assert gpu.extra["tv_bound"] == pytest.approx(cpu.extra["tv_bound"], rel=1e-8)


# ------------------------------------------------------------------ vision activations
def _vision_cnn() -> nn.Sequential:
    """ReLU6, max pooling, Hardtanh(-0.5, 1.5) and per-channel PReLU in one small CNN."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU6(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2),
        nn.Hardtanh(-0.5, 1.5),
        nn.Flatten(),
        nn.Linear(16, 5),
        nn.PReLU(5, init=0.3),
        nn.Linear(5, 3),
    )
    with torch.no_grad():
        model[7].weight.copy_(torch.tensor([0.3, -0.2, 0.0, 1.5, 0.05]))
    return model.double().eval()


@pytest.mark.parametrize("output", OUTPUTS)
def test_tv_through_vision_layers_equals_mean_jacrev_norm(output):
    model = _vision_cnn()
    x = 2 * torch.randn(
        25, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    res = total_variation(model, x, output=output, input_shape=(1, 6, 6), batch_size=8)
    ref = reference_norms(model, x, output)
    assert res.value == pytest.approx(ref.mean().item(), rel=1e-10)
    net = rs.trace(model, (1, 6, 6))
    jacs = site_jacobians(net, x)
    for site in net.sites:  # each site's TV: the mean Frobenius norm of its Jacobian
        assert res.per_layer[site.name] == pytest.approx(
            torch.linalg.matrix_norm(jacs[site.name]).mean().item(), rel=1e-10
        )


def _module_is_flat(module: nn.Module, z: torch.Tensor, h: float = 1e-4) -> bool:
    """Brute force: the module's output does not move when any single entry of its input ``z``
    (one sample, batch first) moves by +h or -h."""
    flat = z.reshape(-1)
    steps = h * torch.eye(len(flat), dtype=z.dtype)
    moved = torch.cat([flat + steps, flat - steps]).reshape((-1,) + z.shape[1:])
    return bool((module(moved) == module(z)).all())


def _brute_force_b(model: nn.Sequential, x: torch.Tensor) -> list[float]:
    """Per point: the number of pre-activation entries of the activation and pooling modules
    after the first one that is flat there (by :func:`_module_is_flat`)."""
    kinds = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.PReLU, nn.MaxPool2d)
    counts = []
    for point in x:
        h, blocked, count = point.unsqueeze(0), False, 0
        for module in model:
            if isinstance(module, kinds):
                count += h.numel() if blocked else 0
                blocked = blocked or _module_is_flat(module, h)
            h = module(h)
        counts.append(float(count))
    return counts


def _flat_ends_net() -> nn.Sequential:
    """1-D input. Site "1" (ReLU6 of x, x - 1, x - 2) blocks iff x <= 0 (all at 0) or x > 8 (all
    at 6). Site "3" (Hardtanh(-1, 2) of 4 units mean(site 1) - 0.5 ... - 2) blocks when all its
    units are below -1 or all above 2, e.g. at x = 7 (upper end). Then max pooling (8 -> 2
    units, site "6") and PReLU (site "9", 3 units), which never block."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Linear(1, 3),
        nn.ReLU6(),
        nn.Linear(3, 4),
        nn.Hardtanh(-1.0, 2.0),
        nn.Linear(4, 8),
        nn.Unflatten(1, (2, 2, 2)),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2, 3),
        nn.PReLU(3, init=0.2),
        nn.Linear(3, 2),
    ).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
        model[2].weight.fill_(1 / 3)
        model[2].bias.copy_(torch.tensor([-0.5, -1.0, -1.5, -2.0]))
    return model.eval()


def test_b_counts_the_flat_ends_of_relu6_and_hardtanh_and_never_pooling_or_prelu():
    model = _flat_ends_net()
    net = rs.trace(model, (1,))
    assert [s.name for s in net.sites] == ["1", "3", "6", "9"]
    # x = -1: site 1 at 0 -> 4 + 8 + 3 not good; x = 7: site 3 all above 2 -> 8 + 3;
    # x = 9: site 1 all at 6 -> 15; x = 3: nothing blocks
    x = torch.tensor([[-1.0], [7.0], [9.0], [3.0]], dtype=torch.float64)
    meter = TotalVariationMeter(net)
    assert meter.point_values(x)["bad_neurons"].tolist() == [15.0, 11.0, 15.0, 0.0]
    # off the breakpoints, where the op's convention (a breakpoint takes the piece below it)
    # and the two-sided brute force would differ
    grid = torch.linspace(-3, 12, 61, dtype=torch.float64).unsqueeze(1) + 0.01
    assert meter.point_values(grid)["bad_neurons"].tolist() == _brute_force_b(model, grid)


def test_not_good_neurons_have_locally_constant_preactivations():
    """Dense evaluation: around a point where neurons are not good, their pre-activations do
    not move on a small interval of inputs."""
    model = _flat_ends_net()
    net = rs.trace(model, (1,))
    for x0 in (-1.0, 7.0, 9.0):
        around = x0 + torch.linspace(-1e-3, 1e-3, 11, dtype=torch.float64).unsqueeze(1)
        pre = net.preactivations(around)
        for name in ("6", "9"):
            assert torch.equal(pre[name], pre[name][:1].expand_as(pre[name]))
    around = 3.0 + torch.linspace(-1e-3, 1e-3, 11, dtype=torch.float64).unsqueeze(1)
    assert not torch.equal(net.preactivations(around)["9"][0], net.preactivations(around)["9"][1])


@pytest.mark.parametrize("module", [nn.ReLU6(), nn.Hardtanh(-0.5, 1.5), nn.PReLU(3, 0.1)])
def test_site_blocks_where_the_module_is_flat(module):
    net = rs.trace(nn.Sequential(nn.Linear(2, 3), module, nn.Linear(3, 1)).double(), (2,))
    op = net.sites[0].op
    z = 4 * torch.randn(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z[:20] = 7.0 + torch.rand(20, 3, dtype=torch.float64)  # all on the upper end
    z[20:40] = -3.0 - torch.rand(20, 3, dtype=torch.float64)  # all on the lower end
    want = [_module_is_flat(module.double(), zi.unsqueeze(0)) for zi in z]
    assert op.blocks(z).tolist() == want
    assert any(want) == (not isinstance(module, nn.PReLU))


def test_max_pooling_never_blocks():
    op = rs.trace(nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), (2, 4, 4)).sites[0].op
    z = -torch.rand(5, 2, 4, 4)
    assert not op.blocks(z).any()
    assert not _module_is_flat(nn.MaxPool2d(2), z[:1])


class _DeadBranch(nn.Module):
    """h = relu(fc1 x); out = relu(h + fc2(relu(branch h - 100))); a residual branch that is
    blocked everywhere, around which the signal still reaches the last site."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.fc1 = nn.Linear(2, 4)
        self.branch = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc1.bias.fill_(5.0)
            self.branch.bias.fill_(-100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        out = torch.relu(h + self.fc2(torch.relu(self.branch(h))))
        return self.head(out)


def test_a_residual_connection_around_a_blocking_site_keeps_later_neurons_good():
    model = _DeadBranch().double().eval()
    net = rs.trace(model, (2,))
    first, branch, last = (s.name for s in net.sites)
    x = torch.rand(6, 2, dtype=torch.float64)  # fc1 > 0 here: the first site never blocks
    assert net.sites[1].op.blocks(net.preactivations(x)[branch]).all()
    meter = TotalVariationMeter(net)  # the sites outside the branch: first and last
    assert meter.site_names == [first, last]
    assert meter.point_values(x)["bad_neurons"].tolist() == [0.0] * 6
    # the last site's pre-activation moves with the input: its neurons can bend the function
    jac = site_jacobians(net, x)[last]
    assert (torch.linalg.matrix_norm(jac) > 0).all()
