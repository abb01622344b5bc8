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
