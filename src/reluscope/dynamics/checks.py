"""Checks shared by the dynamics modules: data, weights, slopes and counts, all made float64.

Every failure raises :class:`reluscope.errors.InputError` saying what was given and what is
expected.

Internal to reluscope.dynamics: not part of the public API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.validation import check_int, check_number

DTYPE = torch.float64


def as_tensor(value: Any, name: str, device: torch.device | str | None = None) -> Tensor:
    """``value`` (array-like or tensor) as a float64 tensor, refusing NaN, inf and emptiness."""
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name} must be a numeric array or tensor; got {type(value)}") from exc
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must hold real numbers; got dtype {t.dtype}")
    t = t.detach().to(device=device, dtype=DTYPE)
    if t.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(t.shape)}); expected at least one value")
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or inf; expected finite values")
    return t


def as_data(x: Any, y: Any, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Inputs (P, d) and targets (P, c) as float64 tensors; a 1-D ``y`` is one output (P, 1)."""
    xt, yt = as_tensor(x, "x", device), as_tensor(y, "y", device)
    if xt.ndim != 2:
        raise InputError(f"x must have shape (points, features); got shape {tuple(xt.shape)}")
    if yt.ndim == 1:
        yt = yt[:, None]
    if yt.ndim != 2:
        raise InputError(f"y must have shape (points,) or (points, outputs); got {tuple(yt.shape)}")
    if len(xt) != len(yt):
        raise InputError(
            f"x and y must have the same number of points; got {len(xt)} inputs and "
            f"{len(yt)} targets"
        )
    return xt, yt


def check_alpha(alpha: Any) -> float:
    """The leaky slope as a float in [0, 1] (0: ReLU, 1: linear)."""
    return check_number("alpha", alpha, minimum=0, maximum=1)


def positive_real(value: Any, name: str) -> float:
    """``value`` as a finite float > 0."""
    return check_number(name, value, minimum=0, strict=True)


def count(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``."""
    return check_int(name, value, minimum=minimum)


def as_weights(
    weights: Any, name: str = "weights", device: torch.device | str | None = None
) -> tuple[Tensor, ...]:
    """A chain of weight matrices W_1 (h_1, d), ..., W_L (c, h_{L-1}) as float64 tensors, in the
    ``nn.Linear`` layout (out, in); checks that consecutive shapes fit."""
    if isinstance(weights, (Tensor, np.ndarray)) or not isinstance(weights, Sequence):
        raise InputError(
            f"{name} must be a sequence of matrices (W_1, ..., W_L); got {type(weights)}"
        )
    if len(weights) < 1:
        raise InputError(f"{name} is empty; expected at least one weight matrix")
    out = tuple(as_tensor(w, f"{name}[{i}]", device) for i, w in enumerate(weights))
    for i, w in enumerate(out):
        if w.ndim != 2:
            raise InputError(f"{name}[{i}] must be a matrix (out, in); got shape {tuple(w.shape)}")
        if i and w.shape[1] != out[i - 1].shape[0]:
            raise InputError(
                f"{name}[{i}] has {w.shape[1]} inputs but {name}[{i - 1}] has "
                f"{out[i - 1].shape[0]} outputs; expected them equal"
            )
    return out


def fit_weights(weights: tuple[Tensor, ...], inputs: int, outputs: int) -> None:
    """Check that the first layer takes ``inputs`` features and the last gives ``outputs``."""
    if weights[0].shape[1] != inputs or weights[-1].shape[0] != outputs:
        raise InputError(
            f"the weights map {weights[0].shape[1]} inputs to {weights[-1].shape[0]} outputs, "
            f"but the data have {inputs} features and {outputs} outputs"
        )


def as_biases(
    biases: Any, weights: tuple[Tensor, ...], device: torch.device | str | None = None
) -> tuple[Tensor, ...]:
    """One bias vector per layer, b_l of size W_l.shape[0], as float64 tensors."""
    if isinstance(biases, (Tensor, np.ndarray)) or not isinstance(biases, Sequence):
        raise InputError(
            f"biases must be a sequence of vectors (b_1, ..., b_L); got {type(biases)}"
        )
    bs = tuple(as_tensor(b, f"biases[{i}]", device).reshape(-1) for i, b in enumerate(biases))
    expected = [w.shape[0] for w in weights]
    if [len(b) for b in bs] != expected:
        raise InputError(
            f"biases must have sizes {expected} (one per layer output); got {[len(b) for b in bs]}"
        )
    return bs
