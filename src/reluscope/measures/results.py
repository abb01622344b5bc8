"""The result every measure of a network on data returns: the total value with its standard
error, the per-layer breakdown and the parameters used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reluscope.records import Records, record, tagged


@dataclass(frozen=True)
class MeasureResult(Records):
    """One measure of one model on one data set.

    ``value`` is the total over the chosen sites, ``stderr`` its Monte Carlo standard error over
    the points (None when exact), ``per_layer`` each site's value by site name (with
    ``per_layer_stderr``), ``params`` the options used (dtype as a string such as "float64").
    ``extra`` holds further whole-network quantities (bounds, counts) and ``layer_extra``
    further per-site quantities: ``layer_extra[quantity][site]``.
    """

    name: str
    value: float
    stderr: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    per_layer_stderr: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    layer_extra: dict[str, dict[str, float]] = field(default_factory=dict)
    num_points: int = 0

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (:mod:`reluscope.records`): metric ``name`` for the total (layer None) and
        each site, ``name.<quantity>`` for each extra (layer None) and per-site extra."""
        rows = [record(self.name, self.value, stderr=self.stderr)]
        for layer, value in self.per_layer.items():
            stderr = self.per_layer_stderr.get(layer)
            rows.append(record(self.name, value, layer=layer, stderr=stderr))
        for key, value in self.extra.items():
            rows.append(record(f"{self.name}.{key}", value))
        for key, values in self.layer_extra.items():
            for layer, value in values.items():
                rows.append(record(f"{self.name}.{key}", value, layer=layer))
        return tagged(rows, dict(self.params, num_points=self.num_points), split, tags)
