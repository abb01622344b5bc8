"""Tests for reluscope.nets.trace: the traced PWLNet reproduces the module, or the tracer refuses.

Ground truth is always the original nn.Module's own forward.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import randomize_bn, small_mlps
from torch import nn

from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.nets import SUPPORTED, cnn, mlp, resnet, trace
from reluscope.nets.ops import BatchNormOp, ScaleShiftOp
from reluscope.nets.sites import ActivationOp


# --------------------------------------------------------------------------- helpers
def build(factory: Callable[[], nn.Module], input_shape, seed: int = 0) -> nn.Module:
    """The model, in eval mode, with random BN statistics and LazyLinear materialized."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory().eval()
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape)))  # materialize LazyLinear
        randomize_bn(model)
    return model


def assert_forward_equal(model: nn.Module, input_shape, dtype: torch.dtype) -> None:
    model = model.to(dtype)
    net = trace(model, input_shape)
    assert net.input_shape == tuple(input_shape)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((9,) + tuple(input_shape), generator=gen, dtype=dtype)
    with torch.no_grad():
        expected = model(x)
        got = net(x)
    assert got.dtype == dtype
    assert got.shape == expected.shape
    assert net.output_shape == tuple(expected.shape[1:])
    # absolute tolerance on outputs of order 1 (relative for the rare larger ones)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    scale = max(1.0, expected.abs().max().item())
    err = (got - expected).abs().max().item()
    assert err <= tol * scale, f"max error {err:.3g} > {tol * scale:.3g}"


# --------------------------------------------------------------------------- custom modules
class Residual(nn.Module):
    """relu(x + body(x)), then x - h, then 0.5 scaling and friends."""

    def __init__(self, d: int = 5) -> None:
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
        self.c = nn.Linear(d, 3)

    def forward(self, x):
        h = F.relu(x + self.a(x))
        h = x - self.b(h)
        h = 0.5 * torch.relu(h) + h * 0.25 - h / 4.0
        h = -h + 1.0
        return self.c(h - 2)


class ConvResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = self.stem(x).relu()
        h = torch.relu(h + self.body(h))
        h = h.view(h.size(0), -1)
        return self.head(h)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3)
        self.fc = nn.Linear(3 * 6, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = torch.flatten(h, 1)
        h = F.leaky_relu(self.fc(h), 0.2)
        h = h.reshape(-1, 4)
        return self.out(torch.relu(h))


class AddThenBN(nn.Module):
    """BatchNorm after a residual add and after an activation (nothing to fold into)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.bn2 = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.bn(x + self.fc(x))
        return self.out(self.bn2(F.relu(h)))


class SharedConv(nn.Module):
    """A conv whose output feeds a BatchNorm and a residual: the BN cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        h = self.conv(x)
        h = F.relu(self.bn(h) + h)
        return self.fc(h.flatten(1))


def conv2d_net(**kw) -> Callable[[], nn.Module]:
    def make():
        conv = nn.Conv2d(4, 6, 3, **kw)
        return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))

    return make


# Conv2d(4 -> 6, k=3) variants on 4x9x8 inputs
CONV2D = {
    "plain": {},
    "stride2_pad1": {"stride": 2, "padding": 1},
    "dilation2_pad2": {"dilation": 2, "padding": 2},
    "groups2_same": {"padding": "same", "groups": 2},
    "mixed_tuple": {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2), "groups": 2},
    "reflect": {"padding": 1, "padding_mode": "reflect"},
    "circular_stride2": {"padding": (2, 1), "stride": 2, "padding_mode": "circular"},
    "replicate_dilated": {"padding": 2, "dilation": 2, "padding_mode": "replicate"},
    "reflect_same_groups": {"padding": "same", "groups": 2, "padding_mode": "reflect"},
    "no_bias_depthwise": {"groups": 2, "bias": False, "padding": 1},
}

