"""The Dataset every loader returns, and seeded subsets of it (subsample, train/test split)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from reluscope.errors import InputError


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (float32, shape ``(n, *input_shape)``), integer labels ``y`` (int64, shape
    ``(n,)``, or None for unlabelled data), a short ``name`` and ``info`` (the options used and
    facts about the data such as ``classes``)."""

    x: Tensor
    y: Tensor | None
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() < 2:
            raise InputError(
                f"data set {self.name!r}: x must be a float32 tensor of shape (n, features...), "
                f"got {self.x.dtype} of shape {tuple(self.x.shape)}"
            )
        if self.y is not None and (self.y.dtype != torch.int64 or self.y.shape != self.x.shape[:1]):
            raise InputError(
                f"data set {self.name!r}: y must be an int64 tensor of shape ({len(self.x)},), "
                f"got {self.y.dtype} of shape {tuple(self.y.shape)}"
            )

    @property
    def labels(self) -> Tensor:
        """The labels ``y``; an InputError when the data set has none."""
        if self.y is None:
            raise InputError(f"data set {self.name!r} has no labels: expected labelled data")
        return self.y

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input point (without the batch dimension)."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: Tensor, **info: Any) -> Dataset:
        """The points at ``index`` (a long tensor), with ``info`` added to the info dict."""
        y = None if self.y is None else self.y[index]
        return replace(self, x=self.x[index], y=y, info={**self.info, **info})


def _permutation(n: int, seed: int) -> Tensor:
    """A random permutation of ``range(n)`` drawn from a CPU generator seeded with ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def subsample(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """``n`` points drawn uniformly without replacement (seeded), kept in their original order."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(dataset):
        raise InputError(
            f"cannot take n={n!r} points from data set {dataset.name!r}: expected an integer "
            f"from 1 to its {len(dataset)} points"
        )
    index = _permutation(len(dataset), seed)[:n].sort().values
    return dataset.subset(index, subsample=n, subsample_seed=seed)


def split(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded random (train, test) split: ``round(fraction * n)`` training points, the rest
    for testing. Both parts must be non-empty."""
    valid = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    n_train = round(fraction * len(dataset)) if valid and 0 < fraction < 1 else 0
    if not 0 < n_train < len(dataset):
        raise InputError(
            f"cannot split the {len(dataset)} points of data set {dataset.name!r} with "
            f"fraction={fraction!r}: expected a number in (0, 1) leaving both parts non-empty"
        )
    perm = _permutation(len(dataset), seed)
    info = {"split_fraction": fraction, "split_seed": seed}
    return (
        dataset.subset(perm[:n_train], part="train", **info),
        dataset.subset(perm[n_train:], part="test", **info),
    )
