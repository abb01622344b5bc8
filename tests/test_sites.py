"""Ground truth for the piecewise-linear sites beyond ReLU: multi-breakpoint activations
(ReLU6, Hardtanh, clamp), PReLU (per channel) and max units (max pooling), and the new affine ops
(AdaptiveAvgPool, mean, cat, nearest Upsample, padding).

Ground truth: torch's own modules (forward), torch.func Jacobians (local affine maps), finite
differences inside a region, and brute-force window enumeration for max pooling.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from reluscope.nets import trace
from reluscope.nets.sites import ActivationOp, MaxPoolOp

F64 = torch.float64


class CatMeanNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 1)
        self.prelu = nn.PReLU(5)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        h = torch.cat([F.relu6(self.a(x)), torch.clamp(self.b(x), -0.3, 0.4)], dim=1)
        h = self.pad(self.up(self.prelu(h)))
        h = F.max_pool2d(h, 3, stride=2, padding=1, ceil_mode=True)
        h = F.hardtanh(h, -0.5, 0.8) + h.clip(min=0.1)
        return self.fc(h.mean(dim=(2, 3)))


MODELS = {
    "relu6_hardtanh_mlp": (
        lambda: nn.Sequential(
            nn.Linear(3, 8), nn.ReLU6(), nn.Linear(8, 8), nn.Hardtanh(-0.5, 0.7), nn.Linear(8, 2)
        ),
        (3,),
    ),
    "prelu_maxpool1d": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1),
            nn.PReLU(4),
            nn.MaxPool1d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(16, 2),
        ),
        (2, 6),
    ),
    "maxpool2d_dilated_adaptive": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
            nn.AdaptiveAvgPool2d((2, 3)),
            nn.Flatten(),
            nn.Linear(18, 2),
        ),
        (1, 7, 7),
    ),
    "cat_mean_upsample_pad": (CatMeanNet, (2, 5, 5)),
    "avgpool_count_include_pad": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3),
            nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(18, 2),
        ),
        (1, 8, 8),
    ),
}


def make(name):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = factory().double().eval()
    return model, trace(model, shape), shape


@pytest.mark.parametrize("name", list(MODELS))
def test_traced_outputs_match_to_float64_precision(name):
    model, net, shape = make(name)
    x = torch.randn((16,) + shape, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_local_affine_equals_jacobian_and_model(name):
    model, net, shape = make(name)
    x = torch.randn((6,) + shape, dtype=F64)
    jac, const = net.local_affine(x)
    true = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0], xi) for xi in x]
    )
    assert torch.allclose(jac, true.reshape(jac.shape), atol=1e-10)
    out = model(x).reshape(len(x), -1)
    assert torch.allclose(torch.einsum("boi,bi->bo", jac, x.reshape(len(x), -1)) + const, out)


@pytest.mark.parametrize("name", list(MODELS))
def test_affine_map_holds_on_points_with_the_same_pattern(name):
    model, net, shape = make(name)
    torch.manual_seed(1)
    x = torch.randn((1,) + shape, dtype=F64)
    jac, const = net.local_affine(x)
    pattern = net.pattern_vector(x)
    hits = 0
    for scale in (1e-3, 1e-4, 1e-5):
        y = x + scale * torch.randn((20,) + shape, dtype=F64)
        same = (net.pattern_vector(y) == pattern).all(dim=1)
        pred = torch.einsum("oi,bi->bo", jac[0], y.reshape(len(y), -1)) + const[0]
        with torch.no_grad():
            out = model(y).reshape(len(y), -1)
        assert torch.allclose(pred[same], out[same], atol=1e-9)
        hits += int(same.sum())
    assert hits > 0


@given(
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    ceil=st.booleans(),
    size=st.integers(5, 9),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_max_pool_windows_enumerate_the_candidates(kernel, stride, dilation, ceil, size, data):
    padding = data.draw(st.integers(0, kernel // 2))
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        return
    dims = data.draw(st.sampled_from([1, 2]))
    op = MaxPoolOp.create(dims, kernel, stride, padding, dilation, ceil)
    shape = (2, size, size + 1) if dims == 2 else (2, size)
    z = torch.randn((3,) + shape, dtype=F64)
    cand = op.candidates(z)
    assert torch.equal(cand.amax(dim=2), op.forward(z).reshape(3, -1))
    # the leader torch returns is a candidate with the maximal value
    lead = op.local(z)
    t = torch.randn((3, 5) + shape, dtype=F64)
    pushed = op.push(lead, t).reshape(3, 5, -1)
    g, p, q = op.boundaries(z)
    assert torch.all(g[torch.isfinite(g)] >= 0)  # the leader is maximal
    flat_z = torch.cat([z.reshape(3, -1), torch.zeros(3, 1, dtype=F64)], dim=1)
    finite = torch.isfinite(g)
    assert torch.allclose(
        g[finite], (flat_z.gather(1, p) - flat_z.gather(1, q % flat_z.shape[1]))[finite]
    )
    # push and pull are transposes of each other
    c = torch.randn((3,) + tuple(op.forward(z).shape[1:]), dtype=F64)
    lhs = (pushed * c.reshape(3, 1, -1)).sum(2)
    rhs = (t.reshape(3, 5, -1) * op.pull(lead, c, tuple(z.shape[1:])).reshape(3, 1, -1)).sum(2)
    assert torch.allclose(lhs, rhs)


@pytest.mark.parametrize(
    ("module", "op"),
    [
        (nn.ReLU6(), ActivationOp.clamp(0.0, 6.0)),
        (nn.Hardtanh(-2.0, 0.5), ActivationOp.clamp(-2.0, 0.5)),
        (nn.LeakyReLU(0.1), ActivationOp.leaky(0.1)),
    ],
)
def test_activation_forward_and_slopes(module, op):
    z = torch.linspace(-8, 8, 1001, dtype=F64).reshape(1, -1)
    assert torch.equal(op.forward(z), module(z))
    fd = (module(z + 1e-6) - module(z - 1e-6)) / 2e-6
    away = (z.unsqueeze(-1) - torch.tensor(op.breakpoints, dtype=F64)).abs().amin(-1) > 1e-3
    assert torch.allclose(op.local(z)[away], fd[away], atol=1e-6)


def test_general_activation_formula_matches_piecewise_definition():
    slopes = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    op = ActivationOp(breakpoints=(-1.0, 1.0), slopes=slopes, value=3.0)
    z = torch.tensor([[-3.0, -1.0, 0.0, 1.0, 2.0]], dtype=F64)
    expected = torch.tensor([[2.0, 3.0, 2.0, 1.0, 3.0]], dtype=F64)
    assert torch.allclose(op.forward(z), expected)
    assert op.pattern_width((5,)) == 10


def test_per_channel_prelu_uses_each_channels_slope():
    torch.manual_seed(0)
    m = nn.PReLU(3).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.1, -0.5, 2.0]))
    net = trace(nn.Sequential(m), (3, 4))
    x = torch.randn(5, 3, 4, dtype=F64)
    jac, _ = net.local_affine(x)
    diag = jac.diagonal(dim1=1, dim2=2).reshape(5, 3, 4)
    expected = torch.where(x > 0, 1.0, m.weight.detach().reshape(1, 3, 1))
    assert torch.allclose(diag, expected)


def test_max_pooling_is_no_longer_called_not_piecewise_linear():
    net = trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten()), (1, 6, 6))
    assert [s.op.kind for s in net.sites] == ["max_pool"]
