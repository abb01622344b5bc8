"""Probes: a measure plus a schedule, run on a model during training. ``ProbeRunner`` attaches
probes to any training loop (the Trainer uses it too) and collects tidy records."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from reluscope import records
from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.train.schedule import Schedule
from reluscope.validation import check_int, invalid

RECORD_COLUMNS = ("run", "step") + records.RECORD_COLUMNS
SPLITS = ("train", "test", "random")


def step_seed(seed: int, step: int) -> int:
    """A seed in [0, 2**32) for the probes at ``step`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


@dataclass
class ProbeContext:
    """What a probe sees: the model (in eval mode while probes run), the step, the data splits,
    the analysis dtype and device, a seed that depends on the step only (:func:`step_seed`), the
    training loss kind (``"ce"`` or ``"mse"``) and a cache kept across steps by the runner."""

    model: torch.nn.Module
    step: int
    train: Dataset
    test: Dataset | None
    dtype: torch.dtype
    device: torch.device
    seed: int
    loss: str = "ce"
    cache: dict = field(default_factory=dict, repr=False)
    _nets: dict = field(default_factory=dict, repr=False)
    _modules: dict = field(default_factory=dict, repr=False)

    def net(self, dtype: torch.dtype | None = None):
        """The model traced into a PWLNet (once per step, shared by all probes), in ``dtype``
        (default: the context's dtype)."""
        dtype = dtype or self.dtype
        if "traced" not in self._nets:
            from reluscope.nets.trace import trace

            self._nets["traced"] = trace(self.model, self.train.input_shape)
        if dtype not in self._nets:
            net = self._nets["traced"]
            self._nets[dtype] = net if net.dtype == dtype else net.to(dtype=dtype)
        return self._nets[dtype]

    def module(self, dtype: torch.dtype | None = None) -> torch.nn.Module:
        """The model itself, or a copy in ``dtype`` (default: the context's dtype) when its
        parameters have another dtype (made once per step)."""
        dtype = dtype or self.dtype
        param = next(self.model.parameters(), None)
        if param is None or param.dtype == dtype:
            return self.model
        if dtype not in self._modules:
            self._modules[dtype] = copy.deepcopy(self.model).to(dtype=dtype)
        return self._modules[dtype]

    def split(self, name: str) -> Dataset:
        """The ``train`` or ``test`` split."""
        data = self.train if name == "train" else self.test
        if data is None:
            raise InputError(f"no {name} split was given to the trainer or probe runner")
        return data

    def points(
        self, split: str, n: int | None = None, dtype: torch.dtype | None = None, seed: int = 0
    ) -> tuple[Tensor, Tensor | None]:
        """Inputs and labels of the first ``n`` points (all when None) of ``split``, on the
        context's device in ``dtype`` (default: the context's dtype).

        ``"random"``: ``n`` Gaussian points with the per-feature mean and standard deviation of
        the training inputs, drawn from ``seed`` (the same points at every step); no labels."""
        dtype = dtype or self.dtype
        if split == "random":
            if n is None:
                raise InputError('the "random" split needs a number of points n_points')
            key = ("random", n, seed)
            if key not in self.cache:
                self.cache[key] = random_points(self.train, n, seed)
            x, y = self.cache[key], None
        elif split in ("train", "test"):
            data = self.split(split)
            x, y = data.x[:n], None if data.y is None else data.y[:n]
        else:
            raise invalid("split", f"one of {list(SPLITS)}", split)
        x = x.to(device=self.device, dtype=dtype)
        return x, None if y is None else y.to(self.device)


def random_points(data: Dataset, n: int, seed: int = 0) -> Tensor:
    """``n`` float32 points x = mean + std * g, g standard Gaussian drawn on the CPU from
    ``seed``, with the per-feature mean and standard deviation of ``data.x``."""
    n = check_int("n", n, minimum=1)
    x = data.x.double()
    mean, std = x.mean(dim=0), x.std(dim=0) if len(x) > 1 else torch.zeros_like(x[0])
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn((n,) + data.input_shape, generator=gen, dtype=torch.float64)
    return (mean + std * g).float()


ProbeOutput = records.Records | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Probe:
    """A measure run at the steps of ``schedule`` (None: the trainer's default schedule).
    ``measure(context)`` returns a result (anything with ``to_records()``, see
    :mod:`reluscope.records`) or records with keys metric, value and optionally layer, split,
    stderr; ``split`` is stored with a result's records. ``columns`` names further columns of
    those records that the runner keeps after RECORD_COLUMNS (e.g. ``bound``, the name of a
    generalisation bound); the others (the result's parameters) are dropped."""

    name: str
    measure: Callable[[ProbeContext], ProbeOutput]
    schedule: Schedule | None = None
    split: str | None = None
    columns: tuple[str, ...] = ()


def to_records(output: ProbeOutput, probe: Probe, run: str, step: int) -> list[dict[str, Any]]:
    """Tidy rows (columns RECORD_COLUMNS, then the probe's ``columns``) from a probe's output."""
    if hasattr(output, "to_records"):
        rows = output.to_records()
    else:
        rows = [dict(r) for r in output]
    out = []
    for row in rows:
        out.append(
            {
                "run": run,
                "step": int(step),
                "metric": str(row.get("metric", probe.name)),
                "layer": _label(row.get("layer")),
                "split": _label(row.get("split", probe.split)),
                "value": float(row["value"]) if row.get("value") is not None else float("nan"),
                "stderr": float(row["stderr"]) if row.get("stderr") is not None else float("nan"),
                **{column: _label(row.get(column)) for column in probe.columns},
            }
        )
    return out


def _label(value: Any) -> str | None:
    """A layer or split label as a string (None and "" mean none)."""
    return None if value is None or value == "" else str(value)


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records as a DataFrame with the tidy columns (also when empty), then the further
    columns some probes keep (:attr:`Probe.columns`; None in the other probes' rows)."""
    extra = list(dict.fromkeys(k for r in records for k in r if k not in RECORD_COLUMNS))
    frame = pd.DataFrame(records, columns=list(RECORD_COLUMNS) + extra)
    frame["step"] = frame["step"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    frame["stderr"] = frame["stderr"].astype("float64")
    return frame
