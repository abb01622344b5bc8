"""``ProbeLoop``: probes for a training loop you already have. It counts your optimiser
updates and runs the probes due after each one, so attaching probes takes two lines::

    with ProbeLoop(model, [probes.accuracy_loss()], train, test, total_steps=1000) as probing:
        for x, y in loader:                       # your loop, unchanged
            ...; optimizer.step()
            probing.step()                        # after every update
    probing.records                               # tidy records (RECORD_COLUMNS)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch.nn as nn

from reluscope.errors import InputError
from reluscope.train.checkpoint import RECORDS
from reluscope.train.probe import Probe
from reluscope.train.runner import ProbeRunner
from reluscope.train.schedule import Schedule, log_steps
from reluscope.validation import check_int


class ProbeLoop:
    """Runs ``probes`` on ``model`` in a user's training loop: at step 0 when the loop starts
    (``start()``, or entering the ``with`` block) and after every update (``step()``), each
    probe on its schedule (default ``schedule``, else ``log_steps(total_steps)``).

    ``train`` and ``test`` take every form the :class:`~reluscope.train.ProbeRunner` takes.
    Probes see the model in eval mode and never change the global random state, so they do
    not change the training. On leaving the ``with`` block the records are written to
    ``run_dir/records.parquet`` when ``run_dir`` is given (also after an exception)."""

    def __init__(
        self,
        model: nn.Module,
        probes: Iterable[Probe],
        train: Any,
        test: Any | None = None,
        *,
        total_steps: int | None = None,
        schedule: Schedule | None = None,
        run_name: str = "run",
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        loss: str = "ce",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if schedule is None and total_steps is not None:
            schedule = log_steps(check_int("total_steps", total_steps, minimum=1))
        self.model = model
        self.runner = ProbeRunner(
            probes, train, test, run_name, default_schedule=schedule, seed=seed, loss=loss
        )
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.step_count: int | None = None  # None: not started

    def start(self) -> list[dict[str, Any]]:
        """Run the probes due at step 0 (before the first update); returns their records."""
        if self.step_count is not None:
            raise InputError("this ProbeLoop has already started")
        self.step_count = 0
        return self.runner.maybe_run(self.model, 0)

    def step(self) -> list[dict[str, Any]]:
        """Count one optimiser update and run the probes due now; returns their records."""
        if self.step_count is None:
            self.start()
        step = self.step_count = (self.step_count or 0) + 1
        return self.runner.maybe_run(self.model, step)

    @property
    def records(self) -> pd.DataFrame:
        """The records so far (columns run, step, metric, layer, split, value, stderr)."""
        return self.runner.frame()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the records to ``path`` as Parquet, atomically."""
        return self.runner.save(path)

    def __enter__(self) -> ProbeLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.save(self.run_dir / RECORDS)