CONV1D = {
    "plain": {},
    "stride2_pad1": {"stride": 2, "padding": 1},
    "dilation3": {"dilation": 3, "padding": 3},
    "groups3": {"groups": 3, "padding": 1},
    "reflect": {"padding": 2, "padding_mode": "reflect"},
    "circular_same": {"padding": "same", "padding_mode": "circular"},
    "no_bias": {"bias": False, "stride": 3},
}


def _conv1d(**kw):
    def make():
        return nn.Sequential(
            nn.Conv1d(3, 6, 3, **kw), nn.LeakyReLU(0.3), nn.Flatten(), nn.LazyLinear(2)
        )

    return make


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "linear": (lambda: nn.Linear(5, 3), (5,)),
    "linear_3d_input": (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (2, 4)),
    "conv2d_bare": (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5)),
    "mlp_relu": (lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)), (5,)),
    "mlp_no_bias": (
        lambda: nn.Sequential(
            nn.Linear(5, 8, bias=False),
            nn.ReLU(),
            nn.Linear(8, 8, bias=False),
            nn.LeakyReLU(0.1),
            nn.Linear(8, 3, bias=False),
        ),
        (5,),
    ),
    **{
        f"leaky_{s}": (
            lambda s=s: nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(s), nn.Linear(6, 2)),
            (4,),
        )
        for s in (0.0, 0.01, 0.5, 1.0, 2.5, -0.3)
    },
    **{f"conv2d_{k}": (conv2d_net(**kw), (4, 9, 8)) for k, kw in CONV2D.items()},
    **{f"conv1d_{k}": (_conv1d(**kw), (3, 11)) for k, kw in CONV1D.items()},
    "bn1d_after_linear": (
        lambda: nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)),
        (5,),
    ),
    "bn1d_after_linear_no_bias_no_affine": (
        lambda: nn.Sequential(
            nn.Linear(5, 6, bias=False),
            nn.BatchNorm1d(6, affine=False),
            nn.ReLU(),
            nn.Linear(6, 2, bias=False),
        ),
        (5,),
    ),
    "bn1d_after_conv1d": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 2)
        ),
        (2, 8),
    ),
    "bn1d_on_3d_linear_output": (
        # Linear acts on the last dim (4 features), BN on dim 1 (4 channels): must not be folded
        lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten()),
        (4, 4),
    ),
    "bn2d_after_conv": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 2, 3, stride=2),
            nn.BatchNorm2d(2),
            nn.Flatten(),
        ),
        (3, 7, 7),
    ),
    "bn2d_first": (
        lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten()),
        (3, 5, 5),
    ),
    "bn1d_first": (lambda: nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)), (4,)),
    "bn_only_no_parameters": (
        # no parameters at all: dtype and device must come from the running statistics
        lambda: nn.Sequential(nn.BatchNorm2d(3, affine=False), nn.ReLU(), nn.Flatten()),
        (3, 2, 2),
    ),
    "bn_after_add_and_relu": (AddThenBN, (4,)),
    "bn_shared_conv": (SharedConv, (3, 4, 4)),
    "bn_twice": (
        lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.BatchNorm1d(4)),
        (3,),
    ),
    "avgpool2d_plain": (lambda: nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), (2, 6, 7)),
    "avgpool2d_variants": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, 1),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            nn.ReLU(),
            nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 0), count_include_pad=True),
            nn.AvgPool2d(2, divisor_override=3, ceil_mode=True),
            nn.Flatten(),
        ),
        (2, 9, 10),
    ),
    "avgpool1d_variants": (
        lambda: nn.Sequential(
            nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            nn.ReLU(),
            nn.AvgPool1d(2, padding=1, count_include_pad=True),
            nn.AvgPool1d(2, stride=1, ceil_mode=True),
            nn.Flatten(),
        ),
        (3, 10),
    ),
    "flatten_identity_dropout": (
        lambda: nn.Sequential(
            nn.Identity(),
            nn.Conv2d(2, 3, 2),
            nn.Dropout(0.5),
            nn.Dropout2d(0.3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Identity(),
            nn.Linear(27, 2),
        ),
        (2, 4, 4),
    ),
    "nested_sequential": (
        lambda: nn.Sequential(
            nn.Sequential(nn.Linear(4, 5), nn.Sequential(nn.ReLU(), nn.Linear(5, 5))),
            nn.Sequential(nn.Sequential(nn.LeakyReLU(0.2)), nn.Linear(5, 2)),
        ),
        (4,),
    ),
    "residual_sub_scale": (Residual, (5,)),
    "conv_residual_functional_view": (ConvResidual, (2, 6, 6)),
    "functional": (Functional, (2, 8)),
    "zoo_mlp": (lambda: mlp([3, 8, 8, 2]), (3,)),
    "zoo_mlp_leaky_no_bias": (
        lambda: mlp([3, 8, 2], bias=False, activation="leaky_relu", slope=0.2),
        (3,),
    ),
    "zoo_cnn": (lambda: cnn(1, 8, channels=(3, 4), num_classes=3), (1, 8, 8)),
    "zoo_cnn_bn": (
        lambda: cnn(2, 8, channels=(3, 4), num_classes=3, batchnorm=True),
        (2, 8, 8),
    ),
    "zoo_cnn_no_bias": (
        lambda: cnn(1, 8, channels=(3,), num_classes=2, bias=False, batchnorm=True),
        (1, 8, 8),
    ),
    "zoo_resnet": (lambda: resnet(2, 6, width=4, blocks=2, num_classes=3), (2, 6, 6)),
    "zoo_resnet_no_bn": (
        lambda: resnet(2, 6, width=4, blocks=1, num_classes=3, batchnorm=False),
        (2, 6, 6),
    ),
    "zoo_resnet_no_bias": (
        lambda: resnet(2, 6, width=4, blocks=1, num_classes=3, bias=False),
        (2, 6, 6),
    ),
}


