"""weight_ranks: norms and ranks of Linear layers against numpy, of convolutions against their
dense unrolled matrices built from the layer applied to basis images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import reluscope as rs
from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.measures.conv_operator import ConvOperator
from reluscope.measures.weight_ranks import matrix_stats

pytestmark = pytest.mark.usefixtures("one_thread")


def _numpy_stats(w: np.ndarray) -> dict:
    """Every number by hand with numpy."""
    s = np.linalg.svd(w, compute_uv=False)
    p = s[s > 0] / s[s > 0].sum()
    return dict(
        spectral_norm=np.linalg.norm(w, 2),
        frobenius_norm=np.linalg.norm(w),
        l21_norm=sum(np.linalg.norm(row) for row in w),
        nuclear_norm=s.sum(),
        stable_rank=np.linalg.norm(w) ** 2 / np.linalg.norm(w, 2) ** 2,
        effective_rank=math.exp(-(p * np.log(p)).sum()),
        spectrum=s,
    )


def _assert_matches(stats, w: np.ndarray, rank: int) -> None:
    expected = _numpy_stats(w)
    for key in ("spectral_norm", "frobenius_norm", "l21_norm", "nuclear_norm", "stable_rank"):
        assert getattr(stats, key) == pytest.approx(expected[key], rel=1e-9), key
    assert stats.effective_rank == pytest.approx(expected["effective_rank"], rel=1e-9)
    np.testing.assert_allclose(stats.spectrum, expected["spectrum"], rtol=1e-9, atol=1e-12)
    assert stats.rank == rank


def test_linear_layers_against_numpy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5, bias=False))
    with torch.no_grad():  # a rank-3 first layer, in float32
        model[0].weight.copy_(torch.randn(8, 3) @ torch.randn(3, 6))
    result = rs.weight_ranks(model)
    assert [(s.layer, s.path, s.kind, s.norm_kind, s.method) for s in result.layers] == [
        ("1", "0", "linear", "matrix", "svd"),  # layer: the site the weight feeds
        ("output", "2", "linear", "matrix", "svd"),
    ]
    for stats, layer in zip(result.layers, (model[0], model[2]), strict=True):
        w = layer.weight.detach().numpy()
        assert np.linalg.matrix_rank(w) == (3 if layer is model[0] else 5)  # float32 tolerance
        _assert_matches(stats, w.astype(np.float64), np.linalg.matrix_rank(w))
        assert stats.shape == w.shape
    assert [s.has_bias for s in result.layers] == [True, False]


def test_numerical_rank_tolerances():
    w = torch.diag(torch.tensor([1.0, 0.5, 1e-2, 1e-4], dtype=torch.float64))
    assert matrix_stats(w)["numerical_rank"] == 3  # default rtol 1e-3
    assert matrix_stats(w, rtol=1e-5)["numerical_rank"] == 4
    assert matrix_stats(w, atol=0.1)["numerical_rank"] == 2
    assert matrix_stats(w, rtol=1e-3, atol=0.6)["numerical_rank"] == 1  # max of the two
    assert matrix_stats(w)["rank"] == 4


def test_effective_and_stable_rank_closed_forms():
    eye = matrix_stats(torch.eye(5, dtype=torch.float64))
    assert eye["effective_rank"] == pytest.approx(5.0) and eye["stable_rank"] == pytest.approx(5.0)
    outer = matrix_stats(torch.outer(torch.arange(1.0, 4.0), torch.ones(4)).double())
    assert outer["effective_rank"] == pytest.approx(1.0) and outer["rank"] == 1
    zero = matrix_stats(torch.zeros(3, 2))
    assert (zero["rank"], zero["effective_rank"], zero["stable_rank"]) == (0, 0.0, 0.0)


def _unrolled(conv: nn.Module, input_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of conv (bias dropped) on inputs of input_shape: the layer applied to every
    basis image is one column."""
    d = math.prod(input_shape)
    eye = torch.eye(d, dtype=torch.float64).reshape((d,) + input_shape)
    conv = conv.double()
    with torch.no_grad():
        cols = conv(eye) - conv(torch.zeros((1,) + input_shape, dtype=torch.float64))
    return cols.reshape(d, -1).T.numpy()


CONVS = [
    (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (4, 7, 6)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 5, 5)),
    (lambda: nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, padding_mode="circular"), (2, 5, 6)),
    (lambda: nn.Conv1d(2, 3, 3, padding=2, padding_mode="reflect"), (2, 9)),
    (lambda: nn.Conv1d(2, 4, 5, padding=4, dilation=2, padding_mode="circular"), (2, 11)),
]


