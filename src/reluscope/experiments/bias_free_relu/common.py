"""Pieces shared by the bias-free ReLU experiments: config field types, progress lines, tidy loss
rows and the slope colour scale of the paper's teaser figure."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from matplotlib import colormaps
from pydantic import Field

from reluscope.experiments import RunContext

SPEC = "spec bias_free_relu.md"

Slope = Annotated[float, Field(ge=0.0, le=1.0)]
"""A leaky-ReLU slope alpha in [0, 1] (0: ReLU, 1: linear)."""


def say(ctx: RunContext, text: str) -> None:
    """Print a progress line on the run's console, if it has one and progress is on."""
    if ctx.progress and ctx.console is not None:
        ctx.console.log(text)


def curve_rows(values: np.ndarray, metric: str = "loss", **tags: Any) -> list[dict[str, Any]]:
    """Tidy rows (tags..., step, metric, value), one per entry of a per-step curve."""
    return [dict(tags, step=i, metric=metric, value=float(v)) for i, v in enumerate(values)]


def slope_colour(alpha: float) -> tuple[float, float, float, float]:
    """The teaser figure's colours: alpha = 0 (ReLU) yellow through alpha = 1 (linear) navy."""
    return colormaps["viridis"](0.95 * (1.0 - alpha))
