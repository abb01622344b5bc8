"""Lipschitz bounds against brute force: dense Jacobians of small networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reluscope.errors import InputError
from reluscope.measures.lipschitz import (
    lipschitz_from_sites,
    lipschitz_to_sites,
    neuron_gradient_bounds,
    operator_norm,
)
from reluscope.nets import cnn, mlp, resnet, trace
from reluscope.nets.ops import AddOp
from reluscope.nets.pwl import INPUT

D = torch.float64


def dense(op, shape):
    """The matrix of ``op.linear`` on inputs of ``shape`` (outputs x inputs, flattened)."""
    x = torch.zeros(shape, dtype=D)
    jac = torch.func.jacrev(lambda v: op.linear(v[None])[0])(x)
    return jac.reshape(-1, x.numel())


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Conv2d(3, 5, 3, stride=2, padding=1), (3, 7, 7)),
        (nn.Conv2d(2, 4, (3, 2), padding=2, dilation=2, groups=2), (2, 5, 6)),
        (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
        (nn.Conv1d(2, 3, 4, stride=3, padding=2), (2, 11)),
        (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 6, 6)),
    ],
)
def test_operator_norm_of_convolutions_is_the_dense_spectral_norm(layer, shape):
    torch.manual_seed(0)
    net = trace(nn.Sequential(layer, nn.ReLU()).double(), shape)
    op = net.nodes[0].op
    want = float(torch.linalg.svdvals(dense(op, shape))[0])
    assert operator_norm(op, shape, safety=1.0) == pytest.approx(want, rel=1e-6)
    assert operator_norm(op, shape) == pytest.approx(1.01 * want, rel=1e-6)


@pytest.mark.parametrize("seed", [11, 68, 74])
def test_operator_norm_is_exact_once_the_krylov_space_fills_the_output(seed):
    # a 2x11 -> 3x4 convolution: 12 Lanczos steps fill the output space; with these weights
    # the Ritz values without the last beta were 0.8% low (seed 74)
    torch.manual_seed(seed)
    net = trace(nn.Sequential(nn.Conv1d(2, 3, 4, stride=3, padding=2), nn.ReLU()).double(), (2, 11))
    op = net.nodes[0].op
    want = float(torch.linalg.svdvals(dense(op, (2, 11)))[0])
    assert operator_norm(op, (2, 11), safety=1.0) == pytest.approx(want, rel=1e-12)


def test_operator_norm_of_linear_and_scalings_is_exact():
    torch.manual_seed(1)
    net = trace(nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9).eval(), nn.ReLU()), (6,))
    w = net.nodes[0].op.weight.double()  # BatchNorm folded into the Linear
    assert operator_norm(net.nodes[0].op, (6,)) == pytest.approx(
        float(torch.linalg.svdvals(w)[0]), rel=1e-12
    )
    with pytest.raises(InputError, match="several inputs"):
        operator_norm(AddOp((1.0, 1.0)), (3,))


def jacobian(fn, x):
    """Dense Jacobian of ``fn`` (batched map) at one point ``x``: (outputs, inputs)."""
    jac = torch.func.jacrev(lambda v: fn(v[None])[0])(x)
    return jac.reshape(-1, x.numel())


def nets():
    return [
        trace(mlp([4, 7, 6, 5, 3], seed=2).double(), (4,)),
        trace(mlp([3, 6, 6, 2], activation="leaky_relu", slope=-1.5, seed=3).double(), (3,)),
        trace(cnn(2, 8, (3, 4), 3, batchnorm=True, seed=4).double(), (2, 8, 8)),
        trace(resnet(2, 6, width=3, blocks=2, num_classes=2, seed=5).double(), (2, 6, 6)),
    ]


def preact_fn(net, site):
    return lambda x: net.preactivations(x)[site]


def from_site_fn(net, site, x):
    """Output as a function of the site's pre-activation, everything else fixed at x."""
    src = net.node(site).inputs[0]

    def run(z):
        values = {INPUT: x[None]}
        for n in net.nodes:
            values[n.name] = n.op.forward(*(values[a] for a in n.inputs))
            if n.name == src:
                values[n.name] = z
        return values[net.output]

    return run


@pytest.mark.parametrize("index", range(4))
def test_lipschitz_bounds_hold_at_random_points(index):
    net = nets()[index]
    to_sites, from_sites = lipschitz_to_sites(net), lipschitz_from_sites(net)
    rows = neuron_gradient_bounds(net)
    gen = torch.Generator().manual_seed(index)
    for x in 2 * torch.randn((8 if index < 2 else 3,) + net.input_shape, generator=gen, dtype=D):
        pre = net.preactivations(x[None])
        for s in net.sites:
            jac = jacobian(preact_fn(net, s.name), x)
            assert float(torch.linalg.svdvals(jac)[0]) <= to_sites[s.name] * (1 + 1e-9)
            assert (jac.norm(dim=1) <= rows[s.name].reshape(-1) * (1 + 1e-9)).all()
            out = torch.func.jacrev(from_site_fn(net, s.name, x))(pre[s.name])
            out = out.reshape(net.output_dim, -1)
            assert float(torch.linalg.svdvals(out)[0]) <= from_sites[s.name] * (1 + 1e-9)


def aligned(out_basis, values, in_basis):
    return out_basis @ torch.diag(values) @ in_basis.T


def test_bounds_are_tight_on_a_linear_chain():
    """Identity activations (leaky slope 1) and aligned singular vectors: equality."""
    gen = torch.Generator().manual_seed(0)
    q = [torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=D))[0] for _ in range(4)]
    s = [torch.sort(torch.rand(5, generator=gen, dtype=D) + 0.5, descending=True)[0] for _ in q]
    weights = [aligned(q[i + 1], s[i], q[i]) for i in range(3)]
    layers = []
    for w in weights:
        lin = nn.Linear(5, 5).double()
        lin.weight.data.copy_(w)
        layers += [lin, nn.LeakyReLU(1.0)]
    net = trace(nn.Sequential(*layers[:-1]), (5,))
    to_sites, from_sites = lipschitz_to_sites(net), lipschitz_from_sites(net)
    x = torch.randn(5, generator=gen, dtype=D)
    first, second = (site.name for site in net.sites)
    jac = jacobian(preact_fn(net, second), x)
    assert to_sites[second] == pytest.approx(float(torch.linalg.svdvals(jac)[0]), rel=1e-6)
    pre = net.preactivations(x[None])[first]
    out = torch.func.jacrev(from_site_fn(net, first, x))(pre).reshape(5, 5)
    assert from_sites[first] == pytest.approx(float(torch.linalg.svdvals(out)[0]), rel=1e-6)
    assert from_sites[first] == pytest.approx(float(s[1][0] * s[2][0]), rel=1e-12)
