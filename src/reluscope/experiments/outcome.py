"""What an experiment produces: tidy records, figures with captions, key numbers and the
paper's predictions evaluated as PASS/FAIL on the measured numbers."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reluscope.io import atomic_write, file_inside


@dataclass(frozen=True)
class Prediction:
    """A prediction of the paper (``claim``), whether the run bears it out, and the numbers
    that decided it (``measured``).

    ``source`` cites the paper's own section/figure/equation (e.g. "Sec. 4.2, Fig. 3") and
    ``url`` links to the paper; ``threshold`` says where the threshold comes from (a standard
    error multiple, a derived bound, or a band around a value observed in the paper);
    ``seeds_passed`` / ``seeds_total`` count the seeds that bear it out (``None`` when it was
    decided once); ``worst`` states the worst seed's numbers; ``explanation`` is one sentence
    saying what the numbers show (required for a FAIL)."""

    claim: str
    passed: bool
    measured: str
    source: str = ""
    url: str = ""
    threshold: str = ""
    seeds_passed: int | None = None
    seeds_total: int | None = None
    worst: str = ""
    explanation: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG written by the experiment (``file``, relative to its run directory)."""

    file: str
    caption: str


@dataclass
class Outcome:
    """The result of one experiment run."""

    records: pd.DataFrame
    figures: list[Figure] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)
    summary: str = ""
    #: closed-form identities and constants that training cannot change: shown apart from the
    #: predictions and never counted among them
    sanity_checks: list[Prediction] = field(default_factory=list)

    def save(self, run_dir: Path, extra: dict[str, Any]) -> None:
        """Write ``records.parquet`` and ``outcome.json`` (numbers, predictions, figures and
        ``extra``) into ``run_dir``, each atomically."""
        atomic_write(run_dir / "records.parquet", lambda t: self.records.to_parquet(t, index=False))
        payload = {
            **extra,
            "summary": self.summary,
            "numbers": {k: _plain(v) for k, v in self.numbers.items()},
            "predictions": [asdict(p) for p in self.predictions],
            "sanity_checks": [asdict(p) for p in self.sanity_checks],
            "figures": [asdict(f) for f in self.figures],
        }
        text = json.dumps(payload, indent=2, allow_nan=True)
        atomic_write(run_dir / "outcome.json", lambda t: t.write_text(text))

    @classmethod
    def load(cls, run_dir: Path) -> tuple[Outcome, dict[str, Any]]:
        """The outcome saved in ``run_dir`` and the rest of its ``outcome.json``; InputError
        when a figure's file lies outside ``run_dir`` (a damaged or hostile outcome)."""
        payload = json.loads((run_dir / "outcome.json").read_text())
        for figure in payload["figures"]:
            file_inside(run_dir, figure["file"], f"the figure file in {run_dir / 'outcome.json'}")
        outcome = cls(
            records=pd.read_parquet(run_dir / "records.parquet"),
            figures=[Figure(**f) for f in payload.pop("figures")],
            numbers=payload.pop("numbers"),
            predictions=[Prediction(**p) for p in payload.pop("predictions")],
            summary=payload.pop("summary"),
            sanity_checks=[Prediction(**p) for p in payload.pop("sanity_checks", [])],
        )
        return outcome, payload


def _plain(value: Any) -> Any:
    """A key number as a JSON value: booleans and integers (numpy's too) keep their type,
    other numbers become floats, NaN becomes None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value) if hasattr(value, "__float__") else value
    return None if isinstance(value, float) and math.isnan(value) else value
