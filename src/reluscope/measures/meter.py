"""The streaming base of the measures: an O(1)-memory accumulator and the ``Meter`` protocol
(``update(batch)`` / ``compute()`` / ``reset()`` / ``merge(other)``)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import iterate_batches, take_inputs
from reluscope.measures.jacobians import default_chunk_size
from reluscope.measures.sites import select_sites
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import as_pwlnet
from reluscope.validation import check_int, dtype_name


class Moments:
    """Per named quantity, the count, mean and sum of squared deviations of its per-point
    values, in float64 (Welford's online update, batch by batch with Chan et al.'s parallel
    formula), plus running sums of named scalars. Memory is O(number of names), whatever the
    number of points; :meth:`merge` combines two accumulators as if one had seen all points."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._mean: dict[str, float] = {}
        self._m2: dict[str, float] = {}
        self._sums: dict[str, float] = {}

    def add(self, name: str, values: Tensor) -> None:
        """Record the values (one per point) of quantity ``name``."""
        v = values.detach().reshape(-1).to("cpu", torch.float64)
        if len(v) == 0:
            return
        mean = float(v.mean())
        self._combine(name, len(v), mean, float(((v - mean) ** 2).sum()))

    def add_sum(self, name: str, value: float) -> None:
        """Add ``value`` to the running sum ``name``."""
        self._sums[name] = self._sums.get(name, 0.0) + float(value)

    def _combine(self, name: str, nb: int, mean_b: float, m2_b: float) -> None:
        na = self._count.get(name, 0)
        if na == 0:
            self._count[name], self._mean[name], self._m2[name] = nb, mean_b, m2_b
            return
        n = na + nb
        delta = mean_b - self._mean[name]
        self._mean[name] += delta * nb / n
        self._m2[name] += m2_b + delta * delta * na * nb / n
        self._count[name] = n

    def merge(self, other: Moments) -> None:
        """Add every point and sum of ``other`` to this accumulator."""
        for name, nb in other._count.items():
            self._combine(name, nb, other._mean[name], other._m2[name])
        for name, value in other._sums.items():
            self.add_sum(name, value)

    def count(self, name: str) -> int:
        return self._count.get(name, 0)

    def mean(self, name: str) -> float:
        return self._mean[name]

    def stderr(self, name: str) -> float:
        """Sample standard deviation / sqrt(n); NaN for fewer than 2 points."""
        n = self.count(name)
        if n < 2:
            return math.nan
        return math.sqrt(self._m2[name] / (n - 1) / n)

    def total(self, name: str) -> float:
        """The running sum ``name`` (0 when nothing was added)."""
        return self._sums.get(name, 0.0)

    def reset(self) -> None:
        for part in (self._count, self._mean, self._m2, self._sums):
            part.clear()


class Meter(ABC):
    """Base of the streaming measures (torchmetrics style): ``update(batch)`` for each batch,
    ``compute()`` for the result, ``reset()`` to start over and ``merge(other)`` to add the
    points of another meter of the same measure and options (chunked or data-parallel runs).

    The model is traced once, at construction (``input_shape`` is needed to trace a module whose
    first layer is not Linear), cast to ``dtype`` when given: the meter measures a snapshot of
    its weights. ``layers`` picks the sites (default all). ``batch`` is a tensor of inputs, a
    tuple/list (inputs first, or element ``input_key``) or a dict (key ``input_key``, default
    "x"/"input"/"inputs"/"image"/"images"). Points are processed ``batch_size`` at a time
    whatever the size of the batches given (default: :func:`default_chunk_size`). ``update``
    runs under ``torch.no_grad()``. Statistics live in ``self.stats`` (:class:`Moments`).
    """

    #: The measure's name, used as the result's ``name`` and its records' ``metric``.
    name: str = ""
    #: Whether the measure needs the network to have neuron sites.
    needs_sites: bool = True

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
        self.net = as_pwlnet(model, input_shape, dtype=dtype)
        self.sites = select_sites(self.net, layers) if self.needs_sites else list(self.net.sites)
        check_int("batch_size", batch_size, minimum=1, allow_none=True)
        self.batch_size = batch_size or default_chunk_size(self.net)
        self.input_key = input_key
        self.stats = Moments()

    @property
    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]

    def update(self, batch: Any) -> None:
        """Add the points of one batch."""
        x = torch.as_tensor(take_inputs(batch, self.input_key))
        if x.numel() == 0:
            return
        with torch.no_grad():
            for chunk in iterate_batches(self.net, x, self.batch_size):
                self._accumulate(chunk)

    def update_from(self, data: Any) -> Meter:
        """Add every point of ``data`` (a tensor, or an iterable of batches such as a
        DataLoader); returns the meter."""
        with torch.no_grad():
            for x in iterate_batches(self.net, data, self.batch_size, self.input_key):
                for i in range(0, len(x), self.batch_size):
                    self._accumulate(x[i : i + self.batch_size])
        return self

    def point_values(self, batch: Any) -> dict[str, Tensor]:
        """The per-point values (float64, on the CPU) of every quantity the meter averages, at
        the points of ``batch``, by name (site names, the measure's name for the total); nothing
        is added to the meter. For checks and for custom reductions."""
        x = torch.as_tensor(take_inputs(batch, self.input_key))
        parts: dict[str, list[Tensor]] = {}
        with torch.no_grad():
            for chunk in iterate_batches(self.net, x, self.batch_size):
                for name, values in self._point_values(chunk).items():
                    parts.setdefault(name, []).append(values.detach().to("cpu", torch.float64))
        return {name: torch.cat(v) for name, v in parts.items()}

    def reset(self) -> None:
        """Forget every point added so far."""
        self.stats.reset()

    def merge(self, other: Meter) -> Meter:
        """Add the points seen by ``other`` (a meter of the same class with the same options);
        returns this meter. The result equals one meter's over all the points."""
        if type(other) is not type(self):
            raise InputError(
                f"{type(self).__name__}.merge needs another {type(self).__name__}; "
                f"got {type(other).__name__}"
            )
        mine, theirs = self.options(), other.options()
        if mine != theirs:
            diff = {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys()}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise InputError(f"cannot merge meters with different options: {diff}")
        self.stats.merge(other.stats)
        return self

    def options(self) -> dict[str, Any]:
        """The options that define the measure (the result's ``params``)."""
        return dict(layers=self.site_names, dtype=dtype_name(self.net.dtype))

    @abstractmethod
    def compute(self) -> Any:
        """The result over every point added so far."""

    def _accumulate(self, x: Tensor) -> None:
        """Add the points of one checked chunk of inputs."""
        for name, values in self._point_values(x).items():
            self.stats.add(name, values)

    @abstractmethod
    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        """The per-point values of one checked chunk of inputs, by quantity name."""

    def _require_points(self, name: str) -> int:
        n = self.stats.count(name)
        if n == 0:
            raise InputError(
                f"{type(self).__name__}.compute() before any data: call update(batch) first"
            )
        return n
