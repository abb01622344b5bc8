"""Full-batch gradient descent of bias-free (leaky) ReLU and linear networks, in float64.

The network is f(x) = W_L s(W_{L-1} ... s(W_1 x + b_1) ...) + b_L with s(z) = max(z, alpha z)
(alpha = 1: a linear network), optional biases, and the loss L = 1/2 <||y - f(x)||^2> (<.> the
mean over the P points; target units squared). Gradients are written out (spec 5(a)):
delta_L = -(y - f)/P, g_L = delta_L^T h_{L-1}, delta_l = (delta_{l+1} W_{l+1}) * s'(z_l),
g_l = delta_l^T h_{l-1}, with s'(0) = alpha as in PyTorch. A step is W <- W - lr g.

Gradient flow tau dW/dt = -dL/dW with tau = 1/lr is approximated by ``substeps`` steps of
lr / substeps per unit of time, so time is always counted in steps at ``lr``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reluscope.dynamics.checks import (
    as_biases,
    as_data,
    as_weights,
    check_alpha,
    count,
    fit_weights,
    positive_real,
)
from reluscope.dynamics.linear_theory import half_way_step, rate
from reluscope.errors import InputError, TrainingDiverged
from reluscope.records import Records, record, tagged


def activate(z: Tensor, alpha: float) -> Tensor:
    """s(z) = max(z, alpha z) for 0 <= alpha <= 1."""
    return z if alpha == 1.0 else torch.where(z > 0, z, alpha * z)


def forward(
    x: Tensor, weights: tuple[Tensor, ...], alpha: float, biases: tuple[Tensor, ...] | None = None
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The output (P, c), the pre-activations z_l and the layer inputs h_{l-1} of each layer."""
    h, zs, hs = x, [], []
    for i, w in enumerate(weights):
        hs.append(h)
        z = h @ w.T
        if biases is not None:
            z = z + biases[i]
        if i < len(weights) - 1:
            zs.append(z)
            h = activate(z, alpha)
        else:
            h = z
    return h, zs, hs


def _gradients(
    x: Tensor,
    y: Tensor,
    weights: tuple[Tensor, ...],
    alpha: float,
    biases: tuple[Tensor, ...] | None,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The loss and its gradients with respect to each weight matrix and bias vector."""
    f, zs, hs = forward(x, weights, alpha, biases)
    err = y - f
    loss = 0.5 * (err**2).sum(1).mean()
    delta = -err / len(x)
    gw, gb = [], []
    for i in range(len(weights) - 1, -1, -1):
        gw.append(delta.T @ hs[i])
        if biases is not None:
            gb.append(delta.sum(0))
        if i:
            delta = delta @ weights[i]
            if alpha != 1.0:
                delta = torch.where(zs[i - 1] > 0, delta, alpha * delta)
    return loss, gw[::-1], gb[::-1]


@dataclass(frozen=True)
class Trajectory(Records):
    """One gradient-descent run: ``loss`` (steps + 1,) before each step and after the last
    (target units squared), weights at ``snapshot_steps`` (``snapshots``: one tuple of (out, in)
    arrays per step), the final weights and biases, and the run's settings."""

    alpha: float
    lr: float
    substeps: int
    loss: np.ndarray
    snapshot_steps: tuple[int, ...]
    snapshots: tuple[tuple[np.ndarray, ...], ...]
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...] | None

    @property
    def steps(self) -> np.ndarray:
        """The step index of each loss value: 0, 1, ..., len(loss) - 1."""
        return np.arange(len(self.loss))

    @property
    def rescaled_steps(self) -> np.ndarray:
        """steps (1+alpha)/2: time in steps of a linear network at the same lr [DERIVED]."""
        return self.steps * rate(self.alpha)

    def half_way_step(self, final: float | None = None) -> float:
        """When the loss is halfway from its start to ``final`` (default: its last value)."""
        return half_way_step(self.steps, self.loss, final)

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`): metric "loss" at each step (column
        ``step``), with the columns alpha and lr and ``tags``."""
        rows = [record("loss", v, step=i) for i, v in enumerate(self.loss)]
        return tagged(rows, dict(alpha=self.alpha, lr=self.lr), split, tags)


def _snapshot_steps(snapshots: Iterable[int], steps: int) -> tuple[int, ...]:
    """Sorted distinct steps in [0, steps]."""
    try:
        chosen = sorted({count(s, "snapshot step") for s in snapshots})
    except TypeError:
        raise InputError(f"snapshots must be an iterable of steps; got {snapshots!r}") from None
    if chosen and chosen[-1] > steps:
        raise InputError(f"snapshot steps must be in [0, {steps}]; got {chosen[-1]}")
    return tuple(chosen)


def gradient_descent(
    x: Any,
    y: Any,
    weights: Any,
    *,
    alpha: float,
    lr: float,
    steps: int,
    biases: Any = None,
    substeps: int = 1,
    snapshots: Iterable[int] = (),
    device: torch.device | str | None = None,
) -> Trajectory:
    """Train the network with initial ``weights`` (W_1, ..., W_L) and optional ``biases``
    (b_1, ..., b_L) on (x, y) by full-batch gradient descent for ``steps`` steps at ``lr``
    (``substeps`` > 1: gradient flow by ``substeps`` steps of lr/substeps per step). The weights
    passed in are not modified. Raises InputError if the loss becomes NaN or inf."""
    alpha = check_alpha(alpha)
    lr = positive_real(lr, "lr")
    steps = count(steps, "steps")
    substeps = count(substeps, "substeps", minimum=1)
    xt, yt = as_data(x, y, device)
    ws = as_weights(weights, device=xt.device)
    fit_weights(ws, xt.shape[1], yt.shape[1])
    bs = None if biases is None else as_biases(biases, ws, xt.device)
    chosen = _snapshot_steps(snapshots, steps)
    wanted = set(chosen)
    losses = torch.empty(steps + 1, dtype=ws[0].dtype, device=xt.device)
    saved = []
    step_lr = lr / substeps
    for k in range(steps * substeps + 1):
        loss, gw, gb = _gradients(xt, yt, ws, alpha, bs)
        if k % substeps == 0:
            losses[k // substeps] = loss
            if k // substeps in wanted:
                saved.append(tuple(w.cpu().numpy().copy() for w in ws))
        if k == steps * substeps:
            break
        ws = tuple(w - step_lr * g for w, g in zip(ws, gw, strict=True))
        if bs is not None:
            bs = tuple(b - step_lr * g for b, g in zip(bs, gb, strict=True))
    curve = losses.cpu().numpy()
    bad = np.nonzero(~np.isfinite(curve))[0]
    if len(bad):
        raise TrainingDiverged(
            f"gradient descent diverged (loss {curve[bad[0]]} at step {bad[0]}); expected a "
            f"smaller learning rate than lr={lr}",
            step=int(bad[0]),
            loss=float(curve[bad[0]]),
            lr=lr,
        )
    return Trajectory(
        alpha=alpha,
        lr=lr,
        substeps=substeps,
        loss=curve,
        snapshot_steps=chosen,
        snapshots=tuple(saved),
        weights=tuple(w.cpu().numpy() for w in ws),
        biases=None if bs is None else tuple(b.cpu().numpy() for b in bs),
    )
