"""Writing result files so that a failure never leaves a half-written or lost file.

Internal to reluscope: shared by its packages, not part of the public API.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reluscope.errors import InputError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name next to ``path``, then rename it to ``path``.

    An existing ``path`` is replaced only once the new file is complete; on failure it is left
    untouched and the temporary file removed. The file gets the usual permissions (umask).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    tmp = parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path
