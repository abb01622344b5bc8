"""Checks of the options every bound takes, with messages that say what was given and expected.

Internal to reluscope.bounds: not part of the public API.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from reluscope.errors import InputError


def real(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a finite float; > 0 with ``positive``, >= 0 with ``nonnegative``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and nonnegative:
        ok = value >= 0
    if not ok:
        sign = " > 0" if positive else " >= 0" if nonnegative else ""
        raise InputError(f"{name} must be a finite number{sign}, got {value!r}")
    return float(value)


def margin(value: Any) -> float:
    """The margin gamma: a finite number > 0 (in the units of the network's outputs)."""
    return real(value, "margin", positive=True)


def delta(value: Any) -> float:
    """The confidence parameter delta, in the open interval (0, 1)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) < 1
    if not ok:
        raise InputError(f"delta must be a number in the open interval (0, 1), got {value!r}")
    return float(value)


def bound_options(gamma: Any, confidence: Any, risk: Any) -> tuple[float, float, float]:
    """(margin, delta, margin risk) of a margin bound, checked: ``gamma`` by :func:`margin`,
    ``confidence`` (delta) by :func:`delta` and ``risk`` a finite number >= 0."""
    return margin(gamma), delta(confidence), real(risk, "margin_risk", nonnegative=True)


def integer(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``."""
    ok = (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and int(value) >= minimum
    )
    if not ok:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def per_layer(values: Any, name: str, length: int | None = None, **kind: bool) -> tuple[float, ...]:
    """A sequence of finite numbers (one per layer) as a tuple of floats, checked by
    :func:`real` with ``kind``; of ``length`` entries when given."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise InputError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if length is not None and len(values) != length:
        raise InputError(f"{name} must have {length} entries (one per layer), got {len(values)}")
    return tuple(real(v, f"{name}[{i}]", **kind) for i, v in enumerate(values))
