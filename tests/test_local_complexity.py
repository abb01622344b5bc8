"""Local complexity against ground truth: closed forms, full Jacobians, exact 1-D regions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacfwd, vmap
from torch.utils.data import DataLoader, TensorDataset

from reluscope.errors import InputError
from reluscope.measures.gradnorms import bias_noise
from reluscope.measures.local_complexity import LocalComplexityMeter, local_complexity
from reluscope.nets import cnn, mlp, resnet, trace
from reluscope.nets.pwl import INPUT
from reluscope.regions import line

D = torch.float64


# ------------------------------------------------------------------ full-Jacobian reference
def reference(net, x, sigma, *, seed=0, draws=1):
    """The authors' method on the noisy network: vmap(jacfwd) of every site's pre-activation.

    Noise rows are drawn like the measure does for one batch. Returns, by site, the full
    pre-activation zbar, the bias-free one u and the gradient norms, each (rows, neurons).
    """
    rows = x.repeat((draws,) + (1,) * (x.dim() - 1))
    noise = bias_noise(net, len(rows), sigma, torch.Generator().manual_seed(seed))

    def preacts(xi, eps):
        values, zbar, free = {INPUT: xi[None]}, {}, {}
        for n in net.nodes:
            ins = [values[a] for a in n.inputs]
            if n.is_site:
                src = net.node(n.inputs[0])
                zbar[n.name] = ins[0][0]
                free[n.name] = src.op.linear(*(values[a] for a in src.inputs))[0]
                values[n.name] = n.op.forward(ins[0] + eps[n.name][None])
            else:
                values[n.name] = n.op.forward(*ins)
        return zbar, free

    jac = vmap(jacfwd(lambda xi, eps: preacts(xi, eps)[0]))(rows, noise)
    zbar, free = vmap(preacts)(rows, noise)
    flat = {s: t.reshape(len(rows), -1) for s, t in zbar.items()}
    return {
        s.name: {
            "zbar": flat[s.name],
            "u": free[s.name].reshape(len(rows), -1),
            "norm": jac[s.name].reshape(len(rows), flat[s.name].shape[1], -1).norm(dim=2),
        }
        for s in net.sites
    }


def reference_lc(ref, sigma, centring, normalised, draws=1):
    """Per-site LC of the reference: mean over rows of sum_z k(a_z) ||grad z||."""
    out = {}
    for site, r in ref.items():
        a = r["zbar"] if centring == "full" else r["u"]
        k = torch.exp(-0.5 * (a / sigma) ** 2)
        if normalised:
            k = k / (math.sqrt(2 * math.pi) * sigma)
        out[site] = float((k * r["norm"]).sum(dim=1).mean())
    return out


SMALL_NETS = {
    "mlp": lambda: (mlp([5, 12, 10, 8, 3], seed=1), (5,)),
    "leaky": lambda: (mlp([4, 9, 9, 2], activation="leaky_relu", slope=0.2, seed=2), (4,)),
    "cnn": lambda: (cnn(2, 8, (3, 4), 3, seed=3), (2, 8, 8)),
    "resnet": lambda: (resnet(2, 6, width=3, blocks=1, num_classes=2, seed=4), (2, 6, 6)),
}


@pytest.mark.parametrize("preset", ["theory", "paper_code"])
@pytest.mark.parametrize("name", list(SMALL_NETS))
def test_exact_method_equals_the_full_jacobian_reference(name, preset):
    model, shape = SMALL_NETS[name]()
    net = trace(model.double(), shape)
    x = torch.randn((20,) + shape, generator=torch.Generator().manual_seed(5), dtype=D)
    sigma, draws = 0.3, 2
    got = local_complexity(net, x, sigma, preset=preset, noise_draws=draws, seed=7)
    centring, normalised = ("full", True) if preset == "theory" else ("no_bias", False)
    want = reference_lc(reference(net, x, sigma, seed=7, draws=draws), sigma, centring, normalised)
    assert got.value == pytest.approx(sum(want.values()), rel=1e-9)
    for site, value in want.items():
        assert got.per_layer[site] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert got.extra["truncation_bound"] < 1e-15 * got.value
    assert got.num_points == 20


@pytest.mark.parametrize("preset", ["theory", "paper_code"])
def test_truncation_bound_holds(preset):
    net = trace(mlp([3, 16, 16, 16, 2], seed=6).double(), (3,))
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    centring, normalised = ("full", True) if preset == "theory" else ("no_bias", False)
    want = sum(reference_lc(reference(net, x, 0.2), 0.2, centring, normalised).values())
    for cutoff in (0.5, 1.0, 2.0, 3.0):
        got = local_complexity(net, x, 0.2, preset=preset, cutoff=cutoff)
        assert 0 <= want - got.value <= got.extra["truncation_bound"] * (1 + 1e-9)
        assert 0 < got.extra["near_threshold_fraction"] < 1


def test_single_first_layer_neuron_matches_the_gaussian_convolution():
    """z = w.x + b, x ~ N(0, I): LC = ||w|| N(0; b, sigma^2 + ||w||^2)."""
    w, b, sigma = torch.tensor([[0.8, -0.5, 0.3]], dtype=D), 0.4, 0.25
    first = nn.Linear(3, 1).double()
    first.weight.data.copy_(w)
    first.bias.data.fill_(b)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(1, 1).double())
    x = torch.randn(40000, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    got = local_complexity(model, x, sigma, batch_size=8192)
    var = sigma**2 + float(w.norm()) ** 2
    truth = float(w.norm()) * math.exp(-(b**2) / (2 * var)) / math.sqrt(2 * math.pi * var)
    assert abs(got.value - truth) < 4 * got.stderr
    assert got.stderr < 0.01 * truth


def test_tiny_sigma_gives_the_density_of_region_boundaries_on_a_line():
    """1-D inputs uniform on [a, b]: LC * (b - a) -> number of breakpoints, site by site."""
    model = mlp([1, 8, 8, 1], seed=3).double()
    a, b, sigma, n = -2.0, 2.0, 1e-3, 400_000
    part = line(model, [a], [b])
    taus = part.breakpoints[1:-1]
    assert float(taus.min()) * (b - a) > 20 * sigma and float(1 - taus.max()) * (b - a) > 20 * sigma
    pre = part.net.preactivations(part.to_input(taus))
    counts = {}  # a breakpoint where k neurons of a site vanish counts k
    for site, p in pre.items():
        p = p.reshape(len(taus), -1)
        counts[site] = int((p.abs() <= 1e-9 * (p.abs().amax(dim=1, keepdim=True) + 1)).sum())
    assert sum(counts.values()) >= len(taus) > 5
    grid = a + (b - a) * (torch.arange(n, dtype=D) + 0.5) / n  # the uniform density, by quadrature
    got = local_complexity(model, grid[:, None], sigma, batch_size=100_000)
    first, second = counts
    # the first site sees no noise: quadrature of exact Gaussians around each breakpoint
    assert got.per_layer[first] * (b - a) == pytest.approx(counts[first], rel=1e-6)
    # the second site's breakpoints move with the first site's noise: Monte Carlo error
    err = got.per_layer_stderr[second] * (b - a)
    assert abs(got.per_layer[second] * (b - a) - counts[second]) < 4 * err + 1e-3 * counts[second]
    assert err < 0.03 * counts[second]


def test_presets_agree_up_to_the_constant_when_biases_are_zero():
    net = trace(mlp([4, 10, 10, 10, 2], bias=False, seed=4).double(), (4,))
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(2), dtype=D)
    theory = local_complexity(net, x, 0.05, noise_draws=2, seed=3)
    paper = local_complexity(net, x, 0.05, preset="paper_code", noise_draws=2, seed=3)
    assert paper.value == pytest.approx(math.sqrt(2 * math.pi) * 0.05 * theory.value, rel=1e-12)
    assert paper.params["centring"] == "no_bias" and paper.params["normalised"] is False


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_upper_and_lower_bounds_hold_on_random_nets(seed):
    net = trace(mlp([3, 12, 12, 12, 2], init_multiplier=2.0, seed=seed).double(), (3,))
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(seed), dtype=D)
    sigma = 0.1
    got = local_complexity(net, x, sigma, bounds=True)
    ref = reference(net, x, sigma)
    norm_sum = sum(float(r["norm"].sum(dim=1).mean()) for r in ref.values())
    assert got.extra["gradient_norm_sum"] == pytest.approx(norm_sum, rel=1e-9)
    assert got.value <= got.extra["upper_bound"]
    assert got.extra["upper_bound"] == pytest.approx(norm_sum / (math.sqrt(2 * math.pi) * sigma))
    for eta in (0.5 * sigma, sigma, 2 * sigma, 3 * sigma):
        c_eta = math.exp(-(eta**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
        outside = sum(
            float((r["norm"] * (r["zbar"].abs() > eta)).sum(dim=1).mean()) for r in ref.values()
        )
        assert got.value >= c_eta * (norm_sum - outside) * (1 - 1e-9)
    sketch = local_complexity(net, x, sigma, method="sketch", bounds=True)
    assert sketch.value <= sketch.extra["upper_bound"]


def test_scaling_properties():
    model = mlp([3, 10, 10, 2], seed=5).double()
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(3), dtype=D)
    base = local_complexity(model, x, 0.1)
    first = base.params["layers"][0]
    scaled = mlp([3, 10, 10, 2], seed=5).double()
    with torch.no_grad():
        scaled[0].weight.mul_(2.5)
        scaled[0].bias.mul_(2.5)
    # first layer's weights and biases times a, sigma times a: that layer's LC is unchanged
    got = local_complexity(scaled, x, 0.25)
    assert got.per_layer[first] == pytest.approx(base.per_layer[first], rel=1e-10)
    # data scaled by c, first layer by 1/c: the same pre-activations, gradients / c
    shrunk = mlp([3, 10, 10, 2], seed=5).double()
    with torch.no_grad():
        shrunk[0].weight.div_(4.0)
    got = local_complexity(shrunk, 4.0 * x, 0.1)
    assert got.value == pytest.approx(base.value / 4.0, rel=1e-10)


def population_truth(net, sigma):
    """LC of ``net`` for x ~ N(0, I) from a large exact sample, and its standard error."""
    x = torch.randn(20000, *net.input_shape, generator=torch.Generator().manual_seed(99), dtype=D)
    got = local_complexity(net, x, sigma, batch_size=20000, seed=99)
    return got.value, got.stderr


def test_sketch_error_bars_cover_the_truth_and_are_unbiased():
    net = trace(mlp([6, 16, 16, 16, 2], seed=7).double(), (6,))
    sigma = 0.2
    truth, truth_err = population_truth(net, sigma)
    covered = covered_by_probe_error = 0
    diffs = []
    seeds = range(40)
    for seed in seeds:
        x = torch.randn(100, 6, generator=torch.Generator().manual_seed(seed), dtype=D)
        sketch = local_complexity(net, x, sigma, method="sketch", probes=8, seed=seed)
        exact = local_complexity(net, x, sigma, seed=seed)  # the same points and noise
        assert truth_err < 0.2 * sketch.stderr
        # the stderr (data, noise and probes) covers the population value
        covered += abs(sketch.value - truth) <= 2 * sketch.stderr
        # the probe stderr covers the exact value on the same points and noise
        probe_err = sketch.extra["probe_stderr"]
        covered_by_probe_error += abs(sketch.value - exact.value) <= 2 * probe_err
        assert probe_err < sketch.stderr
        diffs.append(sketch.value - exact.value)
    assert covered / len(seeds) >= 0.85
    assert covered_by_probe_error / len(seeds) >= 0.85
    diffs = torch.tensor(diffs, dtype=D)
    # unbiased: the probe error alone averages to zero
    assert abs(float(diffs.mean())) < 4 * float(diffs.std()) / math.sqrt(len(diffs))
    assert float(diffs.abs().max()) > 0


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_sketch_with_many_probes_is_close_to_exact_on_convolutional_nets(name):
    model, shape = SMALL_NETS[name]()
    x = torch.randn((6,) + shape, generator=torch.Generator().manual_seed(8), dtype=D)
    exact = local_complexity(model, x, 0.1, dtype=D)
    sketch = local_complexity(model, x, 0.1, method="sketch", probes=1024, dtype=D)
    assert sketch.value == pytest.approx(exact.value, rel=0.05)
    assert sketch.params["probes"] == 1024 and exact.params["probes"] is None


def test_layers_select_sites():
    net = trace(mlp([3, 8, 8, 8, 2], seed=1).double(), (3,))
    x = torch.randn(25, 3, generator=torch.Generator().manual_seed(4), dtype=D)
    full = local_complexity(net, x, 0.1)
    names = [s.name for s in net.sites]
    part = local_complexity(net, x, 0.1, layers=[names[2], names[0]])
    assert list(part.per_layer) == [names[0], names[2]]
    assert part.value == pytest.approx(full.per_layer[names[0]] + full.per_layer[names[2]])
    with pytest.raises(InputError, match=r"sites are \['1', '3', '5'\]"):
        local_complexity(net, x, 0.1, layers=["fc9"])


def test_streaming_over_a_dataloader_equals_the_tensor_call():
    model = mlp([4, 10, 10, 2], seed=2)
    x = torch.randn(70, 4, generator=torch.Generator().manual_seed(5))
    y = torch.zeros(70, dtype=torch.long)
    for method in ("exact", "sketch"):
        want = local_complexity(model, x, 0.1, method=method, batch_size=16, noise_draws=2)
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        got = local_complexity(model, loader, 0.1, method=method, noise_draws=2)
        assert got.value == want.value and got.stderr == want.stderr
        meter = LocalComplexityMeter(model, 0.1, method=method, noise_draws=2)
        for i in range(0, 70, 16):
            meter.update({"x": x[i : i + 16], "y": y[i : i + 16]})
        assert meter.compute().value == want.value
        meter.reset()
        meter.update((x[:16], y[:16]))
        assert meter.compute().num_points == 16
    assert want.params["dtype"] == "float32" and want.params["batch_size"] == 16


def test_result_records_every_option():
    model = mlp([2, 5, 2], seed=0)
    got = local_complexity(model, torch.randn(8, 2), 0.05, probes=3, method="sketch")
    assert got.name == "lc" and got.num_points == 8
    for key in ("sigma", "preset", "centring", "normalised", "method", "noise_draws", "cutoff"):
        assert key in got.params
    assert {r["metric"] for r in got.to_records()} >= {"lc", "lc.near_threshold_fraction"}


BAD_OPTIONS = [
    ({"sigma": 0.0}, "sigma"),
    ({"sigma": -1.0}, "sigma"),
    ({"sigma": float("nan")}, "sigma"),
    ({"sigma": float("inf")}, "sigma"),
    ({"cutoff": 0}, "cutoff"),
    ({"probes": 0}, "probes"),
    ({"noise_draws": 0}, "noise_draws"),
    ({"preset": "paper"}, "preset"),
    ({"method": "jacobian"}, "method"),
    ({"centring": "bias"}, "centring"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
]


@pytest.mark.parametrize("options, word", BAD_OPTIONS)
def test_bad_options_raise_input_error(options, word):
    kwargs = {"sigma": 0.1} | options
    with pytest.raises(InputError, match=word):
        local_complexity(mlp([3, 4, 2]), torch.randn(5, 3), **kwargs)


def test_bad_data_raise_input_error():
    model = mlp([3, 4, 2])
    with pytest.raises(InputError, match=r"expected \(batch, 3\)"):
        local_complexity(model, torch.randn(5, 4))
    with pytest.raises(InputError, match="NaN"):
        local_complexity(model, torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(InputError, match="empty"):
        local_complexity(model, torch.zeros(0, 3))
    with pytest.raises(InputError, match="empty"):
        local_complexity(model, DataLoader(TensorDataset(torch.zeros(0, 3)), batch_size=2))
    with pytest.raises(InputError, match="keys"):
        local_complexity(model, [{"image_id": torch.zeros(2, 3)}])
    with pytest.raises(InputError, match="no data"):
        LocalComplexityMeter(model).compute()
