"""Data set specs (``name[:key=value,...]``) and checks of their option values."""

from __future__ import annotations

import numbers
from typing import Any

from reluscope.errors import InputError
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
        and value >= 1
    ):
        return int(value)
    raise InputError(f"{dataset}: {option} must be a positive integer, got {value!r}")


def real(value: Any, option: str, dataset: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (and > 0 when ``positive``)."""
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and abs(float(value)) < float("inf")
        and (not positive or value > 0)
    ):
        return float(value)
    kind = "a positive number" if positive else "a finite number"
    raise InputError(f"{dataset}: {option} must be {kind}, got {value!r}")


def choice(value: Any, option: str, dataset: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise InputError(f"{dataset}: {option} must be one of {list(allowed)}, got {value!r}")
    return value


def flag(value: Any, option: str, dataset: str) -> bool:
    """``value`` if it is a bool (``true``/``false`` in a spec)."""
    if not isinstance(value, bool):
        raise InputError(f"{dataset}: {option} must be true or false, got {value!r}")
    return value
