"""Closed-form learning curves of two-layer linear networks (Saxe, McClelland & Ganguli 2014)
and their bias-free leaky-ReLU version (Zhang, Saxe & Latham 2025, spec section 2.5).

Setting: square loss L = 1/2 <||y - f(x)||^2> (<.> the average over the P points, L in target
units squared), whitened inputs (Sigma^x = <x x^T> = I, the *uncentred* second moment), and
the SVD Sigma^{yx} = <y x^T> = sum_i s_i u_i v_i^T. Time ``t`` counts gradient-descent steps at
learning rate ``lr``, so gradient flow tau dW/dt = -dL/dW has tau = 1/lr.

From a small, balanced, mode-aligned start with initial strengths u0_i, gradient flow of the
linear network follows, mode by mode,

    u_i(t) = s_i e^{2 r s_i lr t} / (e^{2 r s_i lr t} - 1 + s_i / u0_i),   W_2 W_1 = sum_i u_i u_i v_i^T

with r = 1, and L(t) = 1/2 <||y||^2> - sum_i (s_i u_i - u_i^2 / 2). For a bias-free two-layer
leaky-ReLU network (slope alpha) on symmetric data, the odd part ((1+alpha)/2) W_2 W_1 follows
the same law with r = (1+alpha)/2 [DERIVED in the spec: our reconstruction, not the paper's
text], so ReLU (alpha = 0) is twice as slow. For a random (unbalanced) small start the spec's
effective initial strength is u0_i = ((1+alpha)/8) ||W_2^T u_i + W_1 v_i||^2 [DERIVED].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reluscope.dynamics.checks import (
    as_data,
    as_tensor,
    as_weights,
    check_alpha,
    fit_weights,
    positive_real,
)
from reluscope.errors import InputError
from reluscope.records import Records, record, tagged
from reluscope.validation import check_bool

INIT_STRENGTHS = ("effective", "projection")


def rate(alpha: float) -> float:
    """r = (1 + alpha) / 2: the factor by which a bias-free leaky-ReLU network's odd part learns
    more slowly than the equivalent linear network (1 for linear, 1/2 for ReLU)."""
    return (1.0 + check_alpha(alpha)) / 2.0


def second_moment(x: Any) -> Tensor:
    """Sigma^x = <x x^T> (d, d), the uncentred second moment of the inputs (P, d)."""
    xt = as_tensor(x, "x")
    if xt.ndim != 2:
        raise InputError(f"x must have shape (points, features); got shape {tuple(xt.shape)}")
    return xt.T @ xt / len(xt)


def whitening_matrix(x: Any) -> Tensor:
    """T = (Sigma^x)^{-1/2} (symmetric, d x d), so that x T has <x x^T> = I.

    Being linear, the map keeps a dataset's symmetry under x -> -x. Raises InputError when
    Sigma^x is singular (fewer points than features, or collinear features)."""
    sigma = second_moment(x)
    evals, evecs = torch.linalg.eigh(sigma)
    if evals[0] <= 1e-12 * max(float(evals[-1]), 1e-300):
        raise InputError(
            f"cannot whiten x: its second moment <x x^T> is singular (smallest eigenvalue "
            f"{float(evals[0]):.3g}, largest {float(evals[-1]):.3g}); expected linearly independent "
            f"features and at least as many points as features (got {sigma.shape[0]} features)"
        )
    return (evecs / evals.sqrt()) @ evecs.T


def whiten(x: Any) -> Tensor:
    """The inputs x T with <x x^T> = I (float64), T from :func:`whitening_matrix`."""
    xt = as_tensor(x, "x")
    return xt @ whitening_matrix(xt)


def whitening_error(x: Any) -> float:
    """max |Sigma^x - I|: how far the inputs are from whitened (0 for whitened inputs)."""
    sigma = second_moment(x)
    return float(
        (sigma - torch.eye(len(sigma), dtype=sigma.dtype, device=sigma.device)).abs().max()
    )


def linear_floor(x: Any, y: Any) -> float:
    """The loss 1/2 <||y - B x||^2> of the least-squares linear map without intercept, i.e.
    1/2 <||y||^2> - 1/2 tr(Sigma^{yx} (Sigma^x)^+ Sigma^{xy}) (target units squared)."""
    xt, yt = as_data(x, y, "cpu")
    beta = torch.linalg.lstsq(xt, yt, driver="gelsd").solution
    return float(0.5 * ((yt - xt @ beta) ** 2).sum(1).mean())


@dataclass(frozen=True)
class Modes:
    """The SVD Sigma^{yx} = sum_i s_i u_i v_i^T of whitened data: ``s`` (k,), decreasing,
    ``left`` (c, k) and ``right`` (d, k) with k = min(c, d); ``half_mean_square`` = 1/2 <||y||^2>
    (the loss of the zero function) and ``floor`` = the linear-regression loss."""

    s: np.ndarray
    left: np.ndarray
    right: np.ndarray
    half_mean_square: float
    floor: float


def modes(x: Any, y: Any, whiten: bool = False, atol: float = 1e-6) -> Modes:
    """The input-output modes of (x, y) for the closed form, which needs whitened inputs.

    Inputs whose second moment differs from I by more than ``atol`` (max abs entry) raise
    InputError unless ``whiten=True``, which whitens them first (see :func:`whitening_matrix`);
    the modes then describe a network trained on the whitened inputs."""
    xt, yt = as_data(x, y, "cpu")
    check_bool("whiten", whiten)
    atol = positive_real(atol, "atol")
    if whiten:
        xt = xt @ whitening_matrix(xt)
    else:
        err = whitening_error(xt)
        if err > atol:
            raise InputError(
                f"the closed form needs whitened inputs (<x x^T> = I), but max |<x x^T> - I| = "
                f"{err:.3g} > atol = {atol:.3g}; pass whiten=True (or whiten x yourself with "
                "reluscope.dynamics.whiten) and train on the whitened inputs"
            )
    corr = yt.T @ xt / len(xt)
    left, s, right_t = torch.linalg.svd(corr, full_matrices=False)
    half = 0.5 * float((yt**2).sum(1).mean())
    return Modes(
        s=s.numpy(),
        left=left.numpy(),
        right=right_t.T.numpy(),
        half_mean_square=half,
        floor=half - 0.5 * float((s**2).sum()),
    )


def _times(t: Any) -> np.ndarray:
    """Times in steps: 0..t for an int t, else the given non-negative times."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if t < 0:
            raise InputError(f"the number of steps must be >= 0; got {t}")
        return np.arange(int(t) + 1, dtype=np.float64)
    times = as_tensor(t, "t").numpy().reshape(-1)
    if (times < 0).any():
        raise InputError(f"times must be >= 0; got a minimum of {times.min()}")
    return times


