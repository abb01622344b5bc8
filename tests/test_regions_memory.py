"""A plane partition computed in chunks under a tiny memory budget equals the unchunked one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reluscope
from reluscope.regions import walk as walk_module

F64 = torch.float64


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(64, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).double()


def test_chunked_partition_equals_default_and_stays_in_budget(monkeypatch):
    g = torch.Generator().manual_seed(1)
    origin, u, v = (torch.randn(1, 10, 10, generator=g, dtype=F64) for _ in range(3))
    args = (_model(), origin, u, v, (-0.4, 0.4, -0.4, 0.4))
    tables: list[int] = []
    init = walk_module.Growable.__init__

    def record(self, data, max_bytes=None):
        init(self, data, max_bytes)
        if data.is_floating_point():
            tables.append(data.nbytes)

    monkeypatch.setattr(walk_module.Growable, "__init__", record)
    full = reluscope.plane(*args, input_shape=(1, 10, 10))
    largest_full = max(tables)
    tables.clear()
    budget = 1 << 20
    small = reluscope.plane(*args, input_shape=(1, 10, 10), memory_budget=budget)
    assert largest_full > 4 * budget  # the default run really needs more than the budget
    assert max(tables) <= budget
    assert (small.num_regions, small.num_vertices) == (full.num_regions, full.num_vertices)
    assert len(small.adjacency()) == len(full.adjacency())
    # the same vertices, up to the rounding of batched matrix products (~1e-15)
    a, b = torch.unique(full.vertices, dim=0), torch.unique(small.vertices, dim=0)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert torch.equal(full.counts.sort().values, small.counts.sort().values)
    assert torch.allclose(full.areas.sort().values, small.areas.sort().values, rtol=0, atol=1e-13)
    pa, pb = full.patterns(), small.patterns()
    assert torch.unique(pa, dim=0).shape == torch.unique(pb, dim=0).shape


def _line_model() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 3, padding=1),
        nn.Hardtanh(-0.5, 0.5),
        nn.Flatten(),
        nn.Linear(128, 16),
        nn.PReLU(16, init=0.1),
        nn.Linear(16, 3),
    ).double()


def test_chunked_line_equals_default_and_stays_in_budget(monkeypatch):
    g = torch.Generator().manual_seed(3)
    start, end = (4 * torch.randn(1, 8, 8, generator=g, dtype=F64) for _ in range(2))
    model = _line_model()
    tables: list[int] = []
    init = walk_module.Growable.__init__

    def record(self, data, max_bytes=None):
        init(self, data, max_bytes)
        if data.is_floating_point():
            tables.append(data.nbytes)

    monkeypatch.setattr(walk_module.Growable, "__init__", record)
    full = reluscope.line(model, start, end, input_shape=(1, 8, 8))
    largest_full = max(tables)
    tables.clear()
    budget = 1 << 20
    small = reluscope.line(model, start, end, input_shape=(1, 8, 8), memory_budget=budget)
    assert largest_full > 4 * budget  # the default run really needs more than the budget
    assert max(tables) <= budget
    assert small.num_pieces == full.num_pieces > 300
    assert torch.allclose(small.breakpoints, full.breakpoints, rtol=0, atol=1e-12)
    assert torch.allclose(small.outputs, full.outputs, rtol=0, atol=1e-10)
    assert torch.equal(small.patterns(), full.patterns())
    # brute force: a dense grid of the segment meets exactly the pieces' patterns, in order
    tau = torch.linspace(0, 1, 5001, dtype=F64)
    dense = full.net.pattern_vector(full.to_input(tau))
    changes = 1 + int((dense[1:] != dense[:-1]).any(dim=1).sum())
    assert changes <= small.num_pieces
    assert torch.equal(small.patterns()[small.piece_of(tau)], dense)


def test_a_line_whose_two_ends_exceed_the_budget_is_refused_with_the_estimate():
    wide = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(65536, 2)
    )
    with pytest.raises(
        reluscope.InputError, match=r"storing 65537 values each.*raise memory_budget"
    ):
        reluscope.line(
            wide.double(),
            torch.zeros(1, 32, 32),
            torch.ones(1, 32, 32),
            input_shape=(1, 32, 32),
            memory_budget=1 << 20,
        )
