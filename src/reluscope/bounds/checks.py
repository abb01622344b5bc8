"""Checks of the options every bound takes, with messages that say what was given and expected.

Internal to reluscope.bounds: not part of the public API.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from reluscope.validation import check_int, check_number, invalid


def real(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a finite float; > 0 with ``positive``, >= 0 with ``nonnegative``."""
    minimum = 0.0 if positive or nonnegative else None
    return check_number(name, value, minimum=minimum, strict=positive)


def margin(value: Any) -> float:
    """The margin gamma: a finite number > 0 (in the units of the network's outputs)."""
    return real(value, "margin", positive=True)


def delta(value: Any) -> float:
    """The confidence parameter delta, in the open interval (0, 1)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) < 1
    if not ok:
        raise invalid("delta", "a number in the open interval (0, 1)", value)
    return float(value)


def bound_options(gamma: Any, confidence: Any, risk: Any) -> tuple[float, float, float]:
    """(margin, delta, margin risk) of a margin bound, checked: ``gamma`` by :func:`margin`,
    ``confidence`` (delta) by :func:`delta` and ``risk`` a finite number >= 0."""
    return margin(gamma), delta(confidence), real(risk, "margin_risk", nonnegative=True)


def integer(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``."""
    return check_int(name, value, minimum=minimum)


def per_layer(values: Any, name: str, length: int | None = None, **kind: bool) -> tuple[float, ...]:
    """A sequence of finite numbers (one per layer) as a tuple of floats, checked by
    :func:`real` with ``kind``; of ``length`` entries when given."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise invalid(name, "a sequence of numbers", values) from None
    if length is not None and len(values) != length:
        raise invalid(name, f"{length} numbers (one per layer)", f"{len(values)}", raw=True)
    return tuple(real(v, f"{name}[{i}]", **kind) for i, v in enumerate(values))
