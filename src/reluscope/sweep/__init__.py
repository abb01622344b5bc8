"""Sweeps: an experiment run over a grid of config values and seeds, on local worker
processes or on Ray, with finished runs skipped and all records gathered in one frame."""

from reluscope.sweep.grid import SweepPoint, expand_grid, parse_grid, run_id
from reluscope.sweep.result import SweepResult, SweepRun
from reluscope.sweep.runner import BACKENDS, run_sweep

__all__ = [
    "BACKENDS",
    "SweepPoint",
    "SweepResult",
    "SweepRun",
    "expand_grid",
    "parse_grid",
    "run_id",
    "run_sweep",
]
