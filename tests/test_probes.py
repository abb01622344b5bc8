"""Built-in probes give the numbers of the measures and formulas they wrap."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import reluscope as rs
from reluscope.attacks import adversarial_accuracy
from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.nets.zoo import mlp
from reluscope.train import ProbeRunner, every, probes, random_points, step_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int, d: int = 5, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(3, d, generator=gen)[y] + 0.7 * torch.randn(n, d, generator=gen)
    return Dataset(x.float(), y, "blobs")


TRAIN, TEST = blobs(80), blobs(50, seed=1)


def run_probe(probe, model, step=4, dtype=None, seed=0):
    runner = ProbeRunner(
        [probe], TRAIN, TEST, dtype=dtype, default_schedule=every(1, 10), seed=seed
    )
    runner.run(model, step)
    return runner.frame()


def value(frame, metric, split=None, layer=None):
    rows = frame[
        (frame.metric == metric) & (frame.layer.isna() if layer is None else frame.layer == layer)
    ]
    if split is not None:
        rows = rows[rows.split == split]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_accuracy_loss_probe_matches_direct_computation():
    model = mlp([5, 16, 3], seed=0)
    frame = run_probe(probes.accuracy_loss(batch_size=7), model)
    for split, data in (("train", TRAIN), ("test", TEST)):
        out = model(data.x).detach()
        hits = (out.argmax(1) == data.y).double()
        losses = nn.functional.cross_entropy(out.double(), data.y, reduction="none")
        row = value(frame, "accuracy", split)
        assert row.value == pytest.approx(hits.mean().item(), abs=1e-15)
        assert row.stderr == pytest.approx(hits.std().item() / math.sqrt(len(hits)))
        assert value(frame, "loss", split).value == pytest.approx(losses.mean().item(), rel=1e-6)


def test_lc_probe_equals_local_complexity_on_the_same_points():
    model = mlp([5, 12, 12, 3], seed=1)
    step = 7
    frame = run_probe(probes.local_complexity(sigma=0.05, n_points=30), model, step, seed=2)
    for split, data in (("train", TRAIN), ("test", TEST)):
        direct = rs.local_complexity(model, data.x[:30], sigma=0.05, seed=step_seed(2, step))
        assert value(frame, "lc", split).value == direct.value
        assert value(frame, "lc", split).stderr == direct.stderr
        for layer, v in direct.per_layer.items():
            assert value(frame, "lc", split, layer).value == v


def test_float64_probes_measure_a_float64_copy():
    model = mlp([5, 12, 3], seed=1)
    frame = run_probe(probes.local_rank(n_points=20, dtype=torch.float64), model)
    direct = rs.local_rank(model.double(), TRAIN.x[:20].double())
    assert value(frame, "local_rank", "train").value == direct.value
    model = mlp([5, 12, 3], seed=1)
    frame = run_probe(probes.total_variation(n_points=20, bound=False), model, dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
    direct = rs.total_variation(model.double(), TRAIN.x[:20].double(), bound=False)
    assert value(frame, "tv", "train").value == pytest.approx(direct.value, rel=1e-12)


def test_neighborhood_probe_uses_fixed_random_points_with_the_data_statistics():
    model = mlp([5, 12, 3], seed=1)
    probe = probes.neighborhood(0.2, n_vertices=6, n_points=25, seed=3, metric="nb_r0.2")
    frame = run_probe(probe, model)
    points = random_points(TRAIN, 25, seed=3)
    for split, x in (("train", TRAIN.x[:25]), ("test", TEST.x[:25]), ("random", points)):
        direct = rs.neighborhood_complexity(model, x, radius=0.2, n_vertices=6, seed=3)
        assert value(frame, "nb_r0.2", split).value == direct.value
    assert "nb_r0.2.fraction" in set(frame.metric)
    # the random points: Gaussian with the per-feature mean and std of the training inputs
    many = random_points(TRAIN, 20000, seed=0).double()
    torch.testing.assert_close(many.mean(0), TRAIN.x.double().mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(many.std(0), TRAIN.x.double().std(0), atol=0, rtol=0.03)
    assert torch.equal(random_points(TRAIN, 5, seed=1), random_points(TRAIN, 5, seed=1))


def test_adversarial_probe_matches_adversarial_accuracy():
    model = mlp([5, 16, 3], seed=0)
    frame = run_probe(probes.adversarial(0.3, 0.1, 5, n_points=40), model, step=3, seed=1)
    direct = adversarial_accuracy(
        model,
        TEST.x[:40],
        labels=TEST.y[:40],
        attack="pgd",
        eps=0.3,
        step_size=0.1,
        steps=5,
        seed=step_seed(1, 3),
    )
    assert value(frame, "adv_accuracy", "test").value == direct.value
    assert (
        value(frame, "adv_accuracy.clean_accuracy", "test").value == direct.extra["clean_accuracy"]
    )


def test_weight_norms_probe():
    model = mlp([5, 7, 3], seed=0)
    frame = run_probe(probes.weight_norms(), model)
    w0, w2 = model[0].weight.detach().double(), model[2].weight.detach().double()
    assert value(frame, "weight_fro", layer="0").value == pytest.approx(w0.norm().item(), rel=1e-14)
    s0, s2 = (torch.linalg.svdvals(w)[0].item() for w in (w0, w2))
    assert value(frame, "weight_spectral", layer="2").value == pytest.approx(s2, rel=1e-12)
    assert value(frame, "weight_spectral").value == pytest.approx(s0 * s2, rel=1e-12)
    total = math.sqrt(w0.norm().item() ** 2 + w2.norm().item() ** 2)
    assert value(frame, "weight_fro").value == pytest.approx(total, rel=1e-14)


def test_snapshot_probe_saves_loadable_state_dicts(tmp_path):
    model = mlp([5, 7, 3], seed=0)
    frame = run_probe(probes.snapshot(tmp_path / "snaps", every(1, 10)), model, step=12)
    assert frame.empty
    state = torch.load(tmp_path / "snaps" / "step_00000012.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_probe_options_are_checked():
    with pytest.raises(InputError, match="splits must be a non-empty list of splits among"):
        probes.accuracy_loss(splits=("random",))
    with pytest.raises(InputError, match="splits must be a non-empty list of splits among"):
        probes.local_complexity(splits=("valid",))
    with pytest.raises(InputError, match="n_points"):
        probes.neighborhood(0.1, n_points=None)
    with pytest.raises(InputError, match="n_points must be"):
        probes.local_rank(n_points=0)
    runner = ProbeRunner([probes.accuracy_loss()], TRAIN, None, default_schedule=every(1, 2))
    with pytest.raises(InputError, match="no test split"):
        runner.run(mlp([5, 7, 3], seed=0), 0)
    assert runner.records == []
