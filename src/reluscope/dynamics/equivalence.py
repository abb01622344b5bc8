"""A bias-free leaky-ReLU network and a linear network trained side by side.

The equivalence map [DERIVED in the spec, section 2.4]: on symmetric data the odd part of a
two-layer bias-free network with weights (W_1, W_2), slope alpha and step lr moves exactly like a
linear network with weights sqrt((1+alpha)/2) (W_1, W_2) and step ((1+alpha)/2) lr, as long as
its even part is 0 on the data (exactly so from a paired start, approximately from a small
random start with a wide hidden layer). Deeper networks have no such map; they are compared
with the deep linear network from the same start at the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reluscope.dynamics.checks import as_weights, check_alpha, positive_real
from reluscope.dynamics.linear_theory import rate
from reluscope.dynamics.simulate import Trajectory, gradient_descent
from reluscope.errors import InputError
from reluscope.records import Records, record, tagged
from reluscope.validation import check_choice

LINEAR_PARTNERS = ("equivalent", "same")


def equivalent_linear(weights: Any, lr: float, alpha: float) -> tuple[tuple[Tensor, ...], float]:
    """The linear network equivalent to a two-layer bias-free leaky-ReLU network:
    weights sqrt((1+alpha)/2) (W_1, W_2) and learning rate ((1+alpha)/2) lr."""
    ws = as_weights(weights)
    if len(ws) != 2:
        raise InputError(
            f"the equivalence map is for two-layer networks (W_1, W_2); got {len(ws)} weight "
            "matrices (compare deeper networks with linear='same')"
        )
    r = rate(alpha)
    return tuple(r**0.5 * w for w in ws), r * positive_real(lr, "lr")


@dataclass(frozen=True)
class Comparison(Records):
    """A bias-free network's run (``bias_free``) and its linear partner's (``linear``), step by
    step; ``partner`` says how the linear run was set up ("equivalent" or "same")."""

    bias_free: Trajectory
    linear: Trajectory
    partner: str

    @property
    def relative_error(self) -> np.ndarray:
        """|L_bias_free(t) - L_linear(t)| / L_bias_free(0) at every step."""
        return np.abs(self.bias_free.loss - self.linear.loss) / self.bias_free.loss[0]

    @property
    def max_relative_error(self) -> float:
        """The largest relative loss difference over the run."""
        return float(self.relative_error.max())

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`; column ``net``): both losses
        (:meth:`Trajectory.to_records`), then "relative_error" at each step (net "both"), with
        the columns partner, alpha and lr and ``tags``."""
        tags = dict(tags, partner=self.partner)
        rows = self.bias_free.to_records(split, **tags, net="bias_free")
        rows += self.linear.to_records(split, **tags, net="linear")
        errors = [record("relative_error", v, step=i) for i, v in enumerate(self.relative_error)]
        params = dict(alpha=self.bias_free.alpha, lr=self.bias_free.lr)
        rows += tagged(errors, params, split, dict(tags, net="both"))
        return rows


def compare(
    x: Any,
    y: Any,
    weights: Any,
    *,
    alpha: float,
    lr: float,
    steps: int,
    linear: str = "equivalent",
    substeps: int = 1,
    snapshots: Iterable[int] = (),
    device: torch.device | str | None = None,
) -> Comparison:
    """Train the bias-free network with slope ``alpha`` from ``weights`` at ``lr``, and a linear
    network either from the :func:`equivalent_linear` weights and step (``linear="equivalent"``,
    two layers only) or from the same weights at the same step (``linear="same"``).

    Both runs use :func:`reluscope.dynamics.gradient_descent` with the same ``steps``,
    ``substeps``, ``snapshots`` and ``device``."""
    alpha = check_alpha(alpha)
    check_choice("linear", linear, LINEAR_PARTNERS)
    ws = as_weights(weights)
    lin_ws, lin_lr = equivalent_linear(ws, lr, alpha) if linear == "equivalent" else (ws, lr)
    if isinstance(snapshots, Iterable):
        snapshots = list(snapshots)  # a generator would be used up by the first run
    run: dict[str, Any] = dict(steps=steps, substeps=substeps, snapshots=snapshots, device=device)
    return Comparison(
        bias_free=gradient_descent(x, y, ws, alpha=alpha, lr=lr, **run),
        linear=gradient_descent(x, y, lin_ws, alpha=1.0, lr=lin_lr, **run),
        partner=linear,
    )
