"""The streaming base of the measures: per-point statistics and the ``Meter`` protocol.

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import iterate_batches, take_inputs
from reluscope.measures.jacobians import default_chunk_size
from reluscope.measures.options import check_chunk, prepare_net, select_sites
from reluscope.nets.pwl import PWLNet


class PointValues:
    """Per-point values of named quantities, accumulated batch by batch: the mean over points
    and its standard error (sample standard deviation / sqrt(n); NaN for fewer than 2 points)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[Tensor]] = {}

    def add(self, name: str, values: Tensor) -> None:
        """Record the values (one per point) of quantity ``name``, kept in float64 on the CPU."""
        self._parts.setdefault(name, []).append(values.detach().to("cpu", torch.float64))

    def count(self, name: str) -> int:
        return sum(len(p) for p in self._parts.get(name, ()))

    def values(self, name: str) -> Tensor:
        return torch.cat(self._parts[name])

    def mean(self, name: str) -> float:
        return self.values(name).mean().item()

    def stderr(self, name: str) -> float:
        v = self.values(name)
        if len(v) < 2:
            return math.nan
        return (v.std() / math.sqrt(len(v))).item()

    def reset(self) -> None:
        self._parts.clear()


MeterT = TypeVar("MeterT", bound="Meter")


class Meter:
    """Base of the streaming measures (torchmetrics style): ``update(batch)`` for each batch,
    then ``compute()``; ``reset()`` starts over.

    The model is traced once, at construction (``input_shape`` is needed to trace a module whose
    first layer is not Linear), cast to ``dtype`` when given: the meter measures a snapshot of
    its weights. ``layers`` picks the sites (default all). ``batch`` is a tensor of inputs, a
    tuple/list (inputs first, or element ``input_key``) or a dict (key ``input_key``, default
    "x"/"input"/"inputs"/"image"/"images"). Points are processed ``batch_size`` at a time
    whatever the size of the batches given (default: :func:`default_chunk_size`). Subclasses and
    their functional forms take these keywords as ``**options``.
    """

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        layers: Iterable[str] | str | None = None,
        batch_size: int | None = None,
        input_shape: Sequence[int] | None = None,
        input_key: str | int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.net = prepare_net(model, input_shape, dtype)
        self.sites = select_sites(self.net, layers)
        self.batch_size = check_chunk(batch_size, "batch_size") or default_chunk_size(self.net)
        self.input_key = input_key
        self.stats = PointValues()

    def update(self, batch) -> None:
        """Add the points of one batch."""
        x = take_inputs(batch, self.input_key)
        for chunk in iterate_batches(self.net, x, self.batch_size):
            self._accumulate(chunk)

    def update_from(self: MeterT, data) -> MeterT:
        """Add every point of ``data`` (a tensor, or an iterable of batches such as a
        DataLoader); returns the meter."""
        for x in iterate_batches(self.net, data, self.batch_size, self.input_key):
            for i in range(0, len(x), self.batch_size):
                self._accumulate(x[i : i + self.batch_size])
        return self

    def reset(self) -> None:
        """Forget every point added so far."""
        self.stats.reset()

    def _accumulate(self, x: Tensor) -> None:
        raise NotImplementedError

    def _require_points(self, name: str) -> int:
        n = self.stats.count(name)
        if n == 0:
            raise InputError(
                f"{type(self).__name__}.compute() before any data: call update(batch) first"
            )
        return n
