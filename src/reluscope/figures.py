"""Matplotlib figures for experiments and reports, drawn without pyplot (thread- and
process-safe, no display needed) and saved atomically as PNG.

Internal to reluscope: shared by its packages, not part of the public API.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reluscope.io import atomic_write


def new_figure(
    ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.5, 3.4), **subplot_kw
) -> tuple[Figure, list[Axes]]:
    """A figure with ``nrows x ncols`` panels of ``size`` inches each, and its axes as a flat list."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, [ax for row in axes for ax in row]


#: Resolution of the report's PNG figures, in dots per inch.
REPORT_DPI = 110


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = REPORT_DPI) -> Path:
    """Write ``fig`` to ``path`` as a PNG (replacing any earlier file only once complete)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
