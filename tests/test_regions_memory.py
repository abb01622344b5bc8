"""A plane partition computed in chunks under a tiny memory budget equals the unchunked one."""

from __future__ import annotations

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