def _strengths(s: Any, u0: Any) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (k,) >= 0 and initial strengths broadcast to (k,), all > 0."""
    s = as_tensor(s, "s").numpy().reshape(-1)
    u0 = np.broadcast_to(as_tensor(u0, "u0").numpy().reshape(-1), s.shape).copy()
    if (s < 0).any():
        raise InputError(f"singular values s must be >= 0; got {s}")
    if (u0 <= 0).any():
        raise InputError(
            f"initial mode strengths u0 must be > 0 (a mode at 0 or below never grows); got {u0}"
        )
    return s, u0


def mode_strengths(s: Any, u0: Any, t: Any, lr: float, alpha: float = 1.0) -> np.ndarray:
    """u_i(t) (len(t), k) from the closed form in the module docstring, for singular values
    ``s`` (k,), initial strengths ``u0`` (scalar or (k,)), times ``t`` (an int: steps 0..t, or an
    array of steps) at learning rate ``lr`` and slope ``alpha``.

    Written as u = u0 / (e^{-k} + u0 (1 - e^{-k}) / s), k = 2 r s lr t, which neither
    overflows at large t nor divides by zero at s = 0 (where u = u0 / (1 + 2 r lr t u0))."""
    s, u0 = _strengths(s, u0)
    times, lr = _times(t), positive_real(lr, "lr")
    c = 2.0 * rate(alpha) * lr * times[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(s > 0, -np.expm1(-c * s) / s, c)
    return u0 / (np.exp(-c * s) + u0 * growth)


def mode_half_way_times(s: Any, u0: Any, lr: float, alpha: float = 1.0) -> np.ndarray:
    """The time (in steps) at which u_i reaches s_i / 2: ln(s_i/u0_i - 1) / (2 r s_i lr),
    about ln(s_i/u0_i) / (2 r s_i lr) for small u0_i; 0 if u0_i >= s_i/2, inf if s_i = 0."""
    s, u0 = _strengths(s, u0)
    lr = positive_real(lr, "lr")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(np.maximum(s / u0 - 1.0, 1.0)) / (2.0 * rate(alpha) * s * lr)
    return np.where(s > 0, t, np.inf)


def half_way_step(t: Any, loss: Any, final: float | None = None) -> float:
    """The first time the loss curve reaches halfway between its start and ``final`` (default its
    last value), linearly interpolated between samples; NaN if it never does."""
    times = np.asarray(t, dtype=np.float64).reshape(-1)
    curve = np.asarray(loss, dtype=np.float64).reshape(-1)
    if len(times) != len(curve) or len(curve) == 0:
        raise InputError(
            f"t and loss must be non-empty and of equal length; got {len(times)} and {len(curve)}"
        )
    level = 0.5 * (curve[0] + (curve[-1] if final is None else float(final)))
    below = np.nonzero(curve <= level)[0]
    if len(below) == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(times[0])
    frac = (curve[i - 1] - level) / (curve[i - 1] - curve[i])
    return float(times[i - 1] + frac * (times[i] - times[i - 1]))


def effective_initial_strength(weights: Any, modes: Modes, alpha: float = 1.0) -> np.ndarray:
    """u0_i = ((1+alpha)/8) ||W_2^T u_i + W_1 v_i||^2 for a random (unbalanced) small two-layer
    start (W_1, W_2) [DERIVED in the spec, from the linearised early dynamics: the components
    W_2^T u_i and W_1 v_i grow together along their sum and their difference decays]."""
    w1, w2 = _two_layer(weights, modes)
    v = torch.as_tensor(modes.right)
    u = torch.as_tensor(modes.left)
    grow = w2.T @ u + w1 @ v
    return (rate(alpha) / 4.0) * (grow**2).sum(0).numpy()


def projected_initial_strength(weights: Any, modes: Modes, alpha: float = 1.0) -> np.ndarray:
    """u0_i = u_i^T ((1+alpha)/2) W_2 W_1 v_i: the exact initial strength of a balanced,
    mode-aligned start (see :func:`reluscope.dynamics.aligned_init`)."""
    w1, w2 = _two_layer(weights, modes)
    u = torch.as_tensor(modes.left)
    v = torch.as_tensor(modes.right)
    return rate(alpha) * ((u.T @ (w2 @ w1)) * v.T).sum(1).numpy()


def _two_layer(weights: Any, modes: Modes) -> tuple[Tensor, Tensor]:
    """(W_1, W_2) of a two-layer network that fits the modes' input and output sizes."""
    ws = as_weights(weights, device="cpu")
    if len(ws) != 2:
        raise InputError(
            f"the closed form is for two-layer networks (W_1, W_2); got {len(ws)} weight matrices"
        )
    fit_weights(ws, modes.right.shape[0], modes.left.shape[0])
    return ws


