"""``ProbeCallback``: reluscope probes in a PyTorch Lightning training run (the ``lightning``
extra: ``pip install "reluscope[lightning]"``)::

    probe = ProbeCallback([probes.accuracy_loss(), probes.local_complexity()], train, test)
    lightning.Trainer(max_steps=1000, callbacks=[probe]).fit(module, loader)
    probe.records                                 # tidy records (RECORD_COLUMNS)

Step s is Lightning's ``global_step`` (optimiser updates); the probes due at step 0 run when
training starts, the others after the update that reaches their step. Each record is also
logged to the trainer's loggers as ``metric[/split][/layer]`` at its step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from reluscope.errors import InputError
from reluscope.train.probe import Probe
from reluscope.train.runner import ProbeRunner
from reluscope.train.schedule import Schedule, log_steps
from reluscope.validation import check_bool, invalid

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        raise InputError(
            "reluscope.train.lightning needs PyTorch Lightning: pip install 'reluscope[lightning]'"
            " (or pip install lightning)"
        ) from None


class ProbeCallback(pl.Callback):
    """Runs ``probes`` on the LightningModule at the steps of their schedules (default
    ``schedule``, else ``log_steps`` of the run's total optimiser steps) and keeps their
    records; ``train``, ``test``, ``seed``, ``loss`` and ``run_name`` are as for
    :class:`~reluscope.train.ProbeRunner`. With ``log``, records also go to the trainer's
    loggers. The records are saved in Lightning checkpoints and restored on resume."""

    def __init__(
        self,
        probes: Iterable[Probe],
        train: Any,
        test: Any | None = None,
        *,
        schedule: Schedule | None = None,
        run_name: str = "run",
        seed: int = 0,
        loss: str = "ce",
        log: bool = True,
    ) -> None:
        if schedule is not None and not isinstance(schedule, Schedule):
            raise invalid(
                "schedule", "a Schedule (e.g. log_steps(1000), every(10)) or None", schedule
            )
        check_bool("log", log)
        # a placeholder schedule until the run's length is known (on_train_start)
        self.runner = ProbeRunner(
            probes,
            train,
            test,
            run_name,
            default_schedule=schedule or Schedule(frozenset()),
            seed=seed,
            loss=loss,
        )
        self.schedule, self.log = schedule, log
        self._last_step: int | None = None

    @property
    def records(self) -> pd.DataFrame:
        """The records so far (columns run, step, metric, layer, split, value, stderr)."""
        return self.runner.frame()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule is None:
            total: float = trainer.max_steps
            if total is None or total < 1:
                total = trainer.estimated_stepping_batches
            if not float(total).is_integer():
                raise InputError(
                    "ProbeCallback cannot tell how many steps the run has: give schedule= "
                    "or set max_steps / max_epochs on the Lightning Trainer"
                )
            self.runner.default_schedule = log_steps(int(total))
        self._probe(trainer, pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._probe(trainer, pl_module)

    def _probe(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Run the probes due at the current global step, once per step."""
        step = int(trainer.global_step)
        if step == self._last_step:
            return
        self._last_step = step
        new = self.runner.maybe_run(module, step)
        if self.log and new and trainer.loggers:
            values = {_key(r): r["value"] for r in new}
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self.runner.records), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.runner.records = list(state_dict["records"])
        self._last_step = state_dict["last_step"]


def _key(record: dict[str, Any]) -> str:
    """The logger key of a record: ``metric[/split][/layer]``."""
    parts = [record["metric"], record.get("split"), record.get("layer")]
    return "/".join(str(p) for p in parts if p is not None)
