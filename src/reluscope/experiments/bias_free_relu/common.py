"""Pieces shared by the bias-free ReLU experiments: config field types, the base config of the
experiments trained on the spec's cubic-teacher data, progress lines, snapshot times, tidy loss
rows, saved figures and the slope colour scale of the paper's teaser figure."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from matplotlib import colormaps
from pydantic import Field, model_validator
from torch import Tensor

from reluscope.dynamics import cubic_teacher
from reluscope.experiments import ExperimentConfig

SPEC = "spec bias_free_relu.md"

Slope = Annotated[float, Field(ge=0.0, le=1.0)]
"""A leaky-ReLU slope alpha in [0, 1] (0: ReLU, 1: linear)."""
InitStd = Annotated[float, Field(gt=0, description="initial weights init_std * N(0, 1)")]
"""The scale s0 > 0 of the small random start."""
StepSize = Annotated[float, Field(gt=0, description="gradient-descent step")]
"""The gradient-descent step (learning rate) > 0."""
Steps = Annotated[int, Field(ge=1, description="gradient-descent steps")]
"""The number of full-batch gradient-descent steps, >= 1."""


class TeacherConfig(ExperimentConfig):
    """Base of the configs trained on the spec's cubic-teacher data: n Gaussian draws in d
    dimensions, augmented with their negatives and whitened (which needs n >= d), and the
    target y = linear z + cubic z^3 with z = x_1."""

    n: int = Field(200, ge=1, description="Gaussian draws, augmented with their negatives (P = 2n)")
    d: int = Field(10, ge=1, description="input dimension")
    linear: float = Field(1.2, description="target y = linear z + cubic z^3, z = x_1")
    cubic: float = Field(0.5, description="nonlinear odd part of the target")

    @model_validator(mode="after")
    def _whitenable(self) -> TeacherConfig:
        if self.n < self.d:
            raise ValueError(f"whitening needs n >= d draws; got n={self.n}, d={self.d}")
        return self

    def teacher(self, **options: Any) -> tuple[Tensor, Tensor]:
        """Inputs (P, d) and targets (P, 1), float64: ``cubic_teacher`` with this config's n, d,
        target and seed, and ``options`` (even, shift, augment, whiten) for the other forms."""
        return cubic_teacher(
            self.n, self.d, linear=self.linear, cubic=self.cubic, seed=self.seed, **options
        )


def snapshot_steps(steps: int, count: int) -> list[int]:
    """``count`` evenly spaced steps from 0 to ``steps``, rounded to whole steps, ascending
    (fewer where rounding makes two equal)."""
    return sorted({int(s) for s in np.linspace(0, steps, count).round()})


def curve_rows(values: np.ndarray, metric: str = "loss", **tags: Any) -> list[dict[str, Any]]:
    """Tidy rows (tags..., step, metric, value), one per entry of a per-step curve."""
    return [dict(tags, step=i, metric=metric, value=float(v)) for i, v in enumerate(values)]


def slope_colour(alpha: float) -> tuple[float, float, float, float]:
    """The teaser figure's colours: alpha = 0 (ReLU) yellow through alpha = 1 (linear) navy."""
    return colormaps["viridis"](0.95 * (1.0 - alpha))