def make_case(name: str, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, tuple]:
    factory, shape = CASES[name]
    return build(factory, shape).to(dtype), shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_module(name, dtype):
    model, shape = make_case(name)
    assert_forward_equal(model, shape, dtype)


def test_cases_cover_every_supported_layer():
    kinds = set()
    for name in CASES:
        model, _ = make_case(name)
        kinds |= {type(m) for m in model.modules()}
    for kind in (
        nn.Linear,
        nn.Conv1d,
        nn.Conv2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.Flatten,
        nn.Identity,
        nn.Dropout,
        nn.ReLU,
        nn.LeakyReLU,
        nn.Sequential,
    ):
        assert kind in kinds


def test_nodes_and_sites_are_named_after_modules():
    model, shape = make_case("zoo_resnet")
    net = trace(model, shape)
    names = [n.name for n in net.nodes]
    assert len(names) == len(set(names))
    relus = [p for p, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert [s.name for s in net.sites] == relus
    assert all(s.slope == 0.0 for s in net.sites)


# --------------------------------------------------------------------------- BatchNorm folding
@pytest.mark.parametrize(
    "name, removed, kept",
    [
        ("bn1d_after_linear", 1, 0),
        ("bn1d_after_linear_no_bias_no_affine", 1, 0),
        ("bn1d_after_conv1d", 1, 0),
        ("bn2d_after_conv", 2, 0),
        ("bn_twice", 1, 1),  # the second BN follows a BN, not a Linear/Conv
        ("zoo_cnn_bn", 2, 0),
        ("zoo_resnet", 5, 0),
    ],
)
def test_batchnorm_is_folded(name, removed, kept):
    model, shape = make_case(name)
    net = trace(model, shape)
    # the same model with every BN replaced by Identity: the folded net has as many nodes
    reference = trace(_without_batchnorm(model), shape)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert len(net.nodes) == len(reference.nodes) + kept
    assert len(net.nodes) < len(reference.nodes) + n_bn  # fewer nodes than unfolded
    assert n_bn == removed + kept
    assert sum(isinstance(n.op, (ScaleShiftOp, BatchNormOp)) for n in net.nodes) == kept
    assert [s.name for s in net.sites] == [s.name for s in reference.sites]
    assert_forward_equal(model, shape, torch.float32)
    assert_forward_equal(model, shape, torch.float64)


@pytest.mark.parametrize(
    "name, kept",
    [
        ("bn1d_first", 1),
        ("bn2d_first", 1),
        ("bn_after_add_and_relu", 2),
        ("bn_shared_conv", 1),
        ("bn1d_on_3d_linear_output", 1),
        ("bn_only_no_parameters", 1),
    ],
)
def test_batchnorm_not_after_foldable_op_is_kept(name, kept):
    model, shape = make_case(name)
    net = trace(model, shape)
    assert sum(isinstance(n.op, (ScaleShiftOp, BatchNormOp)) for n in net.nodes) == kept
    assert_forward_equal(model, shape, torch.float64)


def test_bn_on_3d_linear_output_without_check():
    # the internal check must not be what saves us: the net itself is right
    model, shape = make_case("bn1d_on_3d_linear_output", torch.float64)
    net = trace(model, shape, check=False)
    x = torch.randn((6,) + shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-12)


def _without_batchnorm(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, nn.Identity())
    return clone


def test_trace_does_not_touch_the_model():
    model, shape = make_case("zoo_resnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = trace(model, shape)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the net holds copies, not the module's parameters
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    x = torch.randn((3,) + shape)
    assert not torch.allclose(net(x), model(x))


# --------------------------------------------------------------------------- unsupported layers
class Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.fc(x))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


class SDPA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(4, 4)

    def forward(self, x):
        q = self.q(x)
        return F.scaled_dot_product_attention(q, x, x)


class ControlFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        return h, F.relu(h)


class Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class FunctionalSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=-1)


