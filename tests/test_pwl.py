"""Tests for PWLNet: local affine maps, pre-activations and patterns, input checks, dtype casts.

Ground truth: torch.func Jacobians of the original module, the module's own forward, and
forward hooks on its activation modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from strategies import randomize_bn, small_mlps
from torch import nn
from torch.func import jacrev, vmap

from reluscope.errors import InputError
from reluscope.nets import PWLNet, cnn, mlp, resnet, trace

F64 = torch.float64


# --------------------------------------------------------------------------- models
class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4, bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        h = F.relu(x + self.a(x))
        h = self.bn(x - 0.5 * self.b(h))
        return self.out(F.leaky_relu(h, 0.3) * 2 + 1.0)


class SharedInput(nn.Module):
    """Two activation sites reading the same pre-activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = self.fc(x)
        return self.out(F.relu(h) - F.leaky_relu(h, 0.2))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1, padding_mode="circular")
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.LeakyReLU(1.5)
        self.c2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, padding_mode="reflect")
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        h = self.act(self.bn(self.c1(x)))
        h = self.relu(self.pool(self.c2(h)) + 0.1)
        return self.fc(h.view(h.size(0), -1))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: mlp([4, 7, 6, 3]), (4,)),
    "mlp_no_bias_leaky": (
        lambda: mlp([4, 6, 6, 2], bias=False, activation="leaky_relu", slope=0.1),
        (4,),
    ),
    "leaky_steep_and_negative": (
        lambda: nn.Sequential(
            nn.Linear(3, 6), nn.LeakyReLU(2.5), nn.Linear(6, 6), nn.LeakyReLU(-0.3), nn.Linear(6, 2)
        ),
        (3,),
    ),
    "relu_on_input_and_output": (
        lambda: nn.Sequential(nn.ReLU(), nn.Linear(3, 4), nn.ReLU()),
        (3,),
    ),
    "conv1d_bn": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm1d(3),
            nn.ReLU(),
            nn.AvgPool1d(2, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(3 * 4, 2),
        ),
        (2, 7),
    ),
    "residual": (Residual, (4,)),
    "shared_input": (SharedInput, (3,)),
    "convnet": (ConvNet, (2, 7, 7)),
    "zoo_cnn_bn": (lambda: cnn(1, 8, channels=(2, 3), num_classes=3, batchnorm=True), (1, 8, 8)),
    "zoo_resnet": (lambda: resnet(2, 4, width=3, blocks=2, num_classes=2), (2, 4, 4)),
}


def make(name: str, dtype: torch.dtype = F64) -> tuple[nn.Module, PWLNet, tuple[int, ...]]:
    factory, shape = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = factory()
        randomize_bn(model)
    model = model.eval().to(dtype)
    return model, trace(model, shape), shape


def points(shape, n: int = 6, dtype=F64, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(shape), generator=gen, dtype=dtype)


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Ground truth: the module's Jacobian at each point, as (batch, out, in)."""
    jac = vmap(jacrev(lambda xi: model(xi[None])[0]))(x)
    return jac.reshape(x.shape[0], -1, math.prod(x.shape[1:]))


