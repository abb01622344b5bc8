"""The measures' common protocol: one call shape, streaming meters whose merge is exact, and
one record schema shared by every result type."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from measure_helpers import assert_same_result

import reluscope as rs
from reluscope.bounds.compare import compare
from reluscope.bounds.results import BOUND_NUMBERS
from reluscope.errors import InputError
from reluscope.measures import (
    LocalComplexityMeter,
    LocalRankMeter,
    Moments,
    NeighborhoodMeter,
    NeuralCollapseMeter,
    TotalVariationMeter,
)
from reluscope.nets.zoo import mlp
from reluscope.records import RECORD_COLUMNS
from reluscope.train.probe import RECORD_COLUMNS as RECORD_COLUMNS_RUN

D = torch.float64


def _data(n=24, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=D, generator=gen)


def test_moments_merge_equals_one_pass_and_closed_forms():
    v = torch.randn(101, dtype=D, generator=torch.Generator().manual_seed(3))
    one, a, b = Moments(), Moments(), Moments()
    for chunk in v.split(7):
        one.add("q", chunk)
    a.add("q", v[:40])
    b.add("q", v[40:])
    a.merge(b)
    for m in (one, a):
        assert m.count("q") == 101
        assert m.mean("q") == pytest.approx(v.mean().item(), rel=1e-14)
        assert m.stderr("q") == pytest.approx((v.std() / math.sqrt(101)).item(), rel=1e-12)
    a.add_sum("s", 2.5)
    assert a.total("s") == 2.5 and a.total("absent") == 0.0
    assert math.isnan(Moments().stderr("q"))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: LocalRankMeter(m, atol=0.01),
        lambda m: NeighborhoodMeter(m, radius=0.3, n_vertices=6),
        lambda m: TotalVariationMeter(m, output="logits"),
    ],
    ids=["local_rank", "neighborhood", "tv"],
)
def test_merging_meters_over_two_halves_equals_one_meter(make):
    model = mlp([4, 12, 10, 3], seed=1).double()
    x = _data()
    whole = make(model)
    whole.update(x)
    first, second = make(model), make(model)
    first.update(x[:10])
    second.update(x[10:])
    assert_same_result(first.merge(second).compute(), whole.compute())
    first.reset()
    with pytest.raises(rs.InputError, match="before any data"):
        first.compute()


def test_merging_lc_meters_pools_their_points():
    """LC draws noise per point, so two meters see other noise than one: the merged estimate
    must be the points-weighted mean of the two, with the pooled standard error."""
    model = mlp([4, 12, 10, 3], seed=1).double()
    x = _data()
    a = LocalComplexityMeter(model, sigma=0.2, seed=1)
    b = LocalComplexityMeter(model, sigma=0.2, seed=1)
    a.update(x[:10])
    b.update(x[10:])
    va, vb = a.point_values(x[:10]), b.point_values(x[10:])  # the next noise draws
    ra, rb = a.compute(), b.compute()
    merged = a.merge(b).compute()
    assert merged.num_points == 24
    assert merged.value == pytest.approx((10 * ra.value + 14 * rb.value) / 24, rel=1e-12)
    for site in merged.per_layer:
        want = (10 * ra.per_layer[site] + 14 * rb.per_layer[site]) / 24
        assert merged.per_layer[site] == pytest.approx(want, rel=1e-12)
    assert set(va) == set(vb) == {"lc", *merged.per_layer}
    # pooled standard error from the two halves' means and standard errors
    m2 = sum((r.stderr**2) * k * (k - 1) for r, k in ((ra, 10), (rb, 14)))
    m2 += (ra.value - rb.value) ** 2 * 10 * 14 / 24
    assert merged.stderr == pytest.approx(math.sqrt(m2 / 23 / 24), rel=1e-10)


def test_merging_neural_collapse_meters_equals_one_meter():
    model = mlp([4, 12, 10, 3], seed=2).double()
    x, y = _data(30), torch.arange(30) % 3
    whole = NeuralCollapseMeter(model)
    whole.update(x, y)
    a, b = NeuralCollapseMeter(model), NeuralCollapseMeter(model)
    a.update(x[:13], y[:13])
    b.update(x[13:], y[13:])
    got, want = a.merge(b).compute(), whole.compute()
    assert got.num_points == want.num_points and got.class_counts == want.class_counts
    for layer, metrics in want.values.items():
        assert got.values[layer] == pytest.approx(metrics, rel=1e-9, nan_ok=True)


def test_merge_refuses_other_measures_and_options():
    model = mlp([4, 6, 2], seed=0)
    with pytest.raises(rs.InputError, match="needs another LocalRankMeter"):
        LocalRankMeter(model).merge(TotalVariationMeter(model))
    with pytest.raises(rs.InputError, match="different options.*atol"):
        LocalRankMeter(model, atol=0.1).merge(LocalRankMeter(model, atol=0.2))


def test_one_call_shape_options_are_keyword_only():
    model, x = mlp([4, 6, 2], seed=0), _data(5).float()
    for measure in (rs.local_complexity, rs.local_rank, rs.total_variation):
        with pytest.raises(TypeError):
            measure(model, x, 0.1)
    with pytest.raises(rs.InputError, match="data must be None"):
        rs.weight_ranks(model, x)
    assert rs.weight_ranks(model, None).layers[0].layer == "1"


def test_records_share_the_schema_and_join_on_layer():
    model = mlp([4, 12, 10, 3], seed=3).double()
    x, y = _data(30), torch.arange(30) % 3
    frames = {
        "lc": rs.local_complexity(model, x, sigma=0.1).to_frame(split="train"),
        "rank": rs.local_rank(model, x).to_frame(split="train"),
        "tv": rs.total_variation(model, x).to_frame(split="train"),
        "nc": rs.neural_collapse(model, x, labels=y).to_frame(split="train"),
        "weights": rs.weight_ranks(model).to_frame(),
        "bounds": compare(model, x, y, margin=0.1).to_frame(split="train"),
    }
    for name, frame in frames.items():
        assert tuple(frame.columns[:5]) == RECORD_COLUMNS, name
        assert frame["value"].notna().any(), name
    sites = [s.name for s in rs.trace(model, (4,)).sites]
    assert set(frames["weights"]["layer"]) == {*sites, "output"}
    ranks = frames["weights"].query("metric == 'numerical_rank'")[["layer", "value"]]
    lc = frames["lc"].query("metric == 'lc' and layer.notna()")[["layer", "value"]]
    joined = lc.merge(ranks, on="layer", suffixes=("_lc", "_rank"))
    assert list(joined["layer"]) == sites  # every site's LC beside its weight's rank
    assert rs.local_rank(model, x).to_records()[0]["dtype"] == "float64"


def test_probes_accept_every_result_type():
    from reluscope.data import Dataset
    from reluscope.train import ProbeRunner, probes
    from reluscope.train.schedule import every

    model = mlp([4, 12, 10, 3], seed=3)
    x, y = _data(30).float(), torch.arange(30) % 3
    data = Dataset(x, y, "toy")
    runner = ProbeRunner(
        [
            probes.weight_ranks(),
            probes.neural_collapse(n_points=30, dtype=D),
            probes.bounds(margin=0.1),
        ],
        data,
        default_schedule=every(1, 1),
    )
    runner.run(model, step=0)
    frame = runner.frame()
    assert isinstance(frame, pd.DataFrame)
    metrics = set(frame["metric"])
    assert {"numerical_rank", "nc1", "log10_bound"} <= metrics
    nc1 = frame.query("metric == 'nc1' and layer == '3'")["value"].item()
    direct = rs.neural_collapse(model, x, labels=y, dtype=D).value("nc1", "3")
    assert nc1 == pytest.approx(direct, rel=1e-9)


def test_bounds_probe_keeps_each_bound_and_picks_its_margin_per_step():
    """The bounds probe's records name their bound (column ``bound``), its margin is the
    quantile of the positive margins, and its numbers equal compare()'s at that margin."""
    from reluscope.bounds import default_margin
    from reluscope.data import Dataset
    from reluscope.train import ProbeRunner, probes
    from reluscope.train.schedule import every

    model = mlp([4, 12, 3], bias=False, seed=3)
    x, y = _data(40).float(), torch.arange(40) % 3
    probe = probes.bounds(margin_quantile=0.2, numbers=["log10_bound", "margin_risk"])
    runner = ProbeRunner([probe], Dataset(x, y, "toy"), default_schedule=every(1, 1))
    runner.run(model, step=0)
    frame = runner.frame()
    assert tuple(frame.columns) == RECORD_COLUMNS_RUN + ("bound",)
    xd = x.double()
    with torch.no_grad():
        gamma = default_margin(model.double()(xd), y, 0.2)
    assert frame.query("metric == 'margin'")["value"].item() == pytest.approx(gamma, rel=1e-12)
    table = compare(model, xd, y, margin=gamma)
    assert tuple(r["metric"] for r in table.results[0].to_records()) == BOUND_NUMBERS
    bound_rows = frame[frame["bound"].notna()]
    assert set(bound_rows["metric"]) == {"log10_bound", "margin_risk"}
    assert set(bound_rows["bound"]) == {r.name for r in table.results}
    for r in table.results:
        got = bound_rows.query("bound == @r.name").set_index("metric")["value"]
        assert got["log10_bound"] == pytest.approx(r.log10_value, rel=1e-12)
        assert got["margin_risk"] == pytest.approx(r.margin_risk, abs=1e-15)
    with pytest.raises(InputError, match="margin"):
        probes.bounds()
    with pytest.raises(InputError, match="numbers must be"):
        probes.bounds(margin=1.0, numbers=["log10_bond"])


