"""``Trainer``: a plain PyTorch training loop with probes, records, checkpoints and resume."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
import torch
import torch.nn as nn

from reluscope import losses
from reluscope.data import Dataset
from reluscope.devices import resolve_device
from reluscope.errors import InputError, ReluscopeError, TrainingDiverged, validation_summary
from reluscope.rundir import locked
from reluscope.train.batches import BatchSampler
from reluscope.train.callbacks import Callback, check_callbacks
from reluscope.train.checkpoint import (
    CHECKPOINT,
    RECORDS,
    config_differences,
    load_checkpoint,
    save_checkpoint,
)
from reluscope.train.config import TrainConfig
from reluscope.train.data import as_dataset
from reluscope.train.display import (
    ProgressDisplay,
    log_records,
    open_tensorboard,
    tensorboard_requested,
    writer_class,
)
from reluscope.train.interrupt import InterruptGuard
from reluscope.train.optim import build_optimizer, learning_rate
from reluscope.train.probe import Probe
from reluscope.train.runner import ProbeRunner
from reluscope.train.schedule import Schedule, log_steps


class Trainer:
    """Trains a copy of ``model`` on ``train`` as ``config`` says, running ``probes`` on their
    schedules and ``callbacks`` (:mod:`reluscope.train.callbacks`) at their hooks.

    The caller's ``model`` is never changed: the trainer trains ``trainer.model``, a copy in
    ``config.device`` and ``config.dtype`` whose every parameter is multiplied by
    ``config.param_scale`` (a resumed run then loads its weights). ``train`` and ``test`` are
    reluscope ``Dataset`` objects, pairs of tensors ``(x, y)``, torch datasets of ``(x, y)``
    items or DataLoaders (read once, see :func:`~reluscope.train.data.as_dataset`); they are
    converted to the same dtype and device. Each step draws a mini-batch
    (:class:`~reluscope.train.batches.BatchSampler`), sets the learning rate (:func:`~reluscope.train.optim.learning_rate`), and takes one optimiser step
    on the mean loss of the batch (:mod:`reluscope.losses`). Step s counts s updates;
    probes due at step s run on the model after s updates (step 0: at initialisation).

    Training runs inside ``torch.random.fork_rng``, with torch's global RNG seeded by
    ``config.seed`` (used by dropout, say), so the caller's random state is untouched and a CPU
    run with the same seed is reproducible bit for bit.

    ``run_dir`` (None: nothing is written) receives ``checkpoint.pt`` every
    ``config.checkpoint_every`` steps, at the end and on Ctrl-C, and ``records.parquet`` with
    each checkpoint. ``fit()`` resumes from an existing checkpoint, and returns a finished run's
    records without training again. A callback's ``should_stop`` ends training early, with a
    checkpoint, and sets ``stopped`` (a later ``fit()`` goes on from there). ``default_schedule`` is the schedule of probes without one
    (default ``log_steps(config.steps, 50)``). ``progress`` shows a rich progress bar;
    ``tensorboard`` also logs the records to ``run_dir/tensorboard`` (needs the tensorboard
    package).
    """

    def __init__(
        self,
        model: nn.Module,
        train: Any,
        test: Any | None,
        config: TrainConfig | dict[str, Any],
        probes: Iterable[Probe] = (),
        run_dir: str | os.PathLike | None = None,
        run_name: str = "run",
        progress: bool = True,
        tensorboard: bool = False,
        default_schedule: Schedule | None = None,
        *,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        self.config = cfg = _as_config(config)
        self.device, self.dtype = resolve_device(cfg.device), getattr(torch, cfg.dtype)
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        train = as_dataset(train, "the training set")
        test = None if test is None else as_dataset(test, "the test set", labels=False)
        _check_data(train, test)
        self.callbacks = check_callbacks(callbacks)
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        self._x = train.x.to(device=self.device, dtype=self.dtype)
        self._y = train.labels.to(self.device)
        _check_model(self.model, self._x, self._y, cfg.loss)
        tensorboard = tensorboard or (tensorboard_requested() and run_dir is not None)
        if tensorboard:  # checked before run_dir is created: a refused run writes nothing
            if run_dir is None:
                raise InputError("tensorboard=True needs a run_dir to write the logs to")
            writer_class()
        self.run_dir = _prepare_run_dir(run_dir)
        self.tensorboard, self.progress = tensorboard, progress
        self.runner = ProbeRunner(
            probes,
            train,
            test,
            run_name,
            dtype=self.dtype,
            device=self.device,
            default_schedule=default_schedule or log_steps(cfg.steps, 50),
            seed=cfg.seed,
            loss=cfg.loss,
        )
        self.sampler = BatchSampler(len(train), cfg.batch_size, cfg.seed)
        self.optimizer = build_optimizer(self.model, cfg)
        with torch.no_grad():
            for p in self.model.parameters():
                p.mul_(cfg.param_scale)
        self.step = 0
        self._probed = False  # whether the probes of self.step have run
        self._rng: dict[str, torch.Tensor] | None = None  # global RNG state to continue from
        self._loaded = False  # whether run_dir's checkpoint was looked for
        self._saved_step: int | None = None
        self._loss: float | None = None
        self.stopped = False  # whether a callback's should_stop ended the last fit()

    @property
    def records(self) -> pd.DataFrame:
        """The records so far (columns run, step, metric, layer, split, value, stderr)."""
        return self.runner.frame()

    def fit(self) -> pd.DataFrame:
        """Train up to ``config.steps`` steps (resuming from ``run_dir`` when it holds a
        checkpoint of this config); returns the records. The model is left in eval mode.

        Raises InputError when the run_dir's checkpoint has another config or probes, and
        when another process is writing the run_dir (it is locked while fit runs);
        :class:`~reluscope.errors.TrainingDiverged` when the loss becomes NaN or infinite (the
        records so far are saved first). A resume rewrites the records from the checkpoint
        when the records file is missing or older than it (a process killed between the two).
        On KeyboardInterrupt, a checkpoint of the last finished step is written before the
        exception propagates."""
        with contextlib.ExitStack() as stack:
            if self.run_dir is not None:  # one process writes a run_dir at a time
                stack.enter_context(locked(self.run_dir, "run_dir"))
            if not self._loaded:
                self._resume()
                self._loaded = True
            self.stopped = False
            for callback in self.callbacks:
                callback.on_train_start(self)
            if self.step < self.config.steps or not self._probed:
                self._run()
        self.model.eval()
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.records

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        cuda = [self.device] if self.device.type == "cuda" else []
        writer = None
        if self.tensorboard and self.run_dir is not None:
            purge = self.step if self.step > 0 else None
            writer = open_tensorboard(self.run_dir / "tensorboard", purge_step=purge)
        display = ProgressDisplay(self.config.steps, self.step, self.progress, self.runner.run_name)
        try:
            with torch.random.fork_rng(devices=cuda), InterruptGuard() as guard, display:
                self._restore_rng()
                try:
                    self._loop(guard, display, writer)
                except KeyboardInterrupt:
                    if guard.in_critical:  # an update may be half done: keep the last checkpoint
                        self._loaded = False
                    elif self.run_dir is not None:
                        self._save(self.run_dir)
                    raise
                finally:
                    self._rng = self._rng_state()
        finally:
            if writer is not None:
                writer.close()

    def _loop(self, guard: InterruptGuard, display: ProgressDisplay, writer) -> None:
        cfg = self.config
        while True:
            if not self._probed:
                due = self.runner.due(self.step)
                new = self.runner.run(self.model, self.step, due) if due else []
                self._probed = True
                if writer is not None and new:
                    log_records(writer, new)
                display.update(self.step, self._loss, new)
                if due:
                    for callback in self.callbacks:
                        callback.on_eval(self, new)
            self.stopped = any(callback.should_stop(self) for callback in self.callbacks)
            if self.run_dir is not None and self._checkpoint_due():
                self._save(self.run_dir)
            if self.step >= cfg.steps or self.stopped:
                return
            with guard.critical():
                self._loss = self._update()
                self.step += 1
                self._probed = False
                for callback in self.callbacks:
                    callback.on_step_end(self, self._loss)
            display.update(self.step, self._loss)

    def _update(self) -> float:
        """One optimiser step from ``self.step``; returns the batch loss."""
        cfg = self.config
        index = self.sampler.indices(self.step).to(self.device)
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = losses.loss(self.model(self._x[index]), self._y[index], cfg.loss)
        value = loss.item()
        if not math.isfinite(value):
            if self.run_dir is not None:
                self.runner.save(self.run_dir / RECORDS)
            raise TrainingDiverged(
                f"training diverged: the loss is {value} in the update at step {self.step} "
                f"(learning rate {lr:.3g}); lower the learning rate (lr={cfg.lr}), the "
                f"param_scale ({cfg.param_scale}), or use dtype='float64'",
                step=self.step,
                loss=value,
                lr=lr,
            )
        loss.backward()
        self.optimizer.step()
        return value

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_due(self) -> bool:
        if self.run_dir is None or self._saved_step == self.step:
            return False
        every = self.config.checkpoint_every
        return (
            self.stopped
            or self.step == self.config.steps
            or bool(every and self.step > 0 and self.step % every == 0)
        )

    def _save(self, run_dir: Path) -> None:
        state = {
            "config": self.config.model_dump_json(),
            "run": self.runner.run_name,
            "probes": [p.name for p in self.runner.probes],
            "step": self.step,
            "probed": self._probed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self._rng_state(),
            "records": list(self.runner.records),
        }
        save_checkpoint(run_dir / CHECKPOINT, state)
        self.runner.save(run_dir / RECORDS)
        self._saved_step = self.step

    def _resume(self) -> None:
        """Load run_dir's checkpoint, if any, after checking it belongs to this run."""
        if self.run_dir is None:
            return
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return
        state = load_checkpoint(path, self.device)
        diffs = config_differences(state["config"], self.config)
        if state["run"] != self.runner.run_name:
            diffs.append(f"run_name: {state['run']!r} -> {self.runner.run_name!r}")
        if diffs:
            raise InputError(
                f"{path} belongs to a run with another config ({'; '.join(diffs)}): resume with "
                "the same config, or give another run_dir (or delete this one) to start over"
            )
        names = [p.name for p in self.runner.probes]
        if state["probes"] != names:
            raise InputError(
                f"{path} belongs to a run with probes {state['probes']}, not {names}: resume "
                "with the same probes, or give another run_dir to start over"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"{path} does not fit this model: {exc}") from exc
        self.step, self._probed = int(state["step"]), bool(state["probed"])
        self._rng = {k: v.cpu() for k, v in state["rng"].items()}
        self.runner.records = list(state["records"])
        self._saved_step = self.step
        records = self.run_dir / RECORDS
        if not records.is_file() or records.stat().st_mtime_ns < path.stat().st_mtime_ns:
            self.runner.save(records)  # killed between the checkpoint and the records

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_rng(self) -> None:
        if self._rng is None:
            torch.default_generator.manual_seed(self.config.seed)
            if self.device.type == "cuda":
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(self.config.seed)
            return
        torch.set_rng_state(self._rng["cpu"])
        if "cuda" in self._rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(self._rng["cuda"], self.device)


