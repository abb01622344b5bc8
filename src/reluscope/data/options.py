"""Data set specs (``name[:key=value,...]``) and checks of their option values.

Internal to reluscope.data: not part of the public API.
"""

from __future__ import annotations

import numbers
from typing import Any

from reluscope.validation import invalid
from reluscope.values import parse_options


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``'gaussian:n=500,d=2'`` into ``('gaussian', {'n': 500, 'd': 2})``.

    Options follow the value grammar of :mod:`reluscope.values` (the one of model specs,
    ``--set`` and ``--grid``)."""
    name, _, rest = spec.strip().partition(":")
    if not rest:
        return name.strip(), {}
    options = parse_options(rest, spec, kind="data")
    return name.strip(), options


def positive_int(value: Any, option: str, dataset: str) -> int:
    """``value`` as an int >= 1 (integral floats such as 1e3 accepted)."""
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and float(value) >= 1
    ):
        return int(float(value))
    raise invalid(f"{dataset}: {option}", "a positive integer", value)


def real(value: Any, option: str, dataset: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (and > 0 when ``positive``)."""
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and abs(float(value)) < float("inf")
        and (not positive or float(value) > 0)
    ):
        return float(value)
    kind = "a positive number" if positive else "a finite number"
    raise invalid(f"{dataset}: {option}", kind, value)


def choice(value: Any, option: str, dataset: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise invalid(f"{dataset}: {option}", f"one of {list(allowed)}", value)
    return value


def flag(value: Any, option: str, dataset: str) -> bool:
    """``value`` if it is a bool (``true``/``false`` in a spec)."""
    if not isinstance(value, bool):
        raise invalid(f"{dataset}: {option}", "true or false", value)
    return value