@dataclass(frozen=True)
class TheoryCurve(Records):
    """A closed-form learning curve: ``t`` (steps at ``lr``), ``loss`` (target units squared),
    ``strengths`` u_i(t) (len(t), k), the ``modes``, initial strengths ``u0`` and the per-mode
    half-way times ``mode_half_way`` (steps) for slope ``alpha``."""

    t: np.ndarray
    loss: np.ndarray
    strengths: np.ndarray
    modes: Modes
    u0: np.ndarray
    alpha: float
    lr: float
    mode_half_way: np.ndarray

    @property
    def rescaled_t(self) -> np.ndarray:
        """t (1+alpha)/2: time in steps of a linear network at the same lr, on which the
        curves of every alpha collapse."""
        return self.t * rate(self.alpha)

    def half_way_step(self) -> float:
        """When the loss is halfway from its start to the linear floor (steps)."""
        return half_way_step(self.t, self.loss, final=self.modes.floor)

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`): the loss at each time t (column
        ``step``, in steps; ``mode`` None), then u_i(t) per mode i (metric "strength"), with the
        columns alpha and lr and ``tags``."""
        rows = [
            record("loss", v, step=float(t), mode=None)
            for t, v in zip(self.t, self.loss, strict=True)
        ]
        for i in range(self.strengths.shape[1]):
            rows += [
                record("strength", v, step=float(t), mode=i)
                for t, v in zip(self.t, self.strengths[:, i], strict=True)
            ]
        return tagged(rows, dict(alpha=self.alpha, lr=self.lr), split, tags)


def theory_curve(
    x: Any,
    y: Any,
    t: Any,
    *,
    lr: float,
    alpha: float = 1.0,
    u0: Any = None,
    init: Any = None,
    init_strength: str = "effective",
    whiten: bool = False,
    atol: float = 1e-6,
) -> TheoryCurve:
    """The predicted loss curve of a two-layer linear (alpha = 1) or bias-free leaky-ReLU network
    trained by gradient descent at ``lr`` on (x, y), at times ``t`` (int: steps 0..t).

    Give either ``u0`` (initial strengths, scalar or per mode) or ``init`` = (W_1, W_2), the
    initial weights, turned into strengths by ``init_strength``: "effective" (random small start,
    spec 5(b).3) or "projection" (balanced, mode-aligned start). ``whiten``/``atol`` as in
    :func:`modes`; with ``whiten=True`` the curve is that of a network trained on ``whiten(x)``.
    The loss ignores the even part of a ReLU network, which is 0 for a paired start and small
    for a wide random one on symmetric data."""
    alpha = check_alpha(alpha)
    m = modes(x, y, whiten=whiten, atol=atol)
    if (u0 is None) == (init is None):
        raise InputError("give exactly one of u0 (initial mode strengths) or init (W_1, W_2)")
    if init is not None:
        if init_strength not in INIT_STRENGTHS:
            raise InputError(
                f"init_strength must be one of {list(INIT_STRENGTHS)}; got {init_strength!r}"
            )
        strength = (
            effective_initial_strength
            if init_strength == "effective"
            else projected_initial_strength
        )
        u0 = strength(init, m, alpha)
    s, u0 = _strengths(m.s, u0)
    times = _times(t)
    u = mode_strengths(s, u0, times, lr, alpha)
    loss = m.half_mean_square - (s * u - 0.5 * u**2).sum(1)
    return TheoryCurve(
        t=times,
        loss=loss,
        strengths=u,
        modes=m,
        u0=u0,
        alpha=alpha,
        lr=positive_real(lr, "lr"),
        mode_half_way=mode_half_way_times(s, u0, lr, alpha),
    )
