"""Refusing work that cannot fit in memory, with an estimate of what it would need.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import os

from reluscope.errors import InputError

GIB = 1024**3


def available_memory() -> int | None:
    """The memory available to new work in bytes: Linux's MemAvailable, else the physical
    memory; None when the system says neither."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(nbytes: float, what: str, hint: str = "") -> None:
    """InputError when ``nbytes`` (an estimate, in bytes) exceeds the memory available here:
    the message says that ``what`` needs it, both sizes in GiB, and ``hint``."""
    total = available_memory()
    if total is None or nbytes <= total:
        return
    advice = f"; {hint}" if hint else ""
    raise InputError(
        f"{what} needs about {nbytes / GIB:,.1f} GiB of memory, but only "
        f"{total / GIB:,.1f} GiB are available{advice}"
    )
