"""``ProbeRunner``: runs probes on their schedules in any training loop and keeps their records."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from reluscope.devices import resolve_device
from reluscope.errors import InputError
from reluscope.io import atomic_write
from reluscope.losses import LOSSES
from reluscope.train.data import as_dataset
from reluscope.train.probe import Probe, ProbeContext, records_frame, step_seed, to_records
from reluscope.train.schedule import Schedule
from reluscope.validation import check_choice, check_float_dtype, check_int, invalid


class ProbeRunner:
    """Runs ``probes`` at the steps of their schedules (``default_schedule`` for those without
    one) and collects their tidy records (columns RECORD_COLUMNS, ``run`` = ``run_name``).

    In a training loop, call ``maybe_run(model, step)`` once at every step (step 0 before the
    first update, step s after s updates). Probes see the model in eval mode (its mode is
    restored afterwards), analyse it in ``dtype`` on ``device`` (default: those of the model's
    parameters), get the seed :func:`step_seed` (``seed``, step) and the loss kind ``loss``.
    The probes run inside ``torch.random.fork_rng``: they never change the global random state,
    so adding or removing probes does not change the training.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        train: Any,
        test: Any | None = None,
        run_name: str = "run",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        default_schedule: Schedule | None = None,
        seed: int = 0,
        loss: str = "ce",
    ) -> None:
        if isinstance(probes, (Probe, str)) or not isinstance(probes, Iterable):
            raise invalid("probes", "a list of Probe objects", probes)
        self.probes = list(probes)
        for p in self.probes:
            if not isinstance(p, Probe):
                raise InputError(f"probes must be Probe objects; got {type(p).__name__}")
            if p.schedule is None and default_schedule is None:
                raise InputError(
                    f"probe {p.name!r} has no schedule: give it schedule= or give the runner "
                    "default_schedule= (e.g. log_steps(total_steps))"
                )
        train = as_dataset(train, "the training set", labels=False)
        test = None if test is None else as_dataset(test, "the test set", labels=False)
        check_float_dtype("dtype", dtype)
        check_choice("loss", loss, LOSSES)
        if not isinstance(run_name, str) or not run_name.strip():
            raise invalid("run_name", "a non-empty string", run_name)
        if default_schedule is not None and not isinstance(default_schedule, Schedule):
            raise invalid(
                "schedule", "a Schedule (e.g. log_steps(1000), every(10)) or None", default_schedule
            )
        self.train, self.test, self.run_name = train, test, run_name
        self.dtype = dtype
        self.device = None if device is None else resolve_device(device)
        self.default_schedule, self.loss = default_schedule, loss
        self.seed = check_int("seed", seed, minimum=0)
        self.records: list[dict[str, Any]] = []
        self._cache: dict = {}

    def due(self, step: int) -> list[Probe]:
        """The probes scheduled at ``step``."""
        due = []
        for probe in self.probes:
            schedule = probe.schedule or self.default_schedule
            if schedule is not None and step in schedule:
                due.append(probe)
        return due

    def maybe_run(self, model: nn.Module, step: int) -> list[dict[str, Any]]:
        """Run the probes due at ``step``; returns their new records (also kept)."""
        due = self.due(step)
        return self.run(model, step, due) if due else []

    def run(
        self, model: nn.Module, step: int, probes: Iterable[Probe] | None = None
    ) -> list[dict[str, Any]]:
        """Run ``probes`` (default: all) now, whatever their schedules; returns the new records.
        If a probe fails, no record of this call is kept."""
        param = next(model.parameters(), None)
        dtype = self.dtype or (param.dtype if param is not None else torch.float32)
        device = self.device or (param.device if param is not None else torch.device("cpu"))
        ctx = ProbeContext(
            model=model,
            step=int(step),
            train=self.train,
            test=self.test,
            dtype=dtype,
            device=device,
            seed=step_seed(self.seed, int(step)),
            loss=self.loss,
            cache=self._cache,
        )
        devices = [device] if device.type == "cuda" else []
        was_training = model.training
        new: list[dict[str, Any]] = []
        try:
            with torch.random.fork_rng(devices=devices):
                model.eval()
                for p in self.probes if probes is None else probes:
                    new.extend(to_records(p.measure(ctx), p, self.run_name, step))
        finally:
            model.train(was_training)
        self.records.extend(new)
        return new

    def frame(self) -> pd.DataFrame:
        """All records so far as a DataFrame (columns RECORD_COLUMNS)."""
        return records_frame(self.records)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the records to ``path`` as Parquet, atomically."""
        frame = self.frame()
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
