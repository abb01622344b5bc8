"""Ctrl-C during training: deferred to the end of an update, so a checkpoint is consistent.

Internal to reluscope.train: not part of the public API.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class InterruptGuard:
    """A context manager: while active (in the main thread, when SIGINT has Python's default
    handler), a Ctrl-C that arrives inside ``critical()`` raises KeyboardInterrupt only when
    that section ends; elsewhere, or on a second Ctrl-C, it raises at once.

    ``in_critical`` stays True when the section is left by an exception, so a handler can tell
    that the state may be half-updated.
    """

    def __init__(self) -> None:
        self.in_critical = False
        self._pending = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> InterruptGuard:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.in_critical and not self._pending:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A section that a first Ctrl-C does not interrupt."""
        self.in_critical = True
        yield
        self.in_critical = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
