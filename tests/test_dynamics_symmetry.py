"""The dataset symmetry test and its proxies (spec 2.3, 5(c))."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from reluscope.dynamics import cubic_teacher, symmetrize, symmetry_report
from reluscope.errors import InputError


def symmetric_set(n: int = 300, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = np.stack([x[:, 0] ** 3, np.sin(x[:, 1])], 1)
    return symmetrize(x, y)


def test_constructed_symmetric_set_is_symmetric():
    x, y = symmetric_set()
    rep = symmetry_report(x, y)
    assert rep.symmetric and rep.closed
    assert rep.unmatched == 0 and rep.unbalanced == 0 and rep.mirror_error == 0.0
    assert rep.mean_x_norm < 1e-15 and rep.mean_y_norm < 1e-15
    assert rep.odd_residual < 1e-15 and rep.odd_residual_corr < 1e-14
    assert rep.num_points == 600
    # a permutation does not matter; a perturbation below atol does not either
    perm = np.random.default_rng(1).permutation(len(x))
    noise = 1e-12 * np.random.default_rng(2).standard_normal(x.shape)
    rep = symmetry_report(x[perm] + noise, y[perm], atol=1e-10)
    assert rep.symmetric and 0 < rep.mirror_error <= 2e-10


def test_each_kind_of_asymmetry_is_found():
    x, y = symmetric_set()
    # one point removed: its mirror is left without a partner
    rep = symmetry_report(x[1:], y[1:])
    assert not rep.closed and not rep.symmetric
    assert rep.unmatched == 1 and rep.unbalanced == 1
    # one point duplicated: closed as a set but the empirical distribution is not symmetric
    rep = symmetry_report(np.concatenate([x, x[:1]]), np.concatenate([y, y[:1]]))
    assert rep.closed and not rep.symmetric and rep.unbalanced == 3
    # a perturbation above atol
    x2 = x.copy()
    x2[0, 0] += 1e-6
    rep = symmetry_report(x2, y, atol=1e-9)
    assert not rep.closed and rep.unmatched == 2
    # symmetric inputs but a target with an even part: (x, y) -> (-x, -y) fails everywhere
    y_even = y + np.abs(x[:, :1])
    rep = symmetry_report(x, y_even)
    assert rep.unmatched == len(x) and rep.mean_x_norm < 1e-15
    assert rep.odd_residual_corr > 0.1


def test_distribution_proxies():
    x, y = cubic_teacher(400, 5, augment=False, whiten=False, seed=3)
    rep = symmetry_report(x, y)
    assert not rep.closed and rep.unmatched == 800 // 2
    assert 0 < rep.odd_residual_corr < 0.5  # O(1/sqrt(P)) for an i.i.d. symmetric sample
    shifted = symmetry_report(*cubic_teacher(400, 5, shift=0.5, augment=False, whiten=False))
    assert shifted.mean_x_norm > 0.9 and shifted.odd_residual_corr > rep.odd_residual_corr
    sym = symmetry_report(*cubic_teacher(400, 5))
    assert sym.symmetric and sym.odd_residual_corr < 1e-13
    assert [r["metric"] for r in sym.to_records(run=1)][:3] == ["symmetric", "closed", "unmatched"]
    xl, _ = cubic_teacher(400, 5, augment=False, seed=4)
    linear = symmetry_report(xl, xl @ torch.arange(5.0, dtype=xl.dtype))
    assert linear.odd_residual < 1e-13 and linear.odd_residual_corr == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_fast_matching_agrees_with_brute_force(seed):
    """Coarse values (many duplicates, many near-mirrors) with sub-tolerance noise on some."""
    rng = np.random.default_rng(seed)
    z = rng.integers(-2, 3, size=(300, 3)).astype(np.float64) / 2
    z[rng.random(300) < 0.3] += 1e-10 * rng.standard_normal(3)
    z[:50] = -z[50:100]  # some exact mirrors
    z[100:110] += 0.2  # and some strays
    atol = 1e-9
    dist_copy = np.abs(z[:, None, :] - z[None, :, :]).max(2)
    dist_mirror = np.abs(z[:, None, :] + z[None, :, :]).max(2)
    copies, mirrors = (dist_copy <= atol).sum(1), (dist_mirror <= atol).sum(1)
    rep = symmetry_report(z[:, :2], z[:, 2], atol=atol)
    assert rep.unmatched == (mirrors == 0).sum()
    assert rep.unbalanced == (copies != mirrors).sum()
    assert rep.closed == (mirrors > 0).all() and rep.symmetric == (copies == mirrors).all()
    matched = mirrors > 0
    expected_error = np.where(dist_mirror <= atol, dist_mirror, np.inf).min(1)[matched].max()
    assert rep.mirror_error == expected_error
    sym = symmetry_report(*symmetrize(z[:, :2], z[:, 2]), atol=atol)
    assert sym.symmetric


def test_large_sets_are_fast():
    x, y = symmetric_set(n=50_000, d=8)
    start = time.perf_counter()
    rep = symmetry_report(x, y)
    assert rep.symmetric and rep.num_points == 100_000
    assert time.perf_counter() - start < 10.0


def test_symmetrize_keeps_types_and_shapes():
    x, y = torch.randn(5, 3, dtype=torch.float32), torch.randn(5)
    xs, ys = symmetrize(x, y)
    assert isinstance(xs, torch.Tensor) and xs.dtype == torch.float32 and xs.shape == (10, 3)
    assert ys.shape == (10,) and torch.equal(ys[5:], -y)
    xn, yn = symmetrize(x.numpy(), y.numpy()[:, None])
    assert isinstance(xn, np.ndarray) and yn.shape == (10, 1)
    assert symmetry_report(xs, ys).symmetric


def test_bad_input():
    x, y = symmetric_set(10)
    with pytest.raises(InputError, match="same number of points"):
        symmetry_report(x, y[:-1])
    with pytest.raises(InputError, match="same number of points"):
        symmetrize(x, y[:-1])
    with pytest.raises(InputError, match="empty"):
        symmetry_report(np.empty((0, 3)), np.empty(0))
    with pytest.raises(InputError, match="NaN"):
        symmetry_report(np.full((2, 3), np.nan), np.zeros(2))
    with pytest.raises(InputError, match="atol"):
        symmetry_report(x, y, atol=-1.0)
    with pytest.raises(InputError, match=r"shape \(points, features\)"):
        symmetry_report(x[:, 0], y)
