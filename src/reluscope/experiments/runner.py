"""Running one experiment into a run directory: validated config, resumable, skipped when it
already finished with the same config."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure as MplFigure
from rich.console import Console

from reluscope.errors import InputError
from reluscope.experiments.config import ExperimentConfig
from reluscope.experiments.outcome import Figure, Outcome
from reluscope.experiments.provenance import now, run_metadata
from reluscope.experiments.registry import Experiment, get_experiment
from reluscope.io import atomic_write
from reluscope.report.figures import REPORT_DPI, figure_style, save_png
from reluscope.train.display import progress_file, tensorboard_logging, writer_class

#: While a run is going on, its training progress (see ``reluscope.train.display``).
PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class RunContext:
    """What an experiment's ``run`` gets besides its config: where to write (``run_dir``), the
    scale, whether to show progress, and the console to print on."""

    run_dir: Path
    scale: str
    progress: bool = True
    console: Console | None = None

    def path(self, name: str) -> Path:
        """A file inside the run directory (for figures and other outputs)."""
        return self.run_dir / name

    def say(self, text: str) -> None:
        """Print a progress line on the console, when there is one and progress is on."""
        if self.progress and self.console is not None:
            self.console.log(text)

    def figure(self, fig: MplFigure, name: str, caption: str, dpi: int = REPORT_DPI) -> Figure:
        """Save the matplotlib figure ``fig`` as the PNG ``name`` in the run directory at
        ``dpi`` dots per inch and return its entry for the Outcome."""
        save_png(fig, self.path(name), dpi)
        return Figure(name, caption)

    def subdir(self, name: str) -> Path:
        """A sub-directory of the run directory (e.g. one training run's checkpoints), created."""
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class RunSummary:
    """A finished run: the experiment, its config, its outcome, where it lives, how long it took
    (seconds), and whether it was read back from an earlier run instead of computed."""

    experiment: Experiment
    config: ExperimentConfig
    outcome: Outcome
    run_dir: Path
    elapsed_s: float
    scale: str
    reused: bool


def check_device(device: str) -> None:
    """InputError when ``device`` is not available on this machine."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' asked for, but MPS is not available here")


def prepare_run_dir(run_dir: Path, config: dict[str, Any], name: str) -> bool:
    """Create ``run_dir`` and record ``config`` in it. True when the directory already holds a
    finished run of this config. A directory of another experiment or config is an InputError."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create run directory {run_dir}: {exc}") from exc
    if not os.access(run_dir, os.W_OK):
        raise InputError(f"run directory {run_dir} is not writable")
    config_file = run_dir / "config.json"
    stamp = {"experiment": name, "config": config}
    if config_file.exists():
        earlier = json.loads(config_file.read_text())
        if earlier != stamp:
            diff = _differences(earlier.get("config", {}), config)
            raise InputError(
                f"{run_dir} holds a run of {earlier.get('experiment')!r} with another config "
                f"({diff}); resume it with the same settings, or choose another output directory"
            )
        return (run_dir / "outcome.json").exists()
    atomic_write(config_file, lambda t: t.write_text(json.dumps(stamp, indent=2)))
    return False


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    changed = [
        f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)
    ]
    return "; ".join(changed) or "experiment differs"


def run_experiment(
    experiment: str | Experiment,
    scale: str = "quick",
    overrides: dict[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
    *,
    rerun: bool = False,
    progress: bool = True,
    console: Console | None = None,
    tensorboard: bool = False,
) -> RunSummary:
    """Run ``experiment`` (an Experiment, or its name as for ``get_experiment``) at ``scale``
    with config ``overrides`` into ``run_dir`` (default ``runs/NAME``). A finished run of the same config there is read back instead of
    recomputed unless ``rerun``; an interrupted one resumes from its checkpoints. With
    ``tensorboard``, every training run also logs to TensorBoard in its sub-directory."""
    given_as = experiment if isinstance(experiment, str) else None
    if not isinstance(experiment, Experiment):
        experiment = get_experiment(experiment)
    name = experiment.name
    config = experiment.config.build(scale, overrides)
    check_device(config.device)
    if tensorboard:
        writer_class()  # InputError before anything is written when tensorboard is missing
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / name
    finished = prepare_run_dir(run_dir, config.to_json(), name)
    if finished and not rerun:
        outcome, extra = Outcome.load(run_dir)
        return RunSummary(
            experiment, config, outcome, run_dir, extra.get("elapsed_s", 0.0), scale, True
        )
    started = now()
    start = time.perf_counter()
    with (
        figure_style(),
        progress_file(run_dir / PROGRESS_FILE),
        tensorboard_logging(tensorboard),
    ):
        outcome = experiment.run(config, RunContext(run_dir, scale, progress, console))
    elapsed = time.perf_counter() - start
    try:
        baseline = experiment.config.build(scale).to_json()
    except InputError:  # a config without defaults: every key goes into the command
        baseline = {}
    metadata = run_metadata(
        experiment, config.to_json(), baseline, scale, run_dir, outcome.numbers, given_as
    )
    outcome.save(run_dir, {**metadata, "elapsed_s": elapsed, "started": started, "finished": now()})
    return RunSummary(experiment, config, outcome, run_dir, elapsed, scale, False)
