"""What a training run shows and logs as it goes: a rich progress bar and TensorBoard.

Internal to reluscope.train: not part of the public API.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from reluscope.errors import InputError

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
    """A transient rich progress bar (steps, elapsed time, ETA, batch loss and the latest probe
    values); does nothing when not ``enabled``. Use as a context manager."""

    def __init__(self, total: int, start: int, enabled: bool, description: str = "training"):
        self.enabled = enabled
        self._info = ""
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}", markup=False),
                transient=True,
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
        if not self.enabled:
            return
        if records:
            self._info = summary(records)
        loss_text = "" if loss is None else f"batch loss {loss:.4g}  "
        self._progress.update(self._task, completed=step, info=loss_text + self._info)


def writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; InputError if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise InputError(
            "tensorboard=True needs the tensorboard package: pip install 'reluscope[tensorboard]' "
            "(or pip install tensorboard)"
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
