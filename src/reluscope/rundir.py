"""Output directories that reluscope writes into: claimed (never someone else's files without
``--force``), stamped, and locked while a process writes them.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from reluscope.errors import InputError
from reluscope.io import atomic_write, check_writable_dir

#: The config stamp of a run directory (experiment name and config, written when it starts).
STAMP = "config.json"
#: Marks a directory that holds run directories (a reproduce report or a sweep).
MARKER = ".reluscope"
LOCK = ".lock"
#: Files of ours that may be all a directory holds when a run never got going (a worker's
#: traceback, a run's live training progress).
BOOKKEEPING = frozenset({STAMP, MARKER, LOCK, "error.txt", "progress.json"})
#: Files a directory of runs holds besides run directories (a report and its provenance, a
#: sweep's records and run table).
COLLECTION_FILES = frozenset({"index.html", "provenance.json", "sweep.parquet", "runs.parquet"})


def is_ours(directory: Path, collection: bool = False, depth: int = 2) -> bool:
    """Whether ``directory`` was written by reluscope. A run directory: it has a config stamp
    (checked in full when the run starts), or holds only bookkeeping files. A ``collection``
    (a reproduce report, a sweep): it has the marker, or holds only bookkeeping and collection
    files and directories that are runs or collections themselves (``depth`` levels down)."""
    if not collection and (directory / STAMP).is_file():
        return True
    if collection and (directory / MARKER).is_file():
        return True
    allowed = (BOOKKEEPING - {STAMP}) | COLLECTION_FILES if collection else BOOKKEEPING
    for entry in directory.iterdir():
        if entry.name in allowed:
            continue
        if not (collection and depth > 0 and entry.is_dir() and not entry.is_symlink()):
            return False
        if not (is_ours(entry) or is_ours(entry, True, depth - 1)):
            return False
    return True


def claim_directory(
    directory: str | os.PathLike,
    force: bool = False,
    option: str = "output directory",
    collection: bool = False,
) -> Path:
    """``directory`` checked to be ours to write (:func:`is_ours`; a ``collection`` of runs or
    one run directory): missing, empty, written by reluscope, or any directory with ``force``;
    an existing file, or a directory of other files without ``force``, is an InputError
    listing some of them. Nothing is created."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{option} {directory} is a file; expected a directory")
    if not directory.exists() or force:
        return directory
    try:
        mine = is_ours(directory, collection)
    except OSError as exc:
        raise InputError(f"cannot read {option} {directory}: {exc.strerror or exc}") from None
    if not mine:
        names = sorted(e.name for e in directory.iterdir())
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise InputError(
            f"{option} {directory} holds files that reluscope did not write ({shown}); choose "
            "an empty or new directory, or pass --force to write into it anyway"
        )
    return directory


def make_directory(directory: Path, what: str = "run directory") -> Path:
    """``directory`` created (with parents) and checked writable."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {what} {directory}: {exc.strerror or exc}") from None
    return check_writable_dir(directory, what)


def mark_collection(directory: Path) -> None:
    """Mark ``directory`` as a directory of runs written by reluscope."""
    if not (directory / MARKER).exists():
        atomic_write(directory / MARKER, lambda tmp: tmp.write_text("written by reluscope\n"))


@contextlib.contextmanager
def locked(directory: Path, what: str = "run directory") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created) while the block runs; InputError at
    once when another process holds it. The lock is the operating system's (``flock``), so it
    ends with its process, even one killed with SIGKILL. Without ``fcntl`` (Windows) the block
    runs unlocked. A directory this call created is removed again when the block wrote nothing
    into it (a run refused before it started leaves no trace)."""
    created = not directory.exists()
    make_directory(directory, what)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield directory
        return
    path = directory / LOCK
    try:
        handle = open(path, "a+")  # noqa: SIM115 - closed below, after the block
    except OSError as exc:
        raise InputError(f"cannot lock {what} {directory}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise InputError(
                f"{what} {directory} is being written by another process (pid {holder}); wait "
                "for it to end, or choose another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield directory
    finally:
        handle.close()
        if created:
            _remove_if_untouched(directory)


def _remove_if_untouched(directory: Path) -> None:
    """Remove ``directory`` when it holds nothing but its lock file."""
    with contextlib.suppress(OSError):
        if [entry.name for entry in directory.iterdir()] == [LOCK]:
            (directory / LOCK).unlink()
            directory.rmdir()
