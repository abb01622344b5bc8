"""Neural collapse metrics: exactly 0 on a constructed collapsed network (simplex ETF class
means, no within-class variation, ETF classifier), positive when one property is broken, equal
to a direct numpy computation on random features, and the same whatever the batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reluscope as rs
from reluscope.errors import InputError
from reluscope.lowrank import LowRankLinear
from reluscope.measures.neural_collapse import NeuralCollapseMeter, neural_collapse
from reluscope.nets import mlp

pytestmark = pytest.mark.usefixtures("one_thread")

C, P, PER_CLASS = 4, 6, 5
ZERO_METRICS = [
    "nc1",
    "nc1_trace",
    "cdnv",
    "nc2_equinorm",
    "nc2_equiangular",
    "nc2_maxangle",
    "nc2_etf",
    "nc4",
    "ncc_error",
    "trace_sw",
]
CLASSIFIER_METRICS = ["w_equinorm", "w_equiangular", "w_maxangle", "w_etf", "nc3"]


def simplex_etf(c: int, p: int, seed: int = 0) -> torch.Tensor:
    """p x c: c unit vectors with pairwise cosines -1/(c-1) and zero sum, in a random
    c-dimensional subspace of R^p (p >= c)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, c, generator=gen, dtype=torch.float64))
    centre = torch.eye(c, dtype=torch.float64) - 1.0 / c
    return q @ centre * math.sqrt(c / (c - 1))


