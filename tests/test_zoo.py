"""Tests for the seeded model zoo."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reluscope.errors import InputError
from reluscope.nets.zoo import ZOO, BasicBlock, cnn, mlp, resnet

ALLOWED = (
    nn.Sequential,
    nn.Linear,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.AvgPool2d,
    nn.Flatten,
    BasicBlock,
)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_zoo_names():
    assert ZOO == {"mlp": mlp, "cnn": cnn, "resnet": resnet}


def test_mlp_layers_and_widths():
    model = mlp([2, 64, 32, 1])
    assert isinstance(model, nn.Sequential)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    shapes = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(2, 64), (64, 32), (32, 1)]
    assert all(m.bias is not None for m in model if isinstance(m, nn.Linear))
    assert not model.training
    assert model(torch.zeros(5, 2)).shape == (5, 1)


def test_mlp_two_widths_is_single_linear():
    model = mlp((3, 4))
    assert [type(m) for m in model] == [nn.Linear]


def test_mlp_matches_pytorch_default_init():
    torch.manual_seed(7)
    ref = nn.Linear(3, 5)
    model = mlp([3, 5], seed=7)
    assert torch.equal(model[0].weight, ref.weight)
    assert torch.equal(model[0].bias, ref.bias)


def test_mlp_no_bias_and_leaky():
    model = mlp([2, 8, 1], bias=False, activation="leaky_relu", slope=0.2)
    assert model[0].bias is None and model[2].bias is None
    assert isinstance(model[1], nn.LeakyReLU)
    assert model[1].negative_slope == 0.2
    assert model[1].inplace is False


def test_mlp_seed_determinism():
    a, b, c = mlp([2, 16, 1], seed=3), mlp([2, 16, 1], seed=3), mlp([2, 16, 1], seed=4)
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b), strict=True))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_zoo_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mlp([2, 8, 1], seed=5)
    cnn(seed=5, batchnorm=True)
    resnet(width=4, blocks=1, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_mlp_init_multiplier_multiplies_exactly():
    base = mlp([2, 16, 16, 1], seed=1)
    scaled = mlp([2, 16, 16, 1], seed=1, init_multiplier=2.5)
    for p, q in zip(_params(base), _params(scaled), strict=True):
        assert torch.equal(q, p * 2.5)
    assert len(_params(base)) == 6  # weights and biases both scaled


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"widths": [3]}, "[3]"),
        ({"widths": 5}, "5"),
        ({"widths": [2, 0, 1]}, "0"),
        ({"widths": [2, 1.5, 1]}, "1.5"),
        ({"widths": [2, 1], "activation": "tanh"}, "tanh"),
        ({"widths": [2, 1], "init_multiplier": 0}, "init_multiplier"),
        ({"widths": [2, 1], "init_multiplier": -1.0}, "-1.0"),
        ({"widths": [2, 1], "init_multiplier": math.nan}, "nan"),
        ({"widths": [2, 1], "slope": math.inf}, "inf"),
        ({"widths": [2, 1], "bias": "yes"}, "yes"),
    ],
)
def test_mlp_errors(kwargs, needle):
    with pytest.raises(InputError) as info:
        mlp(**kwargs)
    assert needle in str(info.value)


def test_mlp_unknown_activation_lists_expected():
    with pytest.raises(InputError, match="relu.*leaky_relu"):
        mlp([2, 1], activation="gelu")


def test_cnn_shapes():
    model = cnn()
    assert not model.training
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 8), (8, 16)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert model[-1].in_features == 16 * 7 * 7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    small = cnn(in_channels=3, image_size=9, channels=(4,), num_classes=2, bias=False)
    assert small[-1].in_features == 4 * 4 * 4
    assert small(torch.zeros(2, 3, 9, 9)).shape == (2, 2)
    assert small[0].bias is None


def test_cnn_batchnorm_nontrivial():
    model = cnn(batchnorm=True, seed=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2
    for bn in bns:
        assert bn.running_mean.abs().min() > 0
        assert (bn.running_var > 0).all() and not torch.allclose(bn.running_var, torch.ones(1))


def test_cnn_errors():
    with pytest.raises(InputError, match="image_size 3"):
        cnn(image_size=3, channels=(4, 4))
    with pytest.raises(InputError, match="-2"):
        cnn(channels=(4, -2))


def test_resnet_shapes_and_structure():
    model = resnet(in_channels=3, image_size=16, width=8, blocks=2, num_classes=5)
    assert not model.training
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    blocks = [m for m in model if isinstance(m, BasicBlock)]
    assert len(blocks) == 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 2 * 2
    assert isinstance(model[-3], nn.AvgPool2d) and model[-3].kernel_size == 16
    assert model[-1].in_features == 8

    plain = resnet(width=4, blocks=0, batchnorm=False, bias=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert plain(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_resnet_batchnorm_nontrivial_and_seeded():
    model = resnet(width=4, blocks=1, seed=0)
    other = resnet(width=4, blocks=1, seed=1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        assert not torch.allclose(bn.running_mean, torch.zeros(4))
        assert (bn.running_var > 0).all()
        assert not torch.allclose(bn.running_var, torch.ones(4))
        assert not torch.allclose(bn.weight, torch.ones(4))
        assert not torch.allclose(bn.bias, torch.zeros(4))
    bn0 = bns[0]
    bn1 = next(m for m in other.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(bn0.running_mean, bn1.running_mean)
    again = resnet(width=4, blocks=1, seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_basic_block_is_residual():
    block = resnet(width=4, blocks=1, image_size=8)[3]
    assert isinstance(block, BasicBlock)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), torch.relu(x + block.body(x)))


@pytest.mark.parametrize(
    "model",
    [
        mlp([2, 4, 1], activation="leaky_relu"),
        cnn(batchnorm=True),
        resnet(width=4, blocks=2),
    ],
)
def test_only_supported_modules(model):
    for name, module in model.named_modules():
        assert isinstance(module, ALLOWED), name
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            assert module.inplace is False
        assert not module.training


def test_mlp_converts_with_regioncam():
    regioncam = pytest.importorskip("regioncam")
    model = mlp([2, 8, 8, 1], seed=0)
    converted = regioncam.nn.convert(model)
    cam = regioncam.Regioncam(size=2)
    cam.add(converted)
    assert cam.num_faces > 1
