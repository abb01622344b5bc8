"""Reading experiment run directories for the report: only the files a run wrote
(``outcome.json``, ``config.json``, ``error.txt``, its PNGs and a ``provenance.json`` next to
them), never the experiments' code.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reluscope.errors import InputError
from reluscope.io import file_inside

OUTCOME_FILE = "outcome.json"
CONFIG_FILE = "config.json"
ERROR_FILE = "error.txt"
PROVENANCE_FILE = "provenance.json"

#: How deep below a given directory runs are looked for (reproduce: 1, sweep: 2).
SEARCH_DEPTH = 3


@dataclass(frozen=True)
class RunDir:
    """One finished run as saved in its directory: ``outcome`` is the parsed ``outcome.json``."""

    path: Path
    outcome: dict[str, Any]

    @property
    def name(self) -> str:
        """The experiment's name."""
        return str(self.outcome.get("experiment") or self.path.name)

    @property
    def sort_key(self) -> tuple:
        """Report order: paper, the experiment's order, its name, then the directory."""
        order = self.outcome.get("report_order") or [99, 0, self.name]
        return (*order, str(self.path))


@dataclass(frozen=True)
class FailedRun:
    """A run that ended in an error: its experiment's name, directory and error text."""

    name: str
    path: Path | None
    error: str


@dataclass(frozen=True)
class RunSet:
    """The finished and failed runs found under some directories, and the run-level
    provenance (``provenance.json`` of a ``reproduce`` output directory, or empty)."""

    runs: list[RunDir]
    failures: list[FailedRun] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def run_file(path: Path, name: str) -> Path:
    """The file ``name`` of run directory ``path``, checked to lie inside it (a symbolic link
    leading out of the run is refused): see :func:`~reluscope.io.file_inside`."""
    return file_inside(path, name, "file")


def read_run(path: Path) -> RunDir:
    """The finished run in ``path``; InputError naming the file when its outcome.json is
    missing, unreadable or damaged, or names a figure outside the run directory."""
    file = path / OUTCOME_FILE
    try:
        outcome = json.loads(run_file(path, OUTCOME_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} holds no finished run (no {OUTCOME_FILE})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {file}: {exc}") from exc
    if not isinstance(outcome, dict) or "predictions" not in outcome:
        raise InputError(f"{file} is not a reluscope outcome (no 'predictions')")
    predictions = outcome["predictions"]
    if not isinstance(predictions, list) or not all(
        isinstance(p, dict) and {"claim", "passed"} <= p.keys() for p in predictions
    ):
        raise InputError(
            f"{file} is damaged: 'predictions' must be a list of objects with 'claim' and 'passed'"
        )
    figures = outcome.get("figures", [])
    if not isinstance(figures, list) or not all(
        isinstance(f, dict) and {"file", "caption"} <= f.keys() for f in figures
    ):
        raise InputError(
            f"{file} is damaged: 'figures' must be a list of objects with 'file' and 'caption'"
        )
    for figure in figures:
        file_inside(path, figure["file"], f"the figure file in {file}")
    return RunDir(path, outcome)


def _failed(path: Path) -> FailedRun:
    try:
        stamp = json.loads(run_file(path, CONFIG_FILE).read_text())
        name = stamp.get("experiment", path.name) if isinstance(stamp, dict) else path.name
    except (OSError, ValueError):
        name = path.name
    error = run_file(path, ERROR_FILE).read_text(errors="replace")
    return FailedRun(str(name), path, error)


def _find(path: Path, depth: int) -> tuple[list[Path], list[Path]]:
    """Directories at most ``depth`` levels below ``path`` holding a finished or failed run."""
    if (path / OUTCOME_FILE).is_file():
        return [path], []
    if (path / ERROR_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return [], [path]
    finished: list[Path] = []
    failed: list[Path] = []
    if depth > 0:
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            done, broken = _find(child, depth - 1)
            finished += done
            failed += broken
    return finished, failed


def _provenance(paths: list[Path]) -> dict[str, Any]:
    for path in paths:
        file = path / PROVENANCE_FILE
        if file.is_file():
            file = run_file(path, PROVENANCE_FILE)
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {file}: {exc}") from exc
    return {}


def collect(paths: list[Path]) -> RunSet:
    """Every run in or below ``paths`` (run directories, ``reproduce`` output directories,
    sweep directories), in report order. InputError when a path is missing or holds no run."""
    finished: list[Path] = []
    failed: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise InputError(
                f"{path} is not a directory; expected a run, reproduce or sweep directory"
            )
        done, broken = _find(path, SEARCH_DEPTH)
        if not done and not broken and (path / CONFIG_FILE).is_file():
            raise InputError(
                f"{path} holds a run that has not finished (a {CONFIG_FILE} but no "
                f"{OUTCOME_FILE}): give the command that started it again to finish it"
            )
        if not done and not broken:
            raise InputError(
                f"no runs found in {path}: expected {OUTCOME_FILE} in it or in its "
                f"sub-directories (the output of reluscope run, reproduce or sweep)"
            )
        finished += done
        failed += broken
    runs = sorted({p.resolve(): read_run(p) for p in finished}.values(), key=lambda r: r.sort_key)
    return RunSet(runs, [_failed(p) for p in failed], _provenance(paths))
