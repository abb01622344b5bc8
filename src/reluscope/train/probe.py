"""Probes: a measure plus a schedule, run on a model during training. ``ProbeRunner`` attaches
probes to any training loop (the Trainer uses it too) and collects tidy records."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from reluscope.data import Dataset
from reluscope.measures.results import MeasureResult
from reluscope.train.schedule import Schedule

RECORD_COLUMNS = ("run", "step", "metric", "layer", "split", "value", "stderr")


@dataclass
class ProbeContext:
    """What a probe sees: the model (in eval mode while probes run), the step, the data splits,
    the analysis dtype and device, and a seed that depends on the step only."""

    model: torch.nn.Module
    step: int
    train: Dataset
    test: Dataset | None
    dtype: torch.dtype
    device: torch.device
    seed: int
    _net: Any = field(default=None, repr=False)

    def net(self):
        """The model traced into a PWLNet (once per step, shared by all probes)."""
        if self._net is None:
            from reluscope.nets.trace import trace

            self._net = trace(self.model, self.train.input_shape)
        return self._net

    def split(self, name: str) -> Dataset:
        """The ``train`` or ``test`` split."""
        data = self.train if name == "train" else self.test
        if data is None:
            raise ValueError(f"no {name} split was given to the trainer")
        return data


ProbeOutput = MeasureResult | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Probe:
    """A measure run at the steps of ``schedule`` (None: the trainer's default schedule).
    ``measure(context)`` returns a MeasureResult or records with keys metric, value and
    optionally layer, split, stderr; ``split`` is stored with a MeasureResult's records."""

    name: str
    measure: Callable[[ProbeContext], ProbeOutput]
    schedule: Schedule | None = None
    split: str | None = None


def to_records(output: ProbeOutput, probe: Probe, run: str, step: int) -> list[dict[str, Any]]:
    """Tidy rows (columns RECORD_COLUMNS) from a probe's output."""
    if isinstance(output, MeasureResult):
        rows = output.to_records()
    else:
        rows = [dict(r) for r in output]
    records = []
    for row in rows:
        records.append(
            {
                "run": run,
                "step": int(step),
                "metric": str(row.get("metric", probe.name)),
                "layer": row.get("layer") or None,
                "split": row.get("split", probe.split),
                "value": float(row["value"]) if row.get("value") is not None else float("nan"),
                "stderr": float(row["stderr"]) if row.get("stderr") is not None else float("nan"),
            }
        )
    return records


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records as a DataFrame with the tidy columns (also when empty)."""
    frame = pd.DataFrame(records, columns=list(RECORD_COLUMNS))
    frame["step"] = frame["step"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    frame["stderr"] = frame["stderr"].astype("float64")
    return frame
