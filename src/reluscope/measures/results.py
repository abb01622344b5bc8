"""The result every measure returns: value, standard error, per-layer breakdown and parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MeasureResult:
    """One measure of one model on one data set.

    ``value`` is the estimate, ``stderr`` its Monte Carlo standard error (None when exact),
    ``per_layer`` the contribution of each neuron site by name (with ``per_layer_stderr``),
    ``params`` the options used, and ``extra`` any further named quantities (bounds, counts).
    """

    name: str
    value: float
    stderr: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    per_layer_stderr: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    num_points: int = 0

    def to_records(self, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (metric, layer, value, stderr, plus ``tags``): one for the total, one per
        layer and one per extra quantity (layer None for totals)."""
        rows = [dict(tags, metric=self.name, layer=None, value=self.value, stderr=self.stderr)]
        for layer, value in self.per_layer.items():
            stderr = self.per_layer_stderr.get(layer)
            rows.append(dict(tags, metric=self.name, layer=layer, value=value, stderr=stderr))
        for key, value in self.extra.items():
            rows.append(
                dict(tags, metric=f"{self.name}.{key}", layer=None, value=value, stderr=None)
            )
        return rows

    def to_frame(self, **tags: Any):
        """The records as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_records(**tags))
