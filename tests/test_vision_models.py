"""Acceptance on the torchvision classics rebuilt without torchvision (reluscope.nets.vision):
ResNet-18, VGG-11-BN, AlexNet, MobileNetV2 trace to float64 precision with torchvision's module
names; exact LC on tiny inputs agrees with the sketch; sketch LC at 32x32 and 64x64, local
rank and a 2-D plane partition run on each; zoo specs work from the CLI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import reluscope
from reluscope.cli import app
from reluscope.measures import local_complexity, local_rank
from reluscope.nets import alexnet, load_model, mobilenet_v2, resnet18, trace, vgg11_bn

F64 = torch.float64

#: name: (factory, width_mult, tiny image size, keys that torchvision's state dict has)
MODELS = {
    "resnet18": (resnet18, 0.125, 16, ["layer2.0.downsample.1.running_var", "fc.weight"]),
    "vgg11_bn": (vgg11_bn, 0.0625, 32, ["features.1.running_mean", "classifier.6.bias"]),
    "alexnet": (alexnet, 0.0625, 63, ["features.10.weight", "classifier.4.weight"]),
    "mobilenet_v2": (
        mobilenet_v2,
        0.25,
        16,
        ["features.1.conv.0.0.weight", "features.18.1.weight", "classifier.1.weight"],
    ),
}


def build(name: str, size: int | None = None):
    factory, mult, tiny, _ = MODELS[name]
    size = size or tiny
    return factory(num_classes=10, image_size=size, width_mult=mult).double(), (3, size, size)


@pytest.mark.parametrize("name", list(MODELS))
def test_structure_and_trace_to_float64_precision(name):
    model, shape = build(name)
    keys = set(model.state_dict())
    assert set(MODELS[name][3]) <= keys
    net = trace(model, shape)
    x = torch.randn((3,) + shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(net(x), ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
    kinds = {s.op.kind for s in net.sites}
    assert ("max_pool" in kinds) == (name != "mobilenet_v2")
    if name == "mobilenet_v2":
        assert kinds == {"clamp(0, 6)"}


def test_full_size_resnet18_has_torchvisions_parameter_count():
    model = resnet18()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


@pytest.mark.parametrize(
    "name",
    [n if n != "alexnet" else pytest.param(n, marks=pytest.mark.slow) for n in MODELS],
)
def test_exact_lc_rank_and_plane_on_tiny_inputs(name):
    model, shape = build(name)
    net = trace(model, shape)
    x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    exact = local_complexity(net, x, sigma=0.05)
    sketch = local_complexity(net, x, sigma=0.05, method="sketch", probes=96)
    assert exact.value > 0 and exact.extra["truncation_bound"] < 1e-6 * exact.value
    assert sketch.value == pytest.approx(exact.value, rel=0.25)
    # local rank against the rank of the full Jacobians (torch.func) of the last sites
    last = [s.name for s in net.sites[-2:]]
    rank = local_rank(net, x, layers=last)
    jacs = net.jacobian_pass(x, last).site_jacobians
    for site in last:
        expected = int(torch.linalg.matrix_rank(jacs[site][0], atol=0.01))
        assert rank.per_layer[site] == expected
    g = torch.Generator().manual_seed(2)
    u, v = (torch.randn(shape, generator=g, dtype=F64) for _ in range(2))
    part = reluscope.plane(net, x[0], u, v, (-0.01, 0.01, -0.01, 0.01))
    assert part.num_regions >= 1
    assert float(part.areas.sum()) == pytest.approx(4e-4, rel=1e-9)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", list(MODELS))
def test_sketch_lc_at_32_and_64(name, size):
    if name == "alexnet" and size == 32:
        size = 64  # AlexNet needs image_size >= 63
    model, shape = build(name, size)
    x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(3))
    lc = local_complexity(model.float(), x, sigma=0.05, method="sketch", probes=4)
    assert np.isfinite(lc.value) and lc.value > 0


def test_alexnet_lc_and_plane_at_its_smallest_size():
    model, shape = build("alexnet")
    net = trace(model, shape)
    x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    exact = local_complexity(net, x, sigma=0.05)
    sketch = local_complexity(net, x, sigma=0.05, method="sketch", probes=96)
    assert sketch.value == pytest.approx(exact.value, rel=0.25)
    g = torch.Generator().manual_seed(2)
    u, v = (torch.randn(shape, generator=g, dtype=F64) for _ in range(2))
    part = reluscope.plane(net, x[0], u, v, (-0.01, 0.01, -0.01, 0.01))
    assert float(part.areas.sum()) == pytest.approx(4e-4, rel=1e-9)


def test_zoo_specs_build_the_models():
    model, shape = load_model("resnet18:num_classes=10,image_size=32,width_mult=0.25")
    assert shape == (3, 32, 32) and model.fc.out_features == 10
    model, shape = load_model("mobilenet_v2:num_classes=5,image_size=24")
    assert shape == (3, 24, 24)


def test_cli_measure_with_a_zoo_vision_model(tmp_path):
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype("float32"))
    result = CliRunner().invoke(
        app,
        [
            "measure",
            "--model",
            "resnet18:num_classes=10,image_size=32,width_mult=0.125",
            "--data",
            str(data),
            "--method",
            "sketch",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "layer4.1.relu" in result.output


def test_torchvision_resnet18_itself():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18(num_classes=10).double().eval()
    net = trace(model, (3, 32, 32))
    x = torch.randn(2, 3, 32, 32, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-10)
    ours = resnet18(num_classes=10)
    assert set(ours.state_dict()) == set(model.state_dict())
