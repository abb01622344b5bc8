"""The one record schema of reluscope: every result converts to tidy long rows with the columns
``metric, layer, split, value, stderr``, followed by the result's scalar parameters and any
tags the caller adds (run, step, seed, ...).

``layer`` is a neuron-site name (the name of the activation in the traced network,
``reluscope.trace(model, shape).sites``) or ``"output"`` for the network's output, so that
frames of different results join on it; ``None`` marks a whole-network quantity. ``split``
names the data ("train", "test", "random", or None when no data is involved). ``stderr`` is
None where a number is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

RECORD_COLUMNS = ("metric", "layer", "split", "value", "stderr")
#: The layer of the network's output (its last affine map) in records.
OUTPUT_LAYER = "output"


def record(
    metric: str,
    value: float | None,
    *,
    layer: str | None = None,
    split: str | None = None,
    stderr: float | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One row of the schema (``value`` and ``stderr`` as floats; None stays None)."""
    return dict(
        metric=metric,
        layer=layer,
        split=split,
        value=None if value is None else float(value),
        stderr=None if stderr is None or _isnan(stderr) else float(stderr),
        **columns,
    )


def param_columns(params: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar parameters (str, int, float, bool, None) of ``params``, as extra columns;
    lists and other containers are left out. Names that clash with the schema are skipped."""
    return {
        k: v
        for k, v in params.items()
        if k not in RECORD_COLUMNS and (v is None or isinstance(v, (str, int, float, bool)))
    }


def tagged(
    rows: Iterable[dict[str, Any]], params: Mapping[str, Any], split: str | None, tags: Any
) -> list[dict[str, Any]]:
    """``rows`` with ``split`` (when given), then the scalar ``params``, then ``tags``."""
    out = []
    for row in rows:
        row = dict(row)
        if split is not None:
            row["split"] = split
        out.append({**row, **param_columns(params), **tags})
    return out


def frame(rows: list[dict[str, Any]]):
    """Records as a pandas DataFrame, the schema's columns first (also when empty)."""
    import pandas as pd

    table = pd.DataFrame(rows)
    for column in RECORD_COLUMNS:
        if column not in table:
            table[column] = None
    rest = [c for c in table.columns if c not in RECORD_COLUMNS]
    return table[list(RECORD_COLUMNS) + rest]


class Records:
    """Mixin of the record protocol: a class defines ``to_records(split=None, **tags)``; this
    adds ``to_frame`` with the same arguments."""

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def to_frame(self, split: str | None = None, **tags: Any):
        """The records as a pandas DataFrame (columns: RECORD_COLUMNS, params, tags)."""
        return frame(self.to_records(split=split, **tags))


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
