"""Worker processes that end with their parent: a worker whose parent was killed (even with
SIGKILL, which no handler sees) must not go on writing into the parent's output directory.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: Seconds between two looks at the parent, where the kernel cannot be asked to signal.
POLL_S = 0.5


def die_with_parent() -> None:
    """Make this process end when its parent does. On Linux the kernel sends it SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent's pid and exits
    the process once the parent is gone. Meant as the initializer of worker processes."""
    parent = os.getppid()
    if not (sys.platform.startswith("linux") and _set_death_signal()):
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="lifeline").start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _set_death_signal() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)
