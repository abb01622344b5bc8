"""Deep bias-free networks: the singular values of each layer over training, and a depth-3
network with a nonlinear odd part (the depth gap of spec 2.2).

From a small start on symmetric data, deep linear networks end with nearly rank-one layers
(second/first singular value about 0.1 in the spec's runs [DERIVED]); deep bias-free ReLU
networks share the low-rank structure in their first, linear-like stage and lose some of it when
they learn a nonlinear odd target (W_1 ratio about 0.6 [DERIVED]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from reluscope.dynamics.checks import as_weights
from reluscope.dynamics.simulate import Trajectory
from reluscope.errors import InputError
from reluscope.records import Records, record, tagged


def singular_values(weights: Any) -> tuple[np.ndarray, ...]:
    """The singular values (decreasing, in weight units) of each matrix W_1, ..., W_L."""
    return tuple(torch.linalg.svdvals(w).cpu().numpy() for w in as_weights(weights))


@dataclass(frozen=True)
class LayerSpectra(Records):
    """Singular values of each layer at the snapshot steps: ``values[l]`` is
    (len(steps), min(out, in)) for layer l + 1, decreasing along the last axis."""

    steps: tuple[int, ...]
    values: tuple[np.ndarray, ...]

    def ratio(self, layer: int, k: int = 2) -> np.ndarray:
        """sigma_k / sigma_1 of layer ``layer`` (1-based) at each snapshot step (0 for a zero
        matrix; NaN if the layer has fewer than k singular values)."""
        if not 1 <= layer <= len(self.values):
            raise InputError(f"layer must be in 1..{len(self.values)}; got {layer}")
        v = self.values[layer - 1]
        if k < 1 or k > v.shape[1]:
            return np.full(len(self.steps), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v[:, 0] > 0, v[:, k - 1] / v[:, 0], 0.0)

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`): metric "singular_value" with ``layer``
        the layer's 1-based number (as a string), the columns ``step`` and ``index`` (1-based,
        decreasing values), and ``tags``."""
        rows = [
            record("singular_value", s, layer=str(layer + 1), step=step, index=i + 1)
            for layer, v in enumerate(self.values)
            for step, row in zip(self.steps, v, strict=True)
            for i, s in enumerate(row)
        ]
        return tagged(rows, {}, split, tags)


def layer_spectra(trajectory: Trajectory) -> LayerSpectra:
    """The singular values of every layer at the trajectory's snapshot steps."""
    if not trajectory.snapshots:
        raise InputError(
            "the trajectory has no weight snapshots; pass snapshots=[...] to gradient_descent"
        )
    per_step = [singular_values(ws) for ws in trajectory.snapshots]
    values = tuple(np.stack(layer) for layer in zip(*per_step, strict=True))
    return LayerSpectra(steps=trajectory.snapshot_steps, values=values)


def depth_gap_example() -> nn.Sequential:
    """A depth-3 bias-free ReLU network (2 -> 4 -> 2 -> 1, float64) computing the odd,
    nonlinear f(x) = ReLU(x_1 - |x_2|) - ReLU(-x_1 - |x_2|) [DERIVED in the spec]; hidden layer 1
    holds ReLU(+-x_1) and ReLU(+-x_2), so x_1 and |x_2| are sums of its units."""
    first = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    second = torch.tensor([[1.0, -1.0, -1.0, -1.0], [-1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
    third = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    linears = [
        nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64)
        for w in (first, second, third)
    ]
    with torch.no_grad():
        for layer, w in zip(linears, (first, second, third), strict=True):
            layer.weight.copy_(w)
    return nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2]).eval()