def collapsed_net(
    mean_scale: torch.Tensor | None = None, row_scale: torch.Tensor | None = None
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A one-hot -> features -> ReLU -> classifier network whose hidden features are
    mu_G + m_c (m_c a simplex ETF, scaled by ``mean_scale``) and whose classifier rows are m_c
    (scaled by ``row_scale``) with bias -W mu_G; balanced one-hot inputs and their labels."""
    m = simplex_etf(C, P)
    shift = torch.full((P, 1), 3.0, dtype=torch.float64)  # keeps every feature > 0
    means = m * (torch.ones(C) if mean_scale is None else mean_scale).double()
    w = m.T * (torch.ones(C) if row_scale is None else row_scale).double().unsqueeze(1)
    model = nn.Sequential(nn.Linear(C, P), nn.ReLU(), nn.Linear(P, C)).double()
    with torch.no_grad():
        model[0].weight.copy_(means + shift)
        model[0].bias.zero_()
        model[2].weight.copy_(w)
        model[2].bias.copy_(-(w @ shift)[:, 0])
    y = torch.arange(C).repeat(PER_CLASS)[torch.randperm(C * PER_CLASS)]
    return model, torch.eye(C, dtype=torch.float64)[y], y


# ----------------------------------------------------------------- collapsed ground truth
def test_collapsed_network_has_every_metric_zero():
    model, x, y = collapsed_net()
    r = rs.neural_collapse(model, x, labels=y)
    assert r.layers == ["1", "output"]
    assert r.penultimate == "1"
    for layer in r.layers:
        for metric in ZERO_METRICS:
            assert abs(r.value(metric, layer)) <= 1e-10, (layer, metric)
        assert r.value("means_rank", layer) == C - 1
    for metric in CLASSIFIER_METRICS:
        assert abs(r.value(metric)) <= 1e-10, metric
    assert r.class_counts == {c: PER_CLASS for c in range(C)}
    assert r.num_points == C * PER_CLASS


def test_breaking_one_property_makes_its_metrics_positive():
    model, x, y = collapsed_net()
    noisy = rs.neural_collapse(model, x + 0.05 * torch.randn_like(x), labels=y, layers="1")
    for metric in ("nc1", "nc1_trace", "cdnv", "trace_sw"):
        assert noisy.value(metric) > 1e-4, metric

    scale = torch.tensor([2.0, 1.0, 1.0, 1.0])
    unequal_means = _nc(*collapsed_net(mean_scale=scale), layers="1")
    for metric in ("nc2_equinorm", "nc2_equiangular", "nc2_maxangle", "nc2_etf", "nc3"):
        assert unequal_means.value(metric) > 1e-3, metric
    for metric in ("nc1", "w_equinorm", "w_etf"):  # features still collapse, classifier is ETF
        assert abs(unequal_means.value(metric)) <= 1e-10, metric

    unequal_rows = _nc(*collapsed_net(row_scale=scale), layers="1")
    for metric in ("w_equinorm", "w_etf", "nc3"):
        assert unequal_rows.value(metric) > 1e-3, metric
    for metric in ("w_equiangular", "w_maxangle", "nc2_etf"):  # scaling rows keeps the angles
        assert abs(unequal_rows.value(metric)) <= 1e-10, metric


def test_nc4_counts_disagreements_with_the_network():
    model, x, y = collapsed_net()
    with torch.no_grad():  # class 0's logit is lowered: the net never predicts it
        model[2].bias[0] -= 100.0
    r = rs.neural_collapse(model, x, labels=y, layers="1")
    assert r.value("nc4") == pytest.approx(1 / C, abs=1e-15)
    assert r.value("ncc_error") == 0.0


# ----------------------------------------------------------------- against numpy on random features
def numpy_metrics(h: np.ndarray, y: np.ndarray, w: np.ndarray, pred: np.ndarray) -> dict:
    """The metrics of the module docstring, directly (features h (N, p), labels y)."""
    classes = np.unique(y)
    c, n = len(classes), len(h)
    mu = np.stack([h[y == k].mean(0) for k in classes])
    mu_g = h.mean(0)
    m = (mu - mu_g).T
    dev = h - mu[np.searchsorted(classes, y)]
    sw = dev.T @ dev / n
    sb = m @ m.T / c
    var = np.array([((h[y == k] - mu[i]) ** 2).sum(1).mean() for i, k in enumerate(classes)])
    cdnv = [
        (var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
        for i in range(c)
        for j in range(i + 1, c)
    ]
    norms = np.linalg.norm(m, axis=0)
    cos = [m[:, i] @ m[:, j] / (norms[i] * norms[j]) for i in range(c) for j in range(i + 1, c)]
    gram = m.T @ m
    etf = (np.eye(c) - 1 / c) / np.sqrt(c - 1)
    wk = w[classes]
    dist = ((h[:, None, :] - mu[None]) ** 2).sum(-1)
    ncc = classes[dist.argmin(1)]
    return dict(
        nc1=np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10, hermitian=True)) / c,
        nc1_trace=np.trace(sw) / np.trace(sb),
        cdnv=np.mean(cdnv),
        nc2_equinorm=norms.std() / norms.mean(),
        nc2_equiangular=np.std(cos),
        nc2_maxangle=np.mean(np.abs(np.array(cos) + 1 / (c - 1))),
        nc2_etf=np.linalg.norm(gram / np.linalg.norm(gram) - etf),
        nc3=np.linalg.norm(wk.T / np.linalg.norm(wk) - m / np.linalg.norm(m)),
        nc4=np.mean(ncc != pred),
        ncc_error=np.mean(ncc != y),
        means_rank=np.linalg.matrix_rank(m),
    )


@pytest.mark.parametrize(("p", "c", "present"), [(5, 3, 3), (3, 7, 7), (6, 5, 4)])
def test_metrics_match_numpy_on_random_features(p, c, present):
    """A bare Linear: its penultimate features are the inputs. Unbalanced classes; with
    present < c some classes have no points."""
    gen = torch.Generator().manual_seed(p * 10 + c)
    model = nn.Linear(p, c).double()
    x = torch.randn(60, p, generator=gen, dtype=torch.float64)
    x += 2 * torch.randn(c, p, generator=gen, dtype=torch.float64)[torch.arange(60) % present]
    y = torch.randint(0, present, (60,), generator=gen)
    r = neural_collapse(model, x, labels=y)
    assert r.layers == ["penultimate", "output"]
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    expected = numpy_metrics(x.numpy(), y.numpy(), model.weight.detach().numpy(), pred)
    for metric, value in expected.items():
        assert r.value(metric) == pytest.approx(value, rel=1e-9, abs=1e-12), metric


# ----------------------------------------------------------------- streaming
def test_streaming_equals_one_batch():
    model = mlp([5, 12, 9, 4], seed=1).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(90, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (90,), generator=gen)
    whole = neural_collapse(model, x, labels=y)
    chunked = neural_collapse(model, x, labels=y, batch_size=7)
    loader = DataLoader(TensorDataset(x, y), batch_size=13)
    meter = NeuralCollapseMeter(model)
    for xb, yb in loader:
        meter.update(xb, yb)
    streamed = meter.compute()
    from_loader = neural_collapse(model, loader)
    dicts = [{"inputs": xb, "target": yb} for xb, yb in loader]
    from_dicts = neural_collapse(model, dicts)
    for other in (chunked, streamed, from_loader, from_dicts):
        assert other.layers == whole.layers
        for layer in whole.layers:
            for metric, value in whole.values[layer].items():
                got = other.value(metric, layer)
                assert got == pytest.approx(value, rel=1e-12, abs=1e-12), (layer, metric)
    meter.reset()
    meter.update(x[:40], y[:40])
    assert meter.compute().num_points == 40


def test_records_and_float32_model():
    model = mlp([3, 8, 3], seed=2)
    x, y = torch.randn(30, 3), torch.arange(30) % 3
    r = neural_collapse(model, x, labels=y, dtype=torch.float64)
    rows = r.to_records(run="a")
    assert len(rows) == sum(len(v) for v in r.values.values())
    assert {row["run"] for row in rows} == {"a"}
    frame = r.to_frame()
    assert set(frame.columns) >= {"metric", "layer", "value"}
    r32 = neural_collapse(model, x, labels=y)
    assert r32.value("nc1") == pytest.approx(r.value("nc1"), rel=1e-4)
    assert r32.params["dtype"] == "float32"


# ----------------------------------------------------------------- classifier detection
def test_classifier_through_flatten_and_low_rank_layer():
    """NC3 uses the composed trailing affine map: LowRankLinear's U V equals a dense Linear
    with that weight; a conv site followed by Flatten is the penultimate layer."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten())
    low = LowRankLinear(2 * 16, 3, rank=2)
    dense = nn.Linear(2 * 16, 3)
    with torch.no_grad():
        dense.weight.copy_(low.weight)
        dense.bias.copy_(low.bias)
    x, y = torch.randn(24, 1, 4, 4), torch.arange(24) % 3
    a = neural_collapse(nn.Sequential(features, low), x, labels=y, input_shape=(1, 4, 4))
    b = neural_collapse(nn.Sequential(features, dense), x, labels=y, input_shape=(1, 4, 4))
    assert a.penultimate == b.penultimate == "0.1"
    for metric, value in b.values["0.1"].items():
        assert a.value(metric) == pytest.approx(value, rel=1e-5, abs=1e-7), metric


def test_single_output_network_predicts_by_sign():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(20, 2)
    y = torch.arange(20) % 2
    r = neural_collapse(model, x, labels=y, layers=["1"])
    with torch.no_grad():
        pred = (model(x)[:, 0] > 0).long()
        h = model[1](model[0](x)).double()
    mu = torch.stack([h[y == k].mean(0) for k in (0, 1)])
    ncc = torch.cdist(h, mu).argmin(1)
    assert r.value("nc4", "1") == pytest.approx((ncc != pred).double().mean().item())
    assert "nc3" not in r.values["1"]


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.arange(9) % 3, r"must be of shape \(10,\)"),
        (torch.zeros(10), "integer class indices"),
        (torch.zeros(10, dtype=torch.bool), "integer class indices"),
        (torch.zeros(10, 1, dtype=torch.long), r"must be of shape \(10,\)"),
        (torch.full((10,), 3), r"\[0, 3\)"),
        (torch.full((10,), -1), r"\[0, 3\)"),
        (torch.ones(10, dtype=torch.long), "at least two classes"),
    ],
)
def test_bad_labels(labels, message):
    model = mlp([2, 4, 3], seed=0)
    with pytest.raises(InputError, match=message):
        neural_collapse(model, torch.randn(10, 2), labels=labels)


