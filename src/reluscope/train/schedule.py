"""When probes run: log-spaced steps like the papers, or every N steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluscope.validation import check_int


@dataclass(frozen=True)
class Schedule:
    """A set of training steps (0 = before the first update) at which something happens."""

    steps: frozenset[int]

    def __contains__(self, step: int) -> bool:
        return step in self.steps

    def sorted(self) -> list[int]:
        """The steps in increasing order."""
        return sorted(self.steps)


def log_steps(total: int, count: int = 50, include_zero: bool = True) -> Schedule:
    """About ``count`` log-spaced steps in [1, total] (the authors' ``np.unique(np.logspace(0,
    log10(total), count).astype(int))``), plus step 0 (initialisation) and the last step."""
    total, count = check_int("total", total, minimum=1), check_int("count", count, minimum=1)
    points = np.logspace(0, np.log10(total), count)
    points[-1] = total  # 10 ** log10(total) can round down to total - 1: keep one last step
    steps = set(np.unique(points.astype(int)).tolist())
    steps |= {total} | ({0} if include_zero else set())
    return Schedule(frozenset(int(s) for s in steps))


def every(n: int, total: int, include_zero: bool = True) -> Schedule:
    """Steps 0 (if ``include_zero``), n, 2n, ... and the last step ``total``."""
    n, total = check_int("n", n, minimum=1), check_int("total", total, minimum=1)
    steps = set(range(0 if include_zero else n, total + 1, n)) | {total}
    return Schedule(frozenset(steps))
