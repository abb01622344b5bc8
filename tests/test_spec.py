"""Tests for model specs (zoo and factory) and weights loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from reluscope.errors import InputError
from reluscope.nets.spec import infer_input_shape, load_model
from reluscope.nets.zoo import cnn, mlp, resnet


@pytest.fixture
def factories(monkeypatch):
    """Make tests/factories.py importable as 'factories'."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def _linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mlp_widths_spec():
    model, shape = load_model("mlp:2-64-64-1")
    assert shape == (2,)
    assert _linear_shapes(model) == [(2, 64), (64, 64), (64, 1)]
    assert _same_params(model, mlp([2, 64, 64, 1], seed=0))
    assert not model.training


def test_mlp_spec_with_kwargs():
    spec = "mlp:2-64-1:bias=false,activation=leaky_relu,slope=0.2,init_multiplier=2"
    model, shape = load_model(spec)
    assert shape == (2,)
    assert model[0].bias is None
    assert isinstance(model[1], nn.LeakyReLU) and model[1].negative_slope == 0.2
    ref = mlp([2, 64, 1], bias=False, activation="leaky_relu", slope=0.2)
    assert torch.equal(model[0].weight, 2 * ref[0].weight)


def test_mlp_widths_as_kwarg():
    model, shape = load_model("mlp:widths=3-5-2")
    assert shape == (3,)
    assert _linear_shapes(model) == [(3, 5), (5, 2)]


def test_seed_argument_and_spec_seed():
    model, _ = load_model("mlp:2-8-1", seed=4)
    assert _same_params(model, mlp([2, 8, 1], seed=4))
    assert not _same_params(model, mlp([2, 8, 1], seed=0))
    model, _ = load_model("mlp:2-8-1:seed=9", seed=4)
    assert _same_params(model, mlp([2, 8, 1], seed=9))


def test_cnn_specs():
    model, shape = load_model("cnn")
    assert shape == (1, 28, 28)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    model, shape = load_model("cnn:in_channels=3,image_size=16,channels=4-8,batchnorm=true")
    assert shape == (3, 16, 16)
    assert _same_params(model, cnn(3, 16, (4, 8), batchnorm=True))
    assert model(torch.zeros(1, *shape)).shape == (1, 10)


def test_resnet_spec():
    model, shape = load_model("resnet:width=8,blocks=1")
    assert shape == (3, 32, 32)
    assert _same_params(model, resnet(width=8, blocks=1))
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_factory_spec(factories):
    model, shape = load_model("factories:tiny")
    assert shape is None
    assert _linear_shapes(model) == [(2, 4), (4, 1)]
    model, _ = load_model("factories:tiny:width=7")
    assert _linear_shapes(model) == [(2, 7), (7, 1)]
    assert not model.training


def test_factory_spec_is_seeded(factories):
    torch.manual_seed(11)
    expected = torch.rand(2)
    torch.manual_seed(11)
    a, _ = load_model("factories:tiny", seed=1)
    assert torch.equal(torch.rand(2), expected)  # global RNG untouched
    b, _ = load_model("factories:tiny", seed=1)
    c, _ = load_model("factories:tiny", seed=2)
    assert _same_params(a, b)
    assert not _same_params(a, c)
    seeded, _ = load_model("factories:seeded", seed=6)
    assert seeded.given_seed == 6


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("mlpp", ["mlpp", "cnn", "mlp", "resnet"]),
        ("", ["''"]),
        ("mlp", ["'mlp'", "widths"]),
        ("mlp:2-x-1", ["2-x-1"]),
        ("mlp:2", ["'2'"]),
        ("mlp:2-0-1", ["2-0-1"]),
        ("mlp:2-4-1:bias", ["bias", "key=value"]),
        ("mlp:2-4-1:bias=true,bias=false", ["bias"]),
        ("mlp:2-4-1:a=1:b=2", ["too many"]),
        ("cnn:8-16", ["8-16", "mlp"]),
        ("cnn:in_channels", ["in_channels"]),
        ("cnn:foo=1", ["foo", "in_channels", "image_size"]),
        ("cnn:image_size=2", ["image_size 2"]),
        ("mlp:2-4-1:activation=tanh", ["tanh"]),
        ("no_such_pkg_xyz.models:net", ["no_such_pkg_xyz.models", "import"]),
    ],
)
def test_spec_errors(spec, needles):
    with pytest.raises(InputError) as info:
        load_model(spec)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("factories:nope", ["nope", "factories"]),
        ("factories:NOT_CALLABLE", ["NOT_CALLABLE"]),
        ("factories:not_a_module", ["int", "nn.Module"]),
        ("factories:tiny:depth=2", ["depth", "width"]),
    ],
)
def test_factory_errors(factories, spec, needles):
    with pytest.raises(InputError) as info:
        load_model(spec)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize("spec", ["mlp:2-16-16-1", "resnet:width=4,blocks=1,image_size=8"])
@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_weights_round_trip(tmp_path, spec, wrap):
    trained, input_shape = load_model(spec, seed=1)
    state = trained.state_dict()
    path = tmp_path / "w.pt"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    loaded, input_shape2 = load_model(spec, weights=path, seed=0)
    fresh, _ = load_model(spec, seed=0)
    assert input_shape2 == input_shape
    assert not loaded.training
    x = torch.randn(5, *input_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(x), trained(x))
    assert not torch.equal(fresh(x), trained(x))


def test_weights_missing_file(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(InputError, match="absent.pt.*does not exist"):
        load_model("mlp:2-4-1", weights=path)


def test_weights_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights file .*corrupt.pt"):
        load_model("mlp:2-4-1", weights=str(path))


def test_weights_pickled_module_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(mlp([2, 4, 1]), path)  # a whole pickled module: not allowed with weights_only
    with pytest.raises(InputError, match="module.pt"):
        load_model("mlp:2-4-1", weights=path)


def test_weights_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match="holds list"):
        load_model("mlp:2-4-1", weights=path)


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(mlp([2, 8, 1]).state_dict(), path)
    with pytest.raises(InputError) as info:
        load_model("mlp:2-4-1", weights=path)
    message = str(info.value)
    assert "shape mismatches" in message and "0.weight: file (8, 2) vs model (4, 2)" in message

    torch.save(mlp([2, 4, 4, 1]).state_dict(), path)
    with pytest.raises(InputError, match=r"unexpected keys \['4.bias', '4.weight'\]"):
        load_model("mlp:2-4-1", weights=path)
    torch.save(mlp([2, 4, 1]).state_dict(), path)
    with pytest.raises(InputError, match=r"missing keys \['4.bias', '4.weight'\]"):
        load_model("mlp:2-4-4-1", weights=path)


def test_infer_input_shape():
    assert infer_input_shape(mlp([5, 3, 1])) == (5,)
    assert infer_input_shape(nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(12, 3))) == (12,)
    assert infer_input_shape(cnn()) is None
    assert infer_input_shape(resnet(width=4, blocks=1)) is None
    assert infer_input_shape(nn.Sequential()) is None