def test_bad_arguments():
    model = mlp([2, 4, 3], seed=0)
    x, y = torch.randn(10, 2), torch.arange(10) % 3
    with pytest.raises(InputError, match="unknown layer"):
        neural_collapse(model, x, labels=y, layers=["1", "nope"])
    with pytest.raises(InputError, match="layers is empty"):
        neural_collapse(model, x, labels=y, layers=[])
    with pytest.raises(InputError, match="labels are needed"):
        neural_collapse(model, x)
    with pytest.raises(InputError, match="carry their own labels"):
        neural_collapse(model, [(x, y)], labels=y)
    with pytest.raises(InputError, match="labels are needed"):
        neural_collapse(model, [x])
    with pytest.raises(InputError, match="label_key"):
        neural_collapse(model, [{"x": x, "cls": y}])
    with pytest.raises(InputError, match="nc4"):
        NeuralCollapseMeter(model, nc4="yes")
    with pytest.raises(InputError, match="no points yet"):
        NeuralCollapseMeter(model).compute()
    with pytest.raises(InputError, match="no layer"):
        neural_collapse(model, x, labels=y).value("nc1", "7")
    relu_out = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    with pytest.raises(InputError, match="no 'penultimate'"):
        neural_collapse(relu_out, x, labels=y, layers="penultimate")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_matches_cpu():
    model = mlp([5, 12, 9, 4], seed=1).double()
    x, y = torch.randn(90, 5, dtype=torch.float64), torch.arange(90) % 4
    cpu = neural_collapse(model, x, labels=y)
    gpu = neural_collapse(model.cuda(), x, labels=y)
    for layer in cpu.layers:
        for metric, value in cpu.values[layer].items():
            assert gpu.value(metric, layer) == pytest.approx(value, rel=1e-9, abs=1e-12)


def _nc(model, x, y, **options):
    return rs.neural_collapse(model, x, labels=y, **options)
