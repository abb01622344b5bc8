"""What ``reproduce`` shows while it runs (a live table of the running experiments with each
one's training progress and ETA) and when it ends (an experiment x PASS/FAIL table)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from reluscope.experiments.runner import PROGRESS_FILE, RunSummary


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    minutes, rest = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}"
        if minutes >= 60
        else f"{minutes}:{rest:02d}"
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Board:
    """The live table of a ``reproduce`` over ``names`` into ``out``: which experiments run,
    their current training run's step / total, bar and ETA (read from each run directory's
    progress file), and how many are done or waiting. Pass it to ``rich.live.Live``."""

    def __init__(self, names: list[str], out: Path, workers: int) -> None:
        self.names, self.out, self.workers = names, out, workers
        self.start = time.time()
        self.done: dict[str, RunSummary | str] = {}

    def finished(self, name: str, result: RunSummary | str) -> None:
        """Record that experiment ``name`` ended with ``result`` (a summary or an error text)."""
        self.done[name] = result

    def _progress(self, name: str) -> dict | None:
        file = self.out / name / PROGRESS_FILE
        try:
            if file.stat().st_mtime < self.start - 1:
                return None  # left behind by an earlier, killed run
            return json.loads(file.read_text())
        except (OSError, ValueError):
            return None

    def __rich_console__(self, console, options):
        yield self.table(options.max_width)

    def table(self, width: int = 100) -> Table:
        """The table at ``width`` columns (probe values cut to the width left)."""
        running = {
            n: state
            for n in self.names
            if n not in self.done and (state := self._progress(n)) is not None
        }
        waiting = len(self.names) - len(self.done) - len(running)
        failed = sum(isinstance(r, str) for r in self.done.values())
        title = (
            f"reproduce: {len(self.done)}/{len(self.names)} done"
            + (f" ([red]{failed} failed[/])" if failed else "")
            + f", {len(running)} running, {waiting} waiting ({self.workers} at a time)"
            + f"  {_clock(time.time() - self.start)}"
        )
        table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
        table.add_column("experiment", no_wrap=True)
        table.add_column("training run", no_wrap=True)
        table.add_column("progress", no_wrap=True)
        table.add_column("steps", justify="right", no_wrap=True)
        table.add_column("ETA", justify="right", no_wrap=True)
        table.add_column("latest probes", no_wrap=True)
        left = max(width - 80, 10)
        for name, state in running.items():
            total = state.get("total")
            step = state.get("step", 0)
            bar: ProgressBar | str
            if total:
                bar = ProgressBar(total=total, completed=step, width=20)
                steps = f"{step}/{total}"
            else:
                bar, steps = "preparing", ""
            table.add_row(
                name,
                escape(_cut(state.get("run", ""), 16)),
                bar,
                steps,
                _clock(state.get("eta_s")),
                escape(_cut(state.get("info", ""), left)),
            )
        return table


def verdict_table(runs: list[RunSummary], failures: list[tuple[str, str]], verbose: bool) -> Table:
    """One row per experiment: its predictions' PASS count, each verdict, the run time (and its
    key numbers when ``verbose``)."""
    table = Table(title="verdicts", title_justify="left")
    table.add_column("experiment", no_wrap=True)
    table.add_column("PASS", justify="right", no_wrap=True)
    table.add_column("predictions")
    table.add_column("time", justify="right", no_wrap=True)
    if verbose:
        table.add_column("key numbers")
    for run in runs:
        predictions = run.outcome.predictions
        passed = sum(p.passed for p in predictions)
        colour = "green" if passed == len(predictions) else "red"
        marks = " ".join("[green]PASS[/]" if p.passed else "[red]FAIL[/]" for p in predictions)
        row = [
            run.experiment.name,
            f"[{colour}]{passed}/{len(predictions)}[/]",
            marks,
            "reused" if run.reused else _clock(run.elapsed_s),
        ]
        if verbose:
            row.append(
                escape(
                    ", ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in run.outcome.numbers.items()
                    )
                )
            )
        table.add_row(*row)
    for name, _error in failures:
        table.add_row(name, "[red]error[/]", "[red]the experiment failed (see the report)[/]", "")
    return table
