"""Helpers shared by the tests of the streaming measures."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class DictDataset(Dataset):
    """The points of ``x`` as dict samples: the point under ``key``, a dummy "label" beside it."""

    def __init__(self, x: torch.Tensor, key: str) -> None:
        self.x = x
        self.key = key

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {self.key: self.x[i], "label": torch.tensor(0)}


def stream(meter, batches):
    """``meter`` after ``update(batch)`` for each of ``batches``, in order."""
    for batch in batches:
        meter.update(batch)
    return meter


def assert_same_result(got, want, rel: float = 1e-12) -> None:
    """Two MeasureResults agree: the same name, params and number of points, and the same
    numbers up to the rounding of the streaming accumulator (relative ``rel``)."""
    import pytest

    assert (got.name, got.params, got.num_points) == (want.name, want.params, want.num_points)
    assert got.value == pytest.approx(want.value, rel=rel)
    assert got.stderr == pytest.approx(want.stderr, rel=rel, nan_ok=True)
    assert got.per_layer == pytest.approx(want.per_layer, rel=rel)
    assert got.per_layer_stderr == pytest.approx(want.per_layer_stderr, rel=rel, nan_ok=True)
    assert got.extra == pytest.approx(want.extra, rel=rel, nan_ok=True)
    assert got.layer_extra.keys() == want.layer_extra.keys()
    for key, values in got.layer_extra.items():
        assert values == pytest.approx(want.layer_extra[key], rel=rel)