def test_bound_table_layer_records_name_layers_by_site():
    model = mlp([4, 6, 5, 3], bias=False, seed=1)
    x, y = _data(20), torch.arange(20) % 3
    table = compare(model, x, y, margin=0.5)
    rows = table.layer_records(run="a")
    sites = [s.name for s in rs.trace(model, (4,)).sites]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for name, layer in zip([*sites, "output"], linears, strict=True):
        s = torch.linalg.svdvals(layer.weight.detach().double())
        got = {r["metric"]: r["value"] for r in rows if r["layer"] == name}
        assert got["spectral_norm"] == pytest.approx(s[0].item(), rel=1e-12)
        assert got["frobenius_norm"] == pytest.approx(s.norm().item(), rel=1e-12)
        assert got["rank"] == min(layer.weight.shape)
        assert got["stable_rank"] == pytest.approx((s.norm() ** 2 / s[0] ** 2).item(), rel=1e-12)
    assert {r["run"] for r in rows} == {"a"}


def test_dynamics_and_truncation_results_follow_the_record_protocol():
    """The dynamics results and the truncation effect convert through the one protocol: the
    schema's columns first, ``split`` and the tags stored, and the values their own numbers."""
    from reluscope import dynamics as dyn
    from reluscope.lowrank import truncation_effect

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, dtype=D, generator=gen)
    x = torch.cat([x, -x])  # a symmetric data set
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=D)
    cmp = dyn.compare(
        x, y, dyn.random_init([3, 4, 1], 0.1, seed=1), alpha=0.2, lr=0.05, steps=4, snapshots=[0, 4]
    )
    spectra = dyn.layer_spectra(cmp.bias_free)
    curve = dyn.theory_curve(dyn.whiten(x), y, 3, lr=0.05, alpha=0.2, u0=0.01)
    model = mlp([3, 5, 2], seed=0).double()
    labels = torch.arange(24) % 2
    results = {
        "comparison": cmp,
        "spectra": spectra,
        "odd_even": dyn.odd_even(model, x),
        "symmetry": dyn.symmetry_report(x, y),
        "theory": curve,
        "truncation": truncation_effect(model, x, labels, 1),
    }
    for name, result in results.items():
        frame = result.to_frame(split="train", run="r")
        assert tuple(frame.columns[:5]) == RECORD_COLUMNS, name
        assert set(frame["split"]) == {"train"} and set(frame["run"]) == {"r"}, name
    losses = cmp.to_frame().query("metric == 'loss' and net == 'bias_free'")
    np.testing.assert_array_equal(losses["value"].to_numpy(), cmp.bias_free.loss)
    errors = cmp.to_frame().query("metric == 'relative_error'")["value"].to_numpy()
    np.testing.assert_array_equal(errors, cmp.relative_error)
    sv = spectra.to_frame().query("layer == '2' and step == 4").sort_values("index")
    np.testing.assert_allclose(sv["value"].to_numpy(), spectra.values[1][-1], rtol=0)
    theory = curve.to_frame().query("metric == 'loss'")["value"].to_numpy()
    np.testing.assert_array_equal(theory, curve.loss)
    assert results["symmetry"].to_frame().set_index("metric").loc["symmetric", "value"] == 1.0
