"""The explicit checks that replaced unchecked assumptions about Optional and union values
(found by mypy) raise clear errors, and the code rewritten around them computes what torch
computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reluscope.errors import InputError
from reluscope.experiments.config import ExperimentConfig, training
from reluscope.measures.total_variation import output_gradient_norm
from reluscope.nets import trace
from reluscope.nets.ops import AdaptiveAvgPoolOp
from reluscope.nets.sites import ActivationOp, MaxPoolOp
from reluscope.regions.line import _IntervalSplitter
from reluscope.regions.polygons import PolygonSplitter
from reluscope.regions.walk import Growable

F64 = torch.float64


def _inputs(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize(
    ("dims", "size", "expected"),
    [
        (1, 3, lambda x: F.adaptive_avg_pool1d(x, 3)),
        (1, (3,), lambda x: F.adaptive_avg_pool1d(x, 3)),
        (2, 2, lambda x: F.adaptive_avg_pool2d(x, 2)),
        (2, (2, None), lambda x: F.adaptive_avg_pool2d(x, (2, None))),
    ],
)
def test_adaptive_pool_sizes_match_torch(dims, size, expected):
    x = _inputs(2, 3, 7) if dims == 1 else _inputs(2, 3, 5, 6)
    torch.testing.assert_close(AdaptiveAvgPoolOp(dims, size).forward(x), expected(x))


@pytest.mark.parametrize(("dims", "size"), [(1, (2, 2)), (1, None), (2, (1, 2, 3)), (2, None)])
def test_adaptive_pool_with_a_size_of_the_wrong_rank_is_an_input_error(dims, size):
    x = _inputs(2, 3, 7) if dims == 1 else _inputs(2, 3, 5, 6)
    with pytest.raises(InputError, match=f"output_size of a {dims}-d adaptive average pool"):
        AdaptiveAvgPoolOp(dims, size).forward(x)


@pytest.mark.parametrize("dims", [1, 2])
def test_max_pool_leaders_pick_the_maximum_of_every_window(dims):
    op = MaxPoolOp.create(dims, 3, stride=2, padding=1, ceil_mode=True)
    z = _inputs(2, 3, 9) if dims == 1 else _inputs(2, 3, 7, 8)
    leaders = op.local(z)
    picked = z.flatten(2).gather(2, leaders.flatten(2)).reshape(leaders.shape)
    torch.testing.assert_close(picked, op.forward(z))


@pytest.mark.parametrize(("low", "high"), [(-1.0, 2.0), (-1.0, None), (None, 2.0)])
def test_clamp_activation_matches_torch_clamp(low, high):
    x = 3 * _inputs(50)
    torch.testing.assert_close(ActivationOp.clamp(low, high).forward(x), x.clamp(low, high))


def test_clamp_without_bounds_is_refused():
    with pytest.raises(ValueError, match="clamp needs a lower or an upper bound"):
        ActivationOp.clamp(None, None)


def test_site_slope_of_a_max_pool_site_is_a_value_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.25), nn.MaxPool2d(2))
    net = trace(model, (1, 6, 6))
    relu, pool = net.sites
    assert relu.slope == 0.25
    with pytest.raises(ValueError, match=f"site '{pool.name}' .* has no slope"):
        _ = pool.slope


def test_pattern_is_each_sites_pattern_of_its_preactivations():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.LeakyReLU(0.1))
    net = trace(model.double(), (3,))
    x = _inputs(5, 3)
    pre = net.preactivations(x)
    pattern = net.pattern(x)
    assert list(pattern) == [s.name for s in net.sites]
    for name, bits in pattern.items():
        assert torch.equal(bits, pre[name] > 0)


def test_output_gradient_norm_of_an_index_is_that_rows_norm():
    value, jac = _inputs(4, 3), _inputs(4, 3, 5, seed=1)
    torch.testing.assert_close(output_gradient_norm(2, value, jac), jac[:, 2].norm(dim=1))
    with pytest.raises(InputError, match="unknown output 'largest'"):
        output_gradient_norm("largest", value, jac)


def test_training_of_a_config_without_a_train_section_is_an_input_error():
    with pytest.raises(InputError, match="ExperimentConfig has no train section"):
        training(ExperimentConfig())


@pytest.mark.parametrize(
    "splitter",
    [_IntervalSplitter(), PolygonSplitter(torch.zeros(1, 3, dtype=torch.long), torch.tensor([3]))],
)
def test_merge_before_begin_merge_is_refused(splitter):
    table = Growable(_inputs(4, 2))
    with pytest.raises(RuntimeError, match="merge needs a begin_merge before it"):
        splitter.merge(table, lambda rows: rows > 0)