@pytest.mark.parametrize("make, shape", CONVS)
def test_conv_operator_against_the_unrolled_matrix(make, shape):
    torch.manual_seed(1)
    conv = make()
    dense = _unrolled(conv, shape)
    result = rs.weight_ranks(nn.Sequential(conv), input_shape=shape)
    operator, kernel = result.layers
    assert (operator.norm_kind, kernel.norm_kind) == ("conv operator", "reshaped kernel")
    circular = conv.padding_mode == "circular" and conv.stride[0] == 1
    assert operator.method == ("fft" if circular else "dense svd")
    assert operator.shape == dense.shape
    _assert_matches(operator, dense, np.linalg.matrix_rank(dense))
    w = conv.weight.detach().double().reshape(conv.out_channels, -1).numpy()
    _assert_matches(kernel, w, np.linalg.matrix_rank(w))
    # Lanczos (large layers): the same spectral norm, never above it; exact row norms
    big = rs.weight_ranks(nn.Sequential(conv), input_shape=shape, conv_method="lanczos").layers[0]
    assert big.method == "lanczos" and big.rank is None and big.spectrum is None
    assert big.spectral_norm == pytest.approx(np.linalg.norm(dense, 2), rel=1e-8)
    assert big.spectral_norm <= np.linalg.norm(dense, 2) * (1 + 1e-12)
    assert big.frobenius_norm == pytest.approx(np.linalg.norm(dense), rel=1e-12)
    assert big.l21_norm == pytest.approx(np.linalg.norm(dense, axis=1).sum(), rel=1e-12)


def test_fft_singular_values_of_a_grouped_circular_conv():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, padding_mode="circular")
    shape = (4, 6, 5)
    dense = _unrolled(conv, shape)
    op = ConvOperator(rs.trace(nn.Sequential(conv), shape).nodes[0].op, shape)
    assert op.is_circular()
    np.testing.assert_allclose(
        op.fft_singular_values().numpy(), np.linalg.svd(dense, compute_uv=False), atol=1e-12
    )


def test_layer_order_and_the_pwlnet_view_agree():
    model = rs.nets.cnn(in_channels=1, image_size=8, channels=(2, 3), num_classes=4)
    shape = (1, 8, 8)
    from_module = rs.weight_ranks(model, input_shape=shape)
    from_net = rs.weight_ranks(rs.trace(model, shape))
    assert [s.kind for s in from_module.operators] == ["conv2d", "conv2d", "linear"]
    assert [s.layer for s in from_module.layers] == [s.layer for s in from_net.layers]
    for a, b in zip(from_module.layers, from_net.layers, strict=True):
        assert a.spectral_norm == pytest.approx(b.spectral_norm, rel=1e-12)
        assert a.rank == b.rank and a.shape == b.shape
    assert from_module.get("0").norm_kind == "conv operator"
    assert from_module.get("0", "reshaped kernel").shape == (2, 9)


def test_records_and_frames():
    result = rs.weight_ranks(nn.Sequential(nn.Conv1d(1, 2, 3)), input_shape=(1, 6))
    records = result.to_records(model="m")
    assert len(records) == 2 * 8
    row = next(r for r in records if r["metric"] == "rank" and r["norm_kind"] == "conv operator")
    assert row["value"] == result.layers[0].rank and row["model"] == "m"
    assert len(result.summary()) == 2 and "spectrum" not in result.summary()
    spectrum = result.spectrum_records()
    assert len(spectrum) == len(result.layers[0].spectrum) + len(result.layers[1].spectrum)
    assert len(result.to_frame()) == len(records)


def test_bad_input():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(InputError, match="input_shape"):
        rs.weight_ranks(conv)
    with pytest.raises(InputError, match="does not run"):
        rs.weight_ranks(conv, input_shape=(3, 8, 8))
    with pytest.raises(InputError, match="positive integers"):
        rs.weight_ranks(conv, input_shape=(1, 0, 8))
    with pytest.raises(UnsupportedLayerError, match="Conv3d"):
        rs.weight_ranks(nn.Sequential(nn.Conv3d(1, 1, 1)), input_shape=(1, 2, 2, 2))
    with pytest.raises(InputError, match="rtol"):
        rs.weight_ranks(nn.Linear(2, 2), rtol=-1.0)
    with pytest.raises(InputError, match="conv_method"):
        rs.weight_ranks(conv, input_shape=(1, 5, 5), conv_method="svd")
    with pytest.raises(InputError, match="circular"):
        rs.weight_ranks(conv, input_shape=(1, 5, 5), conv_method="fft")
    with pytest.raises(InputError, match="nn.Module"):
        rs.weight_ranks(np.eye(3))
    with pytest.raises(InputError, match="no entry"):
        rs.weight_ranks(nn.Linear(2, 2)).get("nope")