class Product(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * x


def _bn_train():
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()).train()


UNSUPPORTED = {
    # name: (factory, input_shape, path, type name, words in the message)
    "gelu": (Gelu, (4,), "act", "GELU", ["piecewise-linear"]),
    "gelu_bare": (nn.GELU, (4,), "GELU", "GELU", []),
    "softmax_end": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.Softmax(dim=1)),
        (4,),
        "3",
        "Softmax",
        ["logits"],
    ),
    "log_softmax_end": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)),
        (4,),
        "1",
        "LogSoftmax",
        ["logits"],
    ),
    "functional_softmax": (FunctionalSoftmax, (4,), "softmax", "softmax", ["logits"]),
    "bilinear_upsample": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2, mode="bilinear")),
        (1, 6, 6),
        "1",
        "Upsample",
        ["nearest"],
    ),
    "multihead_attention": (Attention, (3, 4), "attn", "MultiheadAttention", ["attention"]),
    "sdpa": (
        SDPA,
        (3, 4),
        "scaled_dot_product_attention",
        "scaled_dot_product_attention",
        ["attention"],
    ),
    "bn_training": (_bn_train, (4,), "1", "BatchNorm1d", ["eval"]),
    "bn2d_training": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train(),
        (1, 5, 5),
        "1",
        "BatchNorm2d",
        ["eval"],
    ),
    "dropout_training": (
        lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train(),
        (4,),
        "1",
        "Dropout",
        ["eval"],
    ),
    "control_flow": (ControlFlow, (4,), "ControlFlow", "untraceable", ["control flow"]),
    "tuple_output": (ReturnsTuple, (4,), "output", "tuple", ["single tensor"]),
    "sigmoid": (Sigmoid, (4,), "sigmoid", "sigmoid", ["piecewise-linear"]),
    "product_of_tensors": (Product, (4,), "mul", "mul", []),
    "tanh_module": (
        lambda: nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
        (4,),
        "1",
        "Tanh",
        [],
    ),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_raises(name):
    factory, shape, path, kind, words = UNSUPPORTED[name]
    torch.manual_seed(0)
    model = factory()
    if name not in ("bn_training", "bn2d_training", "dropout_training"):
        model = model.eval()
    with pytest.raises(UnsupportedLayerError) as info:
        trace(model, shape)
    err = info.value
    msg = str(err)
    assert err.path == path
    assert f"'{path}'" in msg
    assert kind in err.kind
    assert kind in msg
    assert "Supported:" in msg and SUPPORTED in msg
    assert "max pool" not in msg.split("Supported:")[0].lower()
    for word in ("Linear", "Conv2d", "ReLU", "LeakyReLU", "AvgPool"):
        assert word in msg
    for word in words:
        assert word.lower() in msg.lower()