# --------------------------------------------------------------------------- local_affine
@pytest.mark.parametrize("name", list(MODELS))
def test_local_affine_matches_jacobian_and_output(name):
    model, net, shape = make(name)
    x = points(shape)
    J, c = net.local_affine(x)
    assert J.shape == (len(x), net.output_dim, net.input_dim)
    assert c.shape == (len(x), net.output_dim)
    assert J.dtype == c.dtype == F64
    with torch.no_grad():
        out = model(x).reshape(len(x), -1)
    torch.testing.assert_close(J, jacobian(model, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(
        torch.einsum("boi,bi->bo", J, x.reshape(len(x), -1)) + c, out, rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_local_affine_is_the_map_of_the_region(name):
    model, net, shape = make(name)
    x = points(shape, n=8, seed=2)
    J, c = net.local_affine(x)
    gen = torch.Generator().manual_seed(3)
    same = 0
    for _ in range(3):
        y = x + 1e-7 * torch.randn(x.shape, generator=gen, dtype=F64)
        keep = (net.pattern_vector(y) == net.pattern_vector(x)).all(dim=1)
        same += int(keep.sum())
        with torch.no_grad():
            fy = model(y).reshape(len(y), -1)
        pred = torch.einsum("boi,bi->bo", J, y.reshape(len(y), -1)) + c
        torch.testing.assert_close(pred[keep], fy[keep], rtol=0, atol=1e-10)
        # and the local map there is the same
        Jy, cy = net.local_affine(y[keep])
        torch.testing.assert_close(Jy, J[keep], rtol=0, atol=1e-12)
        torch.testing.assert_close(cy, c[keep], rtol=0, atol=1e-10)
    assert same >= 20  # 24 tries: nearly all stay in their region


def test_local_affine_chunks_and_empty_batch():
    _, net, shape = make("convnet")
    x = points(shape, n=7)
    J, c = net.local_affine(x)
    J2, c2 = net.local_affine(x, chunk_size=3)
    torch.testing.assert_close(J2, J, rtol=0, atol=0)
    torch.testing.assert_close(c2, c, rtol=0, atol=1e-14)
    J0, c0 = net.local_affine(x[:0])
    assert J0.shape == (0, net.output_dim, net.input_dim)
    assert c0.shape == (0, net.output_dim)


def test_local_affine_float32():
    model, net, shape = make("zoo_resnet", torch.float32)
    x = points(shape, dtype=torch.float32)
    J, c = net.local_affine(x)
    assert J.dtype == torch.float32
    torch.testing.assert_close(J, jacobian(model, x), rtol=1e-5, atol=1e-5)


def test_zero_preactivation_counts_as_inactive():
    net = trace(nn.Sequential(nn.LeakyReLU(0.25)), (3,))
    x = torch.tensor([[0.0, 1.0, -2.0]], dtype=F64)
    assert net.pattern_vector(x).tolist() == [[False, True, False]]
    J, c = net.local_affine(x)
    torch.testing.assert_close(J[0], torch.diag(torch.tensor([0.25, 1.0, 0.25], dtype=F64)))
    torch.testing.assert_close(c, torch.zeros(1, 3, dtype=F64))


# --------------------------------------------------------------------------- pre-activations
@pytest.mark.parametrize("name", list(MODELS))
def test_preactivations_pattern_and_vector(name):
    _, net, shape = make(name)
    x = points(shape, n=5)
    pre = net.preactivations(x)
    assert list(pre) == [s.name for s in net.sites]
    for site in net.sites:
        assert pre[site.name].shape == (5,) + site.shape
        assert pre[site.name].dtype == F64
    pat = net.pattern(x)
    assert list(pat) == list(pre)
    for k in pre:
        assert pat[k].dtype == torch.bool
        assert torch.equal(pat[k], pre[k] > 0)
    vec = net.pattern_vector(x)
    assert vec.shape == (5, net.num_neurons)
    assert net.num_neurons == sum(s.size for s in net.sites) > 0
    assert torch.equal(vec, torch.cat([(pre[k] > 0).reshape(5, -1) for k in pre], dim=1))


@pytest.mark.parametrize(
    "name", ["mlp", "leaky_steep_and_negative", "conv1d_bn", "convnet", "zoo_cnn_bn", "zoo_resnet"]
)
def test_preactivations_match_forward_hooks(name):
    model, net, shape = make(name)
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for path, m in model.named_modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):

            def hook(module, args, path=path):
                captured[path] = args[0].detach().clone()

            handles.append(m.register_forward_pre_hook(hook))
    x = points(shape, n=4)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    pre = net.preactivations(x)
    assert set(pre) == set(captured)
    for k in captured:
        torch.testing.assert_close(pre[k], captured[k], rtol=0, atol=1e-12)


def test_sites_sharing_a_preactivation():
    model, net, _ = make("shared_input")
    x = points((3,), n=4)
    pre = net.preactivations(x)
    assert [s.name for s in net.sites] == list(pre) == ["relu", "leaky_relu"]
    assert [s.slope for s in net.sites] == [0.0, 0.2]
    with torch.no_grad():
        h = model.fc(x)
    torch.testing.assert_close(pre["relu"], h, rtol=0, atol=0)
    torch.testing.assert_close(pre["leaky_relu"], h, rtol=0, atol=0)
    assert net.pattern_vector(x).shape == (4, net.num_neurons) == (4, 10)


def test_preactivations_of_a_site_on_the_input():
    _, net, _ = make("relu_on_input_and_output")
    x = points((3,), n=2)
    pre = net.preactivations(x)
    torch.testing.assert_close(pre[net.sites[0].name], x, rtol=0, atol=0)
    assert net.output == net.sites[-1].name


def test_net_without_sites():
    net = trace(nn.Sequential(nn.Linear(3, 2)).double(), (3,))
    x = points((3,), n=4)
    assert net.sites == [] and net.num_neurons == 0
    assert net.preactivations(x) == {}
    assert net.pattern_vector(x).shape == (4, 0)


# --------------------------------------------------------------------------- input checks
BAD_SHAPES = {
    "no_batch_dim": (4,),
    "wrong_features": (2, 5),
    "extra_dim": (2, 4, 1),
    "scalar": (),
}


@pytest.mark.parametrize("method", ["call", "run", "local_affine", "preactivations", "pattern"])
@pytest.mark.parametrize("bad", list(BAD_SHAPES))
def test_wrong_point_shape(method, bad):
    _, net, _ = make("mlp")
    x = torch.zeros(BAD_SHAPES[bad], dtype=F64)
    fn = net if method == "call" else getattr(net, method)
    with pytest.raises(InputError, match=r"expected \(batch, 4\)"):
        fn(x)


def test_wrong_image_shape_message():
    _, net, _ = make("convnet")
    with pytest.raises(InputError) as info:
        net(torch.zeros(3, 2, 7, 6))
    assert "(3, 2, 7, 6)" in str(info.value) and "(batch, 2, 7, 7)" in str(info.value)


@pytest.mark.parametrize("method", ["call", "local_affine", "preactivations", "pattern_vector"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_points(method, value):
    _, net, shape = make("convnet")
    x = points(shape, n=3)
    x[1, 0, 2, 3] = value
    fn = net if method == "call" else getattr(net, method)
    with pytest.raises(InputError, match="NaN or inf"):
        fn(x)


def test_points_are_cast_to_the_net_dtype():
    model, net, _ = make("mlp")
    x = [[0.5, -1.0, 2.0, 0.25]]
    with torch.no_grad():
        expected = model(torch.tensor(x, dtype=F64))
    torch.testing.assert_close(net(x), expected)
    torch.testing.assert_close(net(torch.tensor(x, dtype=torch.float32)), expected)
    assert net(torch.tensor([[1, 2, 3, 4]])).dtype == F64


# --------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("name", list(MODELS))
def test_to_float64_keeps_structure_and_outputs(name):
    _, net32, shape = make(name, torch.float32)
    assert net32.dtype == torch.float32
    net64 = net32.to(dtype=F64)
    assert net64.dtype == F64
    assert net32.dtype == torch.float32  # a copy: the original is unchanged
    assert net64.input_shape == net32.input_shape and net64.output == net32.output
    assert net64.sites == net32.sites
    assert [(n.name, n.op.kind, n.inputs, n.shape, n.path) for n in net64.nodes] == [
        (n.name, n.op.kind, n.inputs, n.shape, n.path) for n in net32.nodes
    ]
    for t in net64._tensors():
        assert t.dtype == F64
    x = points(shape, n=5, dtype=torch.float32)
    y32, y64 = net32(x), net64(x)
    assert y32.dtype == torch.float32 and y64.dtype == F64
    scale = max(1.0, y64.abs().max().item())
    assert (y64 - y32.double()).abs().max().item() <= 1e-6 * scale
    J, c = net64.local_affine(x)
    assert J.dtype == c.dtype == F64
    # float32 -> float64 -> float32 is exact
    back = net64.to(dtype=torch.float32)
    assert torch.equal(back(x), y32)


def test_to_float64_without_parameters():
    net = trace(nn.Sequential(nn.AvgPool1d(2), nn.ReLU()), (1, 6))
    net64 = net.to(dtype=F64)
    assert net64.dtype == F64
    x = points((1, 6), n=2, dtype=torch.float32)
    assert net64(x).dtype == F64
    assert net64.local_affine(x)[0].dtype == F64
    assert net64.to(device="cpu")(x).dtype == F64
    # without a dtype of its own, a parameter-free net keeps the inputs' floating dtype
    assert net(x.double()).dtype == F64 and net(x).dtype == torch.float32
    assert net.to(device="cpu")(x.double()).dtype == F64


# --------------------------------------------------------------------------- property test
@settings(max_examples=40, deadline=None)
@given(small_mlps())
def test_property_random_mlp_local_affine(case):
    model, widths, _, seed = case
    model = model.double()
    x = torch.randn(4, widths[0], dtype=F64, generator=torch.Generator().manual_seed(seed))
    net = trace(model, (widths[0],))
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(net(x), out, rtol=0, atol=1e-12)
    J, c = net.local_affine(x)
    assert J.shape == (4, widths[-1], widths[0])
    torch.testing.assert_close(J, jacobian(model, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.einsum("boi,bi->bo", J, x) + c, out, rtol=0, atol=1e-10)
    assert net.pattern_vector(x).shape == (4, sum(widths[1:-1]))