# ---------------------------------------------------------------------------- checks
def _as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if not isinstance(config, dict):
        raise InputError(f"config must be a TrainConfig or a dict; got {type(config).__name__}")
    try:
        return TrainConfig(**config)
    except pydantic.ValidationError as exc:
        raise InputError(f"invalid training config: {validation_summary(exc)}") from None


def _check_data(train: Dataset, test: Dataset | None) -> None:
    if train.y is None:
        raise InputError(f"the training set {train.name!r} has no labels; the trainer needs them")
    if len(train) == 0:
        raise InputError(f"the training set {train.name!r} is empty")
    if test is not None and test.input_shape != train.input_shape:
        raise InputError(
            f"test inputs have shape {test.input_shape}, training inputs {train.input_shape}: "
            "expected the same"
        )


def _check_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> None:
    """The model's outputs on a training point fit the labels and the loss."""
    was_training = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()
            output = model(x[:1])
    except ReluscopeError:
        raise
    except Exception as exc:
        raise InputError(
            f"the model cannot take the training inputs (shape {tuple(x.shape[1:])} per point): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    losses.check_targets(output, y, loss)


def _prepare_run_dir(run_dir: str | os.PathLike | None) -> Path | None:
    """``run_dir`` created if missing and checked to be writable."""
    if run_dir is None:
        return None
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise InputError(f"run_dir {path} is not a writable directory: {exc}") from exc
    return path