@pytest.mark.parametrize("name", ["bn_training", "bn2d_training"])
def test_training_batchnorm_rejected_without_updating_its_statistics(name):
    torch.manual_seed(0)
    factory, shape, *_ = UNSUPPORTED[name]
    model = factory()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedLayerError):
        trace(model, shape)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_mode_dropout_with_p0_and_eval_bn_are_fine():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    assert_forward_equal(model, (4,), torch.float64)


def test_mismatch_is_reported_not_returned(monkeypatch):
    # If an op were modelled wrongly, trace's check must refuse rather than return a bad net.
    import reluscope.nets.sites as sites

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    monkeypatch.setattr(sites.ActivationOp, "forward", lambda self, x: x)
    with pytest.raises(UnsupportedLayerError, match="does not reproduce"):
        trace(model, (3,))


# --------------------------------------------------------------------------- bad inputs
def test_wrong_input_shape_names_the_shape():
    model = mlp([4, 5, 2])
    with pytest.raises(InputError) as info:
        trace(model, (7,))
    assert "(7,)" in str(info.value)
    with pytest.raises(InputError) as info:
        trace(cnn(1, 8, channels=(2,)), (1, 10, 10))
    assert "(1, 10, 10)" in str(info.value)
    with pytest.raises(InputError) as info:
        trace(cnn(1, 8, channels=(2,)), (3, 8, 8))
    assert "(3, 8, 8)" in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [(), (0,), (4, 0), (-1,), (4, -3), None, 4, "4", ("a",), (4.5,), [[4]], (0.0,)],
    ids=repr,
)
def test_bad_input_shape(shape):
    with pytest.raises(InputError, match="input_shape"):
        trace(mlp([4, 2]), shape)


def test_bool_is_not_a_size():
    with pytest.raises(InputError, match="input_shape"):
        trace(mlp([1, 2]), (True,))


@pytest.mark.parametrize(
    "shape", [[4], (4,), torch.Size([4]), (4.0,), (torch.tensor(4),), range(4, 5)], ids=repr
)
def test_input_shape_sequences(shape):
    net = trace(mlp([4, 2]), shape)
    assert net.input_shape == (4,)


@pytest.mark.parametrize("obj", [None, 3, "model", lambda x: x, torch.zeros(3)], ids=repr)
def test_non_module(obj):
    with pytest.raises(InputError, match="Module"):
        trace(obj, (3,))


# --------------------------------------------------------------------------- property test
@settings(max_examples=30, deadline=None)
@given(small_mlps(), st.sampled_from([torch.float32, torch.float64]))
def test_property_random_mlp_forward(case, dtype):
    model, widths, slopes, _ = case
    assert_forward_equal(model, (widths[0],), dtype)
    net = trace(model.to(dtype), (widths[0],))
    assert [s.slope for s in net.sites] == pytest.approx(slopes)
    assert net.num_neurons == sum(widths[1:-1])
    assert all(isinstance(n.op, ActivationOp) for n in net.nodes if n.is_site)


def test_flatten_over_the_batch_dimension_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.Flatten(0)).eval()
    with pytest.raises(UnsupportedLayerError, match="batch dimension"):
        trace(model, (3,))


def test_float32_batchnorm_analysed_in_float64_is_exact():
    model = resnet(in_channels=1, image_size=8, width=4, blocks=1, seed=0)
    net = trace(model, (1, 8, 8)).to(dtype=torch.float64)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = model.double()(x)
    assert (net(x) - expected).abs().max().item() < 1e-12
