"""Running one experiment into a run directory: validated config, resumable, skipped when it
already finished with the same config."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure as MplFigure
from rich.console import Console

from reluscope.devices import resolve_device
from reluscope.errors import InputError
from reluscope.experiments.config import ExperimentConfig
from reluscope.experiments.outcome import Figure, Outcome
from reluscope.experiments.provenance import now, run_metadata
from reluscope.experiments.registry import Experiment, get_experiment
from reluscope.figures import REPORT_DPI, figure_style, save_png
from reluscope.io import atomic_write, read_json
from reluscope.rundir import STAMP, claim_directory, locked, make_directory
from reluscope.train.display import progress_file, tensorboard_logging, writer_class

#: While a run is going on, its training progress (see ``reluscope.train.display``).
PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class RunContext:
    """What an experiment's ``run`` gets besides its config: where to write (``run_dir``), the
    scale, whether to show progress, and the console to print on. ``on_write`` is called
    before the run directory is first written through :meth:`path`, :meth:`subdir` or
    :meth:`figure` (the runner writes the config stamp then)."""

    run_dir: Path
    scale: str
    progress: bool = True
    console: Console | None = None
    on_write: Callable[[], None] | None = None

    def path(self, name: str) -> Path:
        """A file inside the run directory (for figures and other outputs)."""
        self._writing()
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
        path = self.path(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _writing(self) -> None:
        if self.on_write is not None:
            self.on_write()


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
    resolve_device(device)


def prepare_run_dir(run_dir: Path, config: dict[str, Any], name: str) -> bool:
    """True when ``run_dir`` holds a finished run of experiment ``name`` with ``config`` whose
    outcome can be read back. Writes nothing: the stamp is written when a run starts
    (:func:`write_stamp`). A stamp of another experiment or config is an InputError naming the
    keys that differ; a damaged stamp is an InputError naming the file; a damaged or missing
    outcome means "not finished" (the run is computed again, resuming from checkpoints)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} is a file; expected a directory")
    config_file = run_dir / STAMP
    if not config_file.exists() and not config_file.is_symlink():
        return False
    advice = "delete it, or choose another output directory"
    try:
        earlier = read_json(config_file, "run config stamp")
    except InputError as exc:
        raise InputError(f"{exc}: {advice}") from None
    stamp = {"experiment": name, "config": config}
    if not isinstance(earlier, dict) or not isinstance(earlier.get("config", {}), dict):
        raise InputError(
            f"run config stamp {str(config_file)!r} is damaged (not an experiment and its "
            f"config): {advice}"
        )
    if earlier != stamp:
        diff = _differences(earlier.get("config", {}), config)
        raise InputError(
            f"{run_dir} holds a run of {earlier.get('experiment')!r} with another config "
            f"({diff}); resume it with the same settings, or choose another output directory"
        )
    return load_outcome(run_dir) is not None


def load_outcome(run_dir: Path) -> tuple[Outcome, dict[str, Any]] | None:
    """The outcome saved in ``run_dir``, or None when it is missing or damaged (a truncated
    file, a directory in place of a file): such a run counts as not finished."""
    try:
        return Outcome.load(run_dir)
    except Exception:  # JSONDecodeError, ArrowInvalid, IsADirectoryError, missing keys, ...
        return None


def write_stamp(run_dir: Path, config: dict[str, Any], name: str) -> None:
    """Create ``run_dir`` and record experiment ``name`` and ``config`` in its stamp."""
    make_directory(run_dir)
    stamp = {"experiment": name, "config": config}
    atomic_write(run_dir / STAMP, lambda t: t.write_text(json.dumps(stamp, indent=2)))


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
    force: bool = False,
    progress: bool = True,
    console: Console | None = None,
    tensorboard: bool = False,
) -> RunSummary:
    """Run ``experiment`` (an Experiment, or its name as for ``get_experiment``) at ``scale``
    with config ``overrides`` into ``run_dir`` (default ``runs/NAME``). A finished run of the
    same config there is read back instead of recomputed unless ``rerun``; an interrupted one
    resumes from its checkpoints. A non-empty ``run_dir`` that reluscope did not write is
    refused unless ``force``. The directory is locked while the run writes it, and its config
    stamp is written once the run starts writing (a run that fails before that leaves none).
    With ``tensorboard``, every training run also logs to TensorBoard in its sub-directory."""
    given_as = experiment if isinstance(experiment, str) else None
    if not isinstance(experiment, Experiment):
        experiment = get_experiment(experiment)
    name = experiment.name
    config = experiment.config.build(scale, overrides)
    check_device(config.device)
    if tensorboard:
        writer_class()  # InputError before anything is written when tensorboard is missing
    run_dir = claim_directory(
        Path(run_dir) if run_dir is not None else Path("runs") / name, force, "run directory"
    )
    stamp = config.to_json()
    finished = prepare_run_dir(run_dir, stamp, name)
    with locked(run_dir):
        if finished and not rerun:
            saved = load_outcome(run_dir)
            if saved is not None:
                outcome, extra = saved
                return RunSummary(
                    experiment, config, outcome, run_dir, extra.get("elapsed_s", 0.0), scale, True
                )
        stamped: list[bool] = []

        def start_writing() -> None:
            if not stamped:
                write_stamp(run_dir, stamp, name)
                stamped.append(True)

        started = now()
        start = time.perf_counter()
        context = RunContext(run_dir, scale, progress, console, start_writing)
        with (
            figure_style(),
            progress_file(run_dir / PROGRESS_FILE),
            tensorboard_logging(tensorboard),
        ):
            outcome = experiment.run(config, context)
        elapsed = time.perf_counter() - start
        start_writing()
        try:
            baseline = experiment.config.build(scale).to_json()
        except InputError:  # a config without defaults: every key goes into the command
            baseline = {}
        metadata = run_metadata(
            experiment, stamp, baseline, scale, run_dir, outcome.numbers, given_as
        )
        outcome.save(
            run_dir, {**metadata, "elapsed_s": elapsed, "started": started, "finished": now()}
        )
    return RunSummary(experiment, config, outcome, run_dir, elapsed, scale, False)
