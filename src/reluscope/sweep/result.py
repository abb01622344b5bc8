"""The result of a sweep: every run's status and outcome, the records of all runs in one tidy
frame, and a per-config summary over seeds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reluscope.experiments.outcome import Outcome
from reluscope.sweep.grid import SweepPoint
from reluscope.values import lookup

RAN, REUSED, FAILED = "ran", "reused", "failed"
STATUS_COLUMNS = ("status", "elapsed_s", "passed", "failed", "error")


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its point, its validated config (JSON values), its directory, its
    status (``ran``, ``reused`` from an earlier sweep, or ``failed``), its duration in seconds,
    its outcome (None when it failed), and its error (one line) and traceback when it
    failed."""

    point: SweepPoint
    config: dict[str, Any]
    run_dir: Path
    status: str
    elapsed_s: float
    outcome: Outcome | None = None
    error: str = ""
    traceback: str = field(default="", repr=False)

    @property
    def run_id(self) -> str:
        """The run's id, the name of its directory."""
        return self.point.run_id

    def columns(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """``run_id`` and the run's config values of ``keys`` and ``seed`` (lists and dicts as
        compact JSON text, so that they can be grouped on)."""
        values = {key: _cell(lookup(self.config, key)) for key in (*keys, "seed")}
        return {"run_id": self.run_id, **values}


@dataclass(frozen=True)
class SweepResult:
    """Every run of a sweep (in grid order) and ``records``: the records of all finished runs,
    each with the extra columns ``run_id``, the grid keys and ``seed`` in front (named
    ``sweep_KEY`` where the experiment's records already have a column KEY)."""

    name: str
    directory: Path
    grid_keys: tuple[str, ...]
    runs: tuple[SweepRun, ...]
    records: pd.DataFrame = field(repr=False)

    @classmethod
    def collect(
        cls, name: str, directory: Path, grid_keys: tuple[str, ...], runs: list[SweepRun]
    ) -> SweepResult:
        """The result of ``runs``, with their records gathered into one frame."""
        frames = []
        for run in runs:
            if run.outcome is None:
                continue
            frame = run.outcome.records.copy()
            for column, value in reversed(run.columns(grid_keys).items()):
                frame.insert(0, f"sweep_{column}" if column in frame else column, value)
            frames.append(frame)
        empty = pd.DataFrame(columns=["run_id", *grid_keys, "seed"])
        records = pd.concat(frames, ignore_index=True) if frames else empty
        return cls(name, directory, grid_keys, tuple(runs), records)

    @property
    def failures(self) -> list[SweepRun]:
        """The runs that failed."""
        return [run for run in self.runs if run.status == FAILED]

    def table(self) -> pd.DataFrame:
        """One row per run: run id, grid values, seed, status, seconds, how many of the
        paper's predictions passed and failed, the error, then the run's key numbers."""
        rows = []
        for run in self.runs:
            outcome = run.outcome or Outcome(pd.DataFrame())
            numbers = {k: math.nan if v is None else float(v) for k, v in outcome.numbers.items()}
            rows.append(
                {
                    **numbers,
                    **run.columns(self.grid_keys),
                    "status": run.status,
                    "elapsed_s": run.elapsed_s,
                    "passed": sum(p.passed for p in outcome.predictions),
                    "failed": sum(not p.passed for p in outcome.predictions),
                    "error": run.error,
                }
            )
        frame = pd.DataFrame(rows)
        front = [*self.runs[0].columns(self.grid_keys), *STATUS_COLUMNS]
        return frame[front + [c for c in frame if c not in front]]

    def summary(self) -> pd.DataFrame:
        """One row per grid point (over its seeds): ``runs`` and ``failed_runs`` (counts),
        ``passed`` and ``failed`` (predictions, summed over seeds), and for each key number
        ``NAME_mean`` and ``NAME_std`` (sample standard deviation; NaN for a single seed) over
        the runs that finished."""
        table = self.table()
        numbers = list(table.columns[len(self.grid_keys) + 2 + len(STATUS_COLUMNS) :])
        keys = list(self.grid_keys)
        groups = table.groupby(keys, sort=False, dropna=False) if keys else [((), table)]
        rows = []
        for values, group in groups:
            done = group[group["status"] != FAILED]
            row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
            row.update(
                runs=len(group),
                failed_runs=len(group) - len(done),
                passed=int(group["passed"].sum()),
                failed=int(group["failed"].sum()),
            )
            for name in numbers:
                row[f"{name}_mean"] = done[name].mean()
                row[f"{name}_std"] = done[name].std()
            rows.append(row)
        return pd.DataFrame(rows)

    def save(self) -> tuple[Path, Path]:
        """Write ``sweep.parquet`` (the records) and ``runs.parquet`` (:meth:`table`) into the
        sweep directory, each atomically; returns their paths."""
        from reluscope.io import atomic_write

        records, runs = self.directory / "sweep.parquet", self.directory / "runs.parquet"
        atomic_write(records, lambda t: self.records.to_parquet(t, index=False))
        atomic_write(runs, lambda t: self.table().to_parquet(t, index=False))
        return records, runs


def _cell(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value
