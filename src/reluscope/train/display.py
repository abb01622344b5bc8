"""What a training run shows and logs as it goes: a rich progress bar and TensorBoard.

Internal to reluscope.train: not part of the public API.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reluscope.errors import InputError
from reluscope.io import atomic_write

#: How many probe values the progress bar shows.
SHOWN = 8


def summary(records: Iterable[dict[str, Any]]) -> str:
    """The totals among ``records`` as 'metric[split] value' pairs (extras and layers left out)."""
    parts = []
    for r in records:
        if r["layer"] is None and "." not in r["metric"]:
            split = f"[{r['split']}]" if r["split"] else ""
            parts.append(f"{r['metric']}{split} {r['value']:.4g}")
    return "  ".join(parts[:SHOWN])


class ProgressDisplay:
    """A transient rich progress bar (steps, ETA, batch loss and the latest probe
    values with the step they were measured at); the bar, step count and ETA come first and
    stay visible on a 100-column terminal, the values are cut to the width left. Whether shown
    or not, the progress also goes to the :func:`progress_file` sink when one is set (for
    ``reproduce``'s table of running experiments). Use as a context manager."""

    def __init__(self, total: int, start: int, enabled: bool, description: str = "training"):
        self.enabled = enabled
        self.total, self.description = total, description
        self._info = ""
        self._start_step, self._start_time, self._written = start, time.monotonic(), 0.0
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.table import Column

            self._progress = Progress(
                TextColumn("{task.description}", table_column=Column(max_width=18, no_wrap=True)),
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn(
                    "{task.fields[info]}",
                    markup=False,
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
                ),
                transient=True,
                expand=True,
            )
            self._task = self._progress.add_task(description, total=total, completed=start, info="")

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def update(self, step: int, loss: float | None = None, records=None) -> None:
        """Show ``step`` steps done, the last batch ``loss`` and the totals of new ``records``."""
        if records:
            self._info = f"@{step}: {summary(records)}"
        _write_progress(self, step)
        if not self.enabled:
            return
        loss_text = "" if loss is None else f"loss {loss:.4g}  "
        self._progress.update(self._task, completed=step, info=loss_text + self._info)

    def eta(self, step: int) -> float | None:
        """Seconds left at the mean speed since this display started (None before a step)."""
        done = step - self._start_step
        if done <= 0:
            return None
        return (time.monotonic() - self._start_time) / done * (self.total - step)


_SINK: dict[str, Path | None] = {"file": None}
_TENSORBOARD = {"on": False}


@contextmanager
def tensorboard_logging(enabled: bool = True) -> Iterator[None]:
    """Inside this block every Trainer with a run directory also logs its records to
    TensorBoard (``run_dir/tensorboard``), as with ``Trainer(tensorboard=True)``; InputError
    at once when tensorboard is not installed."""
    if enabled:
        writer_class()
    before, _TENSORBOARD["on"] = _TENSORBOARD["on"], enabled
    try:
        yield
    finally:
        _TENSORBOARD["on"] = before


def tensorboard_requested() -> bool:
    """Whether a :func:`tensorboard_logging` block asks trainers to log to TensorBoard."""
    return _TENSORBOARD["on"]


#: Seconds between two writes of the progress file.
WRITE_EVERY_S = 0.5


@contextmanager
def progress_file(path: Path) -> Iterator[None]:
    """Inside this block every training run's progress (``step``, ``total``, ``eta_s``,
    ``run``, ``info``) is written to ``path`` as JSON, at most every WRITE_EVERY_S seconds;
    the file is removed at the end."""
    _SINK["file"] = path
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"run": "", "step": 0})))
        yield
    finally:
        _SINK["file"] = None
        path.unlink(missing_ok=True)


def _write_progress(display: ProgressDisplay, step: int) -> None:
    path = _SINK["file"]
    now = time.monotonic()
    if path is None or (now - display._written < WRITE_EVERY_S and step < display.total):
        return
    display._written = now
    state = {
        "run": display.description,
        "step": step,
        "total": display.total,
        "eta_s": display.eta(step),
        "info": display._info,
    }
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(state)))
    except InputError:  # progress is a courtesy: never let it stop a run
        pass


def writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; InputError if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise InputError(
            "TensorBoard logging (--tensorboard, tensorboard=True) needs the tensorboard package, "
            "which is not installed: pip install 'reluscope[tensorboard]' (or pip install "
            "tensorboard)"
        ) from exc
    return SummaryWriter


def open_tensorboard(log_dir: str | os.PathLike, purge_step: int | None = None):
    """A SummaryWriter on ``log_dir``; events from ``purge_step`` on (the steps a resumed run
    repeats) are dropped from earlier event files."""
    return writer_class()(log_dir=str(log_dir), purge_step=purge_step)


def log_records(writer, records: Iterable[dict[str, Any]]) -> None:
    """Each record as a scalar tagged metric/split/layer at its step."""
    for r in records:
        tag = "/".join(str(p) for p in (r["metric"], r["split"], r["layer"]) if p is not None)
        writer.add_scalar(tag, r["value"], r["step"])
