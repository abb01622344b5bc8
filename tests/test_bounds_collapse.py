"""The collapse-aware low-rank bound: ranks, rank-factor parts and the bound against hand
computations, the model-level post hoc bound against `compare` (a peer implementation) and a
brute-force truncation, an exactly collapsed network, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reluscope import bounds as B
from reluscope.bounds.collapse import (
    collapse_aware,
    collapse_aware_bound,
    collapse_rank_factor,
    collapsed_ranks,
    rank_split,
)
from reluscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (6, 8, 8, 3)


def test_collapsed_ranks_by_hand():
    assert collapsed_ranks(WIDTHS, (5, 8, 3), 3, 1) == (5, 3, 3)
    assert collapsed_ranks(WIDTHS, (5, 8, 3), 3, 0) == (3, 3, 3)
    assert collapsed_ranks(WIDTHS, (5, 8, 3), 3, 3) == (5, 8, 3)
    # an absorbed bias adds the constant unit to every hidden layer, not to the output
    assert collapsed_ranks(WIDTHS, (5, 8, 3), 3, 0, absorbed=True) == (4, 4, 3)
    # a rank already below C stays; the layer's shape caps rho
    assert collapsed_ranks(WIDTHS, (2, 8, 3), 3, 0) == (2, 3, 3)
    assert collapsed_ranks((2, 8, 8, 3), (2, 8, 3), 5, 0) == (2, 5, 3)


def test_rank_factor_parts_by_hand():
    c1, c2 = 1.3, 0.7
    w = 2 * c2 + 1
    lower, collapsed = collapse_rank_factor(WIDTHS, (5, 8, 3), 3, 1, C1=c1, C2=c2)
    assert lower == pytest.approx(c1**2 * math.sqrt(5 * 8), rel=1e-14)
    expected = w * c1 * math.sqrt(3 * 8) + w * math.sqrt(3 * 3)
    assert collapsed == pytest.approx(expected, rel=1e-14)
    # the parts add up to the plain chain-rule factor of the collapsed ranks (peer function)
    for k in range(4):
        parts = collapse_rank_factor(WIDTHS, (5, 8, 3), 3, k, C1=c1, C2=c2)
        used = collapsed_ranks(WIDTHS, (5, 8, 3), 3, k)
        total = B.chain_rank_factor(WIDTHS, used, C1=c1, C2=c2)
        assert sum(parts) == pytest.approx(total, rel=1e-14)
    assert collapse_rank_factor(WIDTHS, (5, 8, 3), 3, 3)[1] == 0.0
    assert collapse_rank_factor(WIDTHS, (5, 8, 3), 3, 0)[0] == 0.0


def test_rank_split_by_hand():
    assert rank_split(WIDTHS, (5, 8, 3), 3) == 2
    assert rank_split(WIDTHS, (5, 2, 3), 3) == 1
    assert rank_split(WIDTHS, (2, 2, 2), 3) == 0
    assert rank_split(WIDTHS, (5, 4, 3), 3) == 2
    assert rank_split(WIDTHS, (5, 4, 3), 3, absorbed=True) == 1  # rho = C + 1 when absorbed


def test_a_priori_bound_by_hand():
    spectral, ranks = (1.5, 0.8, 2.0), (5, 8, 3)
    sample = B.SampleStats(n=50, data_norm=20.0, max_norm=4.0)
    gamma, delta, risk, c1, c2 = 0.3, 0.1, 0.06, 1.2, 0.5
    options = dict(margin=gamma, delta=delta, margin_risk=risk, C1=c1, C2=c2)
    result = collapse_aware_bound(WIDTHS, spectral, ranks, sample, classes=3, split=1, **options)
    w = 2 * c2 + 1
    factor = c1**2 * math.sqrt(5 * 8) + w * c1 * math.sqrt(3 * 8) + w * math.sqrt(3 * 3)
    complexity = 2 * math.sqrt(math.pi) / (gamma * 50) * 20.0 * 1.5 * 0.8 * 2.0 * factor
    confidence = math.sqrt(9 * math.log(2 / delta) / (2 * 50))
    assert result.value == pytest.approx(risk + complexity + confidence, rel=1e-12)
    assert 10**result.log10_rank_factor == pytest.approx(factor, rel=1e-12)
    assert 10 ** result.params["log10_collapsed_factor"] == pytest.approx(
        w * c1 * math.sqrt(24) + w * 3, rel=1e-12
    )
    assert result.params["collapsed_layers"] == (2, 3)
    assert result.params["ranks"] == (5, 3, 3)
    assert result.name == "collapse-aware" and "DERIVED" in result.source
    # nothing collapsed: the plain chain-rule bound (peer function)
    plain = B.low_rank_bound(WIDTHS, spectral, ranks, sample, **options)
    same = collapse_aware_bound(WIDTHS, spectral, ranks, sample, classes=3, split=3, **options)
    assert same.log10_value == pytest.approx(plain.log10_value, rel=1e-14)


def _model(seed: int = 0, bias: bool = False) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(5, 7, bias=bias),
        nn.ReLU(),
        nn.Linear(7, 6, bias=bias),
        nn.ReLU(),
        nn.Linear(6, 3, bias=bias),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.7)
    return model


def _data(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.arange(n) % 3


@pytest.mark.parametrize("bias", [False, True])
def test_post_hoc_matches_compare_at_every_split(bias):
    model, (x, y) = _model(bias=bias), _data()
    gamma = 0.2
    result = collapse_aware(model, x, y, margin=gamma, delta=0.1, C1=1.1, C2=0.6)
    assert result.depth == 3 and result.classes == 3
    for k, bound in result.by_split.items():
        ranks = result.ranks(k)
        peer = B.compare(
            model,
            x,
            y,
            margin=gamma,
            delta=0.1,
            bounds=["low-rank-post-hoc"],
            ranks=list(ranks),
            C1=1.1,
            C2=0.6,
        )["low-rank-post-hoc"]
        assert bound.log10_value == pytest.approx(peer.log10_value, rel=1e-12)
        assert bound.margin_risk == peer.margin_risk
        assert bound.params["split"] == k
    plain = B.compare(
        model, x, y, margin=gamma, delta=0.1, bounds=["low-rank-post-hoc"], C1=1.1, C2=0.6
    )["low-rank-post-hoc"]
    assert result.plain.log10_value == pytest.approx(plain.log10_value, rel=1e-12)
    values = {k: b.log10_value for k, b in result.by_split.items()}
    assert values[result.best_split] == min(values.values())


def test_truncated_margins_and_accuracy_by_brute_force():
    model, (x, y) = _model(), _data()
    gamma = 0.25
    result = collapse_aware(model, x, y, margin=gamma)
    w = [model[i].weight.detach().numpy() for i in (0, 2, 4)]

    def truncate(a: np.ndarray, r: int) -> np.ndarray:
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return (u[:, :r] * s[:r]) @ vt[:r]

    xs, ys = x.numpy(), y.numpy()
    for k in range(4):
        ws = [
            truncate(a, min(np.linalg.matrix_rank(a), 3)) if i >= k else a for i, a in enumerate(w)
        ]
        out = np.maximum(np.maximum(xs @ ws[0].T, 0) @ ws[1].T, 0) @ ws[2].T
        own = out[np.arange(len(ys)), ys]
        rest = np.where(np.eye(3, dtype=bool)[ys], -np.inf, out).max(axis=1)
        assert result.truncated[k].risk == pytest.approx(np.mean(own - rest <= gamma))
        assert result.accuracy[k] == pytest.approx(np.mean(out.argmax(axis=1) == ys))
    # only the output layer has rank <= C = 3: the spec's rule collapses nothing more
    assert result.numerical_ranks == (5, 6, 3)
    assert result.rank_split == 2


def test_exactly_collapsed_layers_lower_the_bound_at_no_cost():
    model, (x, y) = _model(seed=3), _data(seed=4)
    with torch.no_grad():  # the middle layer has rank 2 <= C = 3: collapsed exactly
        gen = torch.Generator().manual_seed(5)
        a = torch.randn(6, 2, generator=gen, dtype=torch.float64)
        model[2].weight.copy_(a @ torch.randn(2, 7, generator=gen, dtype=torch.float64))
    result = collapse_aware(model, x, y, margin=0.1)
    assert result.rank_split == 1
    aware, plain = result.by_split[1], result.plain
    assert aware.margin_risk == plain.margin_risk  # truncating a rank-2 layer changes nothing
    assert aware.log10_value <= plain.log10_value
    assert result.norms.ranks == (5, 2, 3)
    assert result.ranks(1) == (5, 2, 3)
    frame = result.to_frame(split="train", run="x")
    bounds = frame.query("metric == 'log10_bound'")
    assert list(bounds["rank_split"]) == [0, 1, 2, 3] and set(frame["split"]) == {"train"}
    assert bounds["spec_rule"].sum() == 1 and bounds["best"].sum() == 1
    assert list(bounds["value"]) == [result.by_split[k].log10_value for k in range(4)]
    accuracy = frame.query("metric == 'truncated_accuracy'")["value"]
    assert list(accuracy) == [result.accuracy[k] for k in range(4)]


def test_bad_input():
    sample = B.SampleStats(n=10, data_norm=5.0, max_norm=2.0)
    common = dict(margin=0.1, delta=0.1)
    with pytest.raises(InputError, match="classes"):
        collapsed_ranks(WIDTHS, (5, 8, 3), 1, 0)
    with pytest.raises(InputError, match="split"):
        collapsed_ranks(WIDTHS, (5, 8, 3), 3, 4)
    with pytest.raises(InputError, match="split"):
        collapsed_ranks(WIDTHS, (5, 8, 3), 3, -1)
    with pytest.raises(InputError, match="split"):
        collapse_rank_factor(WIDTHS, (5, 8, 3), 3, 1.5)
    with pytest.raises(InputError, match="ranks"):
        collapsed_ranks(WIDTHS, (5, 8), 3, 0)
    with pytest.raises(InputError, match="margin"):
        collapse_aware_bound(
            WIDTHS, (1, 1, 1), (5, 8, 3), sample, classes=3, split=1, margin=0.0, delta=0.1
        )
    with pytest.raises(InputError, match="delta"):
        collapse_aware_bound(
            WIDTHS, (1, 1, 1), (5, 8, 3), sample, classes=3, split=1, margin=0.1, delta=1.0
        )
    with pytest.raises(InputError, match="C1"):
        collapse_rank_factor(WIDTHS, (5, 8, 3), 3, 1, C1=0.0)
    model, (x, y) = _model(), _data()
    with pytest.raises(InputError, match="shape"):
        collapse_aware(model, x, y[:-1], **common)
    with pytest.raises(InputError, match="integer class indices"):
        collapse_aware(model, x, y.double(), **common)
    with pytest.raises(InputError, match="at least 2 distinct classes"):
        collapse_aware(model, x, torch.zeros(len(x), dtype=torch.long), **common)
    with pytest.raises(InputError, match="margin"):
        collapse_aware(model, x, y, margin=-1.0)
    with pytest.raises(InputError, match="classes"):
        collapse_aware(model, x, y, classes=1, **common)
