"""The one matplotlib style of every reluscope figure, and figures drawn without pyplot
(thread- and process-safe, no display needed) and saved atomically as PNG.

Figures are at most :data:`PAGE_WIDTH_IN` inches wide and saved at :data:`REPORT_DPI`, so that
the report shows them 1:1 at its page width (990 px): fonts and legends appear at the point
sizes of :data:`STYLE`, never shrunk.

Internal to reluscope: shared by its packages, not part of the public API.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reluscope.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Resolution of the report's PNG figures, in dots per inch.
REPORT_DPI = 110

#: Widest figure, in inches: REPORT_DPI * PAGE_WIDTH_IN is the report's content width in px.
PAGE_WIDTH_IN = 9.0

#: rcParams of every reluscope figure (font sizes in points).
STYLE: dict[RcKeyType, Any] = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "figure.dpi": REPORT_DPI,
    "savefig.dpi": REPORT_DPI,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Draw the figures made inside this block in :data:`STYLE` (rcParams restored after)."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(
    ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.5, 3.4), **subplot_kw
) -> tuple[Figure, list[Axes]]:
    """A figure with ``nrows x ncols`` panels of ``size`` inches each (scaled down together
    when the row would be wider than :data:`PAGE_WIDTH_IN`), and its axes as a flat list."""
    width, height = size[0] * ncols, size[1] * nrows
    if width > PAGE_WIDTH_IN:
        width, height = PAGE_WIDTH_IN, height * PAGE_WIDTH_IN / width
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, [ax for row in axes for ax in row]


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = REPORT_DPI) -> Path:
    """Write ``fig`` to ``path`` as a PNG (replacing any earlier file only once complete)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def log_axis(ax: Axes, which: str = "x", ticks: Iterable[float] | None = None) -> None:
    """Put the ``which`` ("x" or "y") axis of ``ax`` on a log scale labelled with plain numbers
    (``0.5``, ``2``, ``40``, not ``5 x 10^-1``) and no minor-tick labels, which otherwise
    collide; the major ticks are at ``ticks`` when given (e.g. the swept values), else at 1, 2
    and 5 times the powers of ten."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if ticks is not None:
        axis.set_ticks(sorted(set(ticks)))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=15))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())
