"""Refusing work that cannot fit in memory, with an estimate of what it would need."""

from __future__ import annotations

import os

from reluscope.errors import InputError

GIB = 1024**3


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (None when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(nbytes: float, what: str, hint: str = "") -> None:
    """InputError when ``nbytes`` (an estimate, in bytes) exceeds this machine's physical
    memory: the message names ``what`` needs it, both sizes in GiB, and ``hint``."""
    total = physical_memory()
    if total is None or nbytes <= total:
        return
    advice = f"; {hint}" if hint else ""
    raise InputError(
        f"{what} needs about {nbytes / GIB:,.1f} GiB of memory, but this machine has "
        f"{total / GIB:,.1f} GiB{advice}"
    )
