"""Low-rank layers and training modes: factorised layers keep their rank through training and
trace; truncation is the Eckart-Young best approximation; clipping caps exactly the large
singular values; the nuclear-norm penalty and its gradient match numpy and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reluscope as rs
from reluscope.errors import InputError
from reluscope.lowrank import (
    LowRankLinear,
    clip_spectral_norms_,
    factorize,
    nuclear_norm_penalty,
    truncate_svd,
    truncation_effect,
)
from reluscope.nets import mlp
from reluscope.nets.ops import LinearOp

pytestmark = pytest.mark.usefixtures("one_thread")


def model64(widths=(6, 8, 7, 3), seed: int = 0) -> nn.Sequential:
    return mlp(list(widths), seed=seed).double()


def svals(w: torch.Tensor) -> np.ndarray:
    return np.linalg.svd(w.detach().numpy(), compute_uv=False)


# ----------------------------------------------------------------- LowRankLinear
def test_low_rank_linear_is_v_then_u_and_traces_to_two_linear_ops():
    torch.manual_seed(0)
    layer = LowRankLinear(5, 4, rank=2).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    expected = x @ layer.v.weight.T @ layer.u.weight.T + layer.u.bias
    assert torch.allclose(layer(x), expected, atol=1e-14)
    assert torch.allclose(layer.weight, layer.u.weight @ layer.v.weight)
    assert np.linalg.matrix_rank(layer.weight.detach().numpy()) == 2
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), layer).double()
    net = rs.trace(model, (3,))  # checks the traced output against the module's
    assert [type(n.op) for n in net.nodes][-2:] == [LinearOp, LinearOp]
    assert [n.path for n in net.nodes][-2:] == ["2.v", "2.u"]
    assert torch.allclose(net(x[:, :3]), model(x[:, :3]), atol=1e-13)
    assert torch.allclose(rs.trace(layer, (5,))(x), layer(x), atol=1e-13)


def test_factorized_layers_keep_rank_through_training():
    torch.manual_seed(0)
    model = factorize(mlp([4, 16, 16, 3], seed=0), {"0": 2, "2": 3})
    ranks = {"0": 2, "2": 3}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, r in ranks.items():
        layer = model.get_submodule(name)
        w = (layer.u.weight @ layer.v.weight).detach().numpy()  # float32: its tolerance
        assert np.linalg.matrix_rank(w) <= r
        assert layer.v.weight.shape == (r, layer.in_features)
    assert isinstance(model[4], nn.Linear)  # not named: left dense


def test_factorize_is_the_truncated_svd_and_leaves_the_input_alone():
    model = model64()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    low = factorize(model, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for i in (0, 2, 4):
        w = model[i].weight.detach()
        layer = low[i]
        assert isinstance(layer, LowRankLinear) and layer.rank == 2
        s = svals(w)
        err = torch.linalg.matrix_norm(w - layer.weight).item()
        assert err == pytest.approx(np.sqrt((s[2:] ** 2).sum()), rel=1e-10)
        assert torch.equal(layer.bias, model[i].bias)
        # balanced factors: U^T U = V V^T = diag(top singular values)
        uu = (layer.u.weight.T @ layer.u.weight).detach().numpy()
        assert np.allclose(uu, np.diag(s[:2]), atol=1e-12)
        assert np.allclose((layer.v.weight @ layer.v.weight.T).detach().numpy(), uu, atol=1e-12)
    assert isinstance(factorize(nn.Linear(4, 3), 1), LowRankLinear)


# ----------------------------------------------------------------- truncation
@pytest.mark.parametrize("r", [1, 2, 3])
def test_truncate_svd_is_the_eckart_young_approximation(r):
    model = model64()
    cut = truncate_svd(model, {"2": r})
    w, wr = model[2].weight.detach(), cut[2].weight.detach()
    u, s, vt = np.linalg.svd(w.numpy())
    best = (u[:, :r] * s[:r]) @ vt[:r]
    assert np.allclose(wr.numpy(), best, atol=1e-13)
    assert np.linalg.matrix_rank(wr.numpy()) == r
    frob = torch.linalg.matrix_norm(w - wr).item()
    assert frob == pytest.approx(np.sqrt((s[r:] ** 2).sum()), rel=1e-10)
    assert torch.linalg.matrix_norm(w - wr, ord=2).item() == pytest.approx(s[r], rel=1e-10)
    for i in (0, 4):  # not named: unchanged
        assert torch.equal(cut[i].weight, model[i].weight)
    assert torch.equal(cut[2].bias, model[2].bias)


def test_truncate_svd_of_a_low_rank_layer_keeps_its_shape():
    model = factorize(model64(), {"0": 4})
    cut = truncate_svd(model, {"0": 2})
    assert cut[0].u.weight.shape == model[0].u.weight.shape
    w = model[0].weight.detach()
    s = svals(w)
    err = torch.linalg.matrix_norm(w - cut[0].weight).item()
    assert err == pytest.approx(np.sqrt((s[2:] ** 2).sum()), rel=1e-9)
    assert np.linalg.matrix_rank(cut[0].weight.detach().numpy()) == 2


def brute_margins(out: torch.Tensor, y: torch.Tensor) -> list[float]:
    rows = []
    for o, k in zip(out.tolist(), y.tolist(), strict=True):
        rows.append(o[k] - max(v for j, v in enumerate(o) if j != k))
    return rows


def test_truncation_effect_against_a_direct_computation():
    model = model64(seed=3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=gen)
    effect = truncation_effect(model, x, y, 1, gamma=0.1)
    cut = truncate_svd(model, 1)
    with torch.no_grad():
        out, out_r = model(x), cut(x)
    for values, o in ((effect.before, out), (effect.after, out_r)):
        m = brute_margins(o, y)
        assert values["accuracy"] == pytest.approx((o.argmax(1) == y).double().mean().item())
        assert values["margin"] == pytest.approx(np.mean(m), rel=1e-12)
        assert values["margin_risk"] == pytest.approx(np.mean(np.array(m) <= 0.1))
    agree = (out.argmax(1) == out_r.argmax(1)).double().mean().item()
    assert effect.agreement == pytest.approx(agree)
    for i in (0, 2, 4):
        w = model[i].weight.detach()
        s = svals(w)
        rel = np.sqrt((s[1:] ** 2).sum() / (s**2).sum())
        assert effect.relative_error[str(i)] == pytest.approx(rel, rel=1e-9)
    assert effect.ranks == {"0": 1, "2": 1, "4": 1}
    rows = effect.to_records(run="t")
    assert {r["metric"] for r in rows} >= {"accuracy_before", "margin_after", "relative_error"}
    full = truncation_effect(model, x, y, {"0": 6, "2": 7, "4": 3})
    assert full.before == pytest.approx(full.after, rel=1e-12) and full.agreement == 1.0
    assert max(full.relative_error.values()) < 1e-14


def test_truncation_effect_single_output_margin():
    model = mlp([3, 5, 1], seed=0).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.arange(20) % 2
    effect = truncation_effect(model, x, y, 1)
    with torch.no_grad():
        f = model(x)[:, 0]
    expected = ((2 * y - 1) * f).mean().item()
    assert effect.before["margin"] == pytest.approx(expected, rel=1e-12)
    assert effect.before["accuracy"] == pytest.approx(((f > 0).long() == y).double().mean().item())


# ----------------------------------------------------------------- spectral clipping
def test_clip_caps_large_singular_values_and_keeps_the_rest():
    model = model64()
    before = {str(i): svals(model[i].weight) for i in (0, 2, 4)}
    bound = float(np.median(np.concatenate(list(before.values()))))
    norms = clip_spectral_norms_(model, bound)
    for name, s in before.items():
        assert norms[name] == pytest.approx(s[0], rel=1e-12)
        after = svals(model.get_submodule(name).weight)
        assert after[0] <= bound * (1 + 1e-12)
        assert np.allclose(after, np.minimum(s, bound), rtol=1e-12, atol=1e-13)


def test_clip_of_a_low_rank_layer_changes_only_u():
    model = factorize(model64(), {"2": 3})
    v = model[2].v.weight.clone()
    s = svals(model[2].weight)
    bound = float(s[1])  # the top singular value is clipped, the others kept
    clip_spectral_norms_(model, {"2": bound})
    assert torch.equal(model[2].v.weight, v)
    after = svals(model[2].weight)
    assert np.allclose(after[:3], np.minimum(s[:3], bound), rtol=1e-12)
    assert after[0] <= bound * (1 + 1e-12)


def test_clip_leaves_small_weights_alone_and_float32():
    model = mlp([4, 5, 2], seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    clip_spectral_norms_(model, 1e6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    clip_spectral_norms_(model, 0.25)
    for i in (0, 2):
        assert torch.linalg.matrix_norm(model[i].weight, ord=2).item() <= 0.25 * (1 + 1e-6)


# ----------------------------------------------------------------- nuclear norm
def test_nuclear_norm_penalty_value_and_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), LowRankLinear(3, 3, rank=2)).double()
    penalty = nuclear_norm_penalty(model)
    w_dense = model[0].weight.detach().numpy()
    w_low = (model[2].u.weight @ model[2].v.weight).detach().numpy()
    expected = np.linalg.norm(w_dense, "nuc") + np.linalg.norm(w_low, "nuc")
    assert penalty.item() == pytest.approx(expected, rel=1e-12)
    assert nuclear_norm_penalty(model, ["0"]).item() == pytest.approx(
        np.linalg.norm(w_dense, "nuc"), rel=1e-12
    )
    penalty.backward()
    h = 1e-6
    params = [model[0].weight, model[2].u.weight, model[2].v.weight]
    for p in params:
        numeric = torch.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            with torch.no_grad():
                p[idx] += h
                up = nuclear_norm_penalty(model).item()
                p[idx] -= 2 * h
                down = nuclear_norm_penalty(model).item()
                p[idx] += h
            numeric[idx] = (up - down) / (2 * h)
        assert torch.allclose(p.grad, numeric, atol=1e-7), (p.grad, numeric)
    assert model[0].bias.grad is None


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("rank", [0, -1, 4, 2.0, True, "2", None])
def test_bad_ranks(rank):
    model = mlp([4, 6, 3], seed=0)
    with pytest.raises(InputError, match="rank"):
        factorize(model, rank)
    with pytest.raises(InputError, match="rank"):
        truncate_svd(model, rank)
    with pytest.raises(InputError, match="rank"):
        truncate_svd(model, {"2": rank})


def test_bad_names_and_bounds():
    model = mlp([4, 6, 3], seed=0)
    with pytest.raises(InputError, match=r"unknown layer\(s\) \['1'\].*\['0', '2'\]"):
        factorize(model, {"1": 2})
    with pytest.raises(InputError, match="unknown layer"):
        truncate_svd(model, {"nope": 1})
    with pytest.raises(InputError, match="Linear layers"):
        nuclear_norm_penalty(model, ["1"])
    for bad in (0, -1.0, float("nan"), float("inf"), "a", True):
        with pytest.raises(InputError, match="max_norm"):
            clip_spectral_norms_(model, bad)
    with pytest.raises(InputError, match="no nn.Linear"):
        factorize(nn.Sequential(nn.ReLU()), 1)
    with pytest.raises(InputError, match="rank for LowRankLinear"):
        LowRankLinear(3, 5, rank=4)
    with pytest.raises(InputError, match="in_features"):
        LowRankLinear(0, 5, rank=1)
    with pytest.raises(InputError, match=r"expected \(5, 3\)"):
        LowRankLinear(3, 5, rank=1).set_weight(torch.zeros(3, 5))
    x, y = torch.randn(5, 4), torch.arange(5) % 3
    with pytest.raises(InputError, match=r"must be of shape \(5,\)"):
        truncation_effect(model, x, y[:4], 1)
    with pytest.raises(InputError, match="integer class indices"):
        truncation_effect(model, x, y.float(), 1)
    with pytest.raises(InputError, match="gamma"):
        truncation_effect(model, x, y, 1, gamma=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_matches_cpu():
    model = model64()
    low = factorize(model.cuda(), 2)
    assert low[0].u.weight.is_cuda
    penalty = nuclear_norm_penalty(low)
    assert penalty.item() == pytest.approx(nuclear_norm_penalty(low.cpu()).item(), rel=1e-10)
    clip_spectral_norms_(low.cuda(), 0.5)
    assert torch.linalg.matrix_norm(low[2].weight, ord=2).item() <= 0.5 * (1 + 1e-12)
