"""Files: written so that a failure never leaves a half-written or lost file, read so that a
missing, damaged or hostile file ends in one clear InputError naming it.

Reading never unpickles: tensors are read with ``torch.load(weights_only=True)`` and arrays
with ``numpy.load(allow_pickle=False)``; a file that holds pickled objects is refused as such.

Internal to reluscope: shared by its packages, not part of the public API.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reluscope.errors import InputError

PICKLE_REFUSED = "the file holds pickled objects, which reluscope never loads"


def check_writable_dir(directory: str | os.PathLike, what: str = "output directory") -> Path:
    """``directory`` when it is an existing directory this process can create files in (a
    temporary file is created and removed, which also catches read-only file systems)."""
    directory = Path(directory) if str(directory) else Path(".")
    if not directory.is_dir():
        kind = "is not a directory" if directory.exists() else "does not exist"
        raise InputError(f"{what} {directory} {kind}: create it or choose another one")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise InputError(f"{what} {directory} is not writable: {exc.strerror or exc}") from None
    return directory


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name next to ``path``, then rename it to ``path``.

    An existing ``path`` is replaced only once the new file is complete; on failure it is left
    untouched, the temporary file removed, and the failure (a full disk, a read-only file
    system, a file-size limit, a directory in the way) raised as one InputError naming
    ``path``. The file gets the usual permissions (umask).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {path}: a directory is in its place")
    tmp = parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a short write as RuntimeError
        raise InputError(f"cannot write {path}: {_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):  # e.g. on a read-only file system
            tmp.unlink(missing_ok=True)
    return path


def _q(path: Path) -> str:
    return repr(str(path))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_readable_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` when it names a regular file this process may read; an InputError saying what
    it is instead (missing, a symbolic-link loop, a directory, a FIFO or device, unreadable).
    A FIFO is refused because reading it would wait for a writer forever."""
    path = Path(path).expanduser()
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} {_q(path)} is a loop of symbolic links") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(f"{what} {_q(path)} does not exist") from None
        raise InputError(f"cannot open {what} {_q(path)}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {_q(path)} is a directory; expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            f"{what} {_q(path)} is not a regular file (a FIFO, socket or device); expected a file"
        )
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {what} {_q(path)}: permission denied")
    return path


def file_inside(directory: str | os.PathLike, name: object, what: str) -> Path:
    """The file ``name`` (a path relative to ``directory``, e.g. read from one of its JSON
    files) resolved, symbolic links followed, when it lies inside ``directory``; an InputError
    naming ``what`` when it does not: not a relative path, an absolute path, ``..`` leading
    out, or a symbolic link pointing outside. Whether the file exists is not checked."""
    root = Path(directory).resolve()
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise InputError(f"{what} must be a file name relative to {directory}; got {name!r}")
    if Path(name).is_absolute():
        raise InputError(f"{what} {name!r} is an absolute path; expected one inside {directory}")
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        lexical = Path(os.path.normpath(root / name))
        link = f" (a symbolic link to {target})" if lexical.is_relative_to(root) else ""
        raise InputError(f"{what} {name!r} leads outside {directory}{link}")
    return target


def read_error(exc: BaseException) -> str:
    """Why a file could not be read, in a few words: pickled content, truncation, or the
    library's own first line."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "allow_pickle" in text or "pickled" in text:
        return PICKLE_REFUSED
    if isinstance(exc, EOFError) or "unexpected end" in text.lower():
        return "the file is truncated"
    return f"{type(exc).__name__}: {_reason(exc)}"


def load_tensors(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of a checked file; InputError naming ``what``
    and the path when it is unreadable, damaged or holds pickled objects."""
    path = check_readable_file(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = read_error(exc)
        if reason.startswith(type(exc).__name__):  # torch's own words: rarely helpful
            reason = f"it is truncated, damaged or not written by torch.save ({_short(reason)})"
        raise InputError(f"cannot read {what} {_q(path)}: {reason}") from exc


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")  # .npy, .npz (zip), empty .npz


def read_arrays(path: str | os.PathLike, what: str) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a ``.npy`` file, or the arrays of a ``.npz`` file by name, read without
    unpickling; InputError naming ``what`` and the file when it is missing, not a regular
    file, not a NumPy file, damaged, or holds object arrays (pickles)."""
    path = check_readable_file(path, what)
    try:
        with open(path, "rb") as handle:
            if not handle.read(6).startswith(NUMPY_MAGIC):
                raise InputError(f"cannot read {what} {_q(path)}: it is not a NumPy .npy/.npz file")
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return dict(loaded)
            return loaded
    except InputError:
        raise
    except Exception as exc:  # truncated, damaged, object arrays, ...
        raise InputError(f"cannot read {what} {_q(path)}: {read_error(exc)}") from exc


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in ``path``; InputError naming ``what`` and the file when it is missing,
    not a file, or damaged (truncated, not JSON)."""
    path = check_readable_file(path, what)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {_q(path)} is damaged ({_reason(exc)})") from exc
