"""Validation of user input, shared by the whole package (in the spirit of scikit-learn's
``utils/validation.py``).

Every check takes the argument's ``name`` and its value, returns the value in canonical form
(a Python ``int``/``float``/``bool``, a tuple, a torch dtype, an int64 tensor) and otherwise
raises :class:`~reluscope.errors.InputError` with one message template::

    NAME must be EXPECTED; got VALUE

built by :func:`invalid`. Constraints are declared by keywords (``minimum``, ``strict``,
``allow_none``, ``choices``), so a caller states what it accepts instead of writing the test.
This module depends on torch and :mod:`reluscope.errors` only, so every package may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeVar, overload

import numpy as np
import torch
from torch import Tensor

from reluscope.errors import InputError, did_you_mean

T = TypeVar("T")


def describe(value: Any) -> str:
    """A short description of ``value`` for messages: its repr, or type and shape of arrays."""
    if isinstance(value, (Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid(name: str, expected: str, got: Any, *, raw: bool = False) -> InputError:
    """The error "NAME must be EXPECTED; got VALUE": ``got`` described by :func:`describe`, or
    used as it is with ``raw`` (a sentence already describing the value)."""
    return InputError(f"{name} must be {expected}; got {got if raw else describe(got)}")


def _bounds_text(minimum: float | None, maximum: float | None, strict: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict else '>='} {_bound(minimum)}")
    if maximum is not None:
        parts.append(f"<= {_bound(maximum)}")
    return " and ".join(parts)


def _bound(value: float) -> str:
    """A bound as written in messages: integers in full, other numbers in short form."""
    return str(value) if isinstance(value, int) else f"{value:g}"


@overload
def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    allow_none: Literal[False] = ...,
) -> int: ...
@overload
def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    allow_none: bool,
) -> int | None: ...
def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """``value`` as an int within [minimum, maximum] (bool is not an int here); None passes
    when ``allow_none``."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(minimum, maximum, False)
    expected = "an integer" + (f" {bounds}" if bounds else "") + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid(name, expected, value)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise invalid(name, expected, value)
    return number


@overload
def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = ...,
    maximum: float | None = ...,
    strict: bool = ...,
    finite: bool = ...,
    allow_none: Literal[False] = ...,
) -> float: ...
@overload
def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = ...,
    maximum: float | None = ...,
    strict: bool = ...,
    finite: bool = ...,
    allow_none: bool,
) -> float | None: ...
def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    finite: bool = True,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a float: a real number (not a bool), finite unless ``finite=False``, not
    NaN, ``>= minimum`` (``> minimum`` when ``strict``) and ``<= maximum``; None passes when
    ``allow_none``."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(minimum, maximum, strict)
    expected = ("a finite number" if finite else "a number") + (f" {bounds}" if bounds else "")
    expected += " or None" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(name, expected, value)
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise invalid(name, expected, value)
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise invalid(name, expected, value)
    if maximum is not None and v > maximum:
        raise invalid(name, expected, value)
    return v


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise invalid(name, "True or False", value)
    return value


def check_choice(name: str, value: T, choices: Iterable[Any]) -> T:
    """``value`` if it is one of ``choices`` (the message suggests the closest one)."""
    options = list(choices)
    if isinstance(value, bool) or value not in options:
        error = invalid(name, f"one of {options}", value)
        raise InputError(f"{error}{did_you_mean(value, options)}")
    return value


#: The floating dtypes reluscope computes in (SVD, eigendecompositions and exact region
#: geometry are not implemented or not accurate in half precision).
COMPUTE_DTYPES = (torch.float32, torch.float64)


def check_float_dtype(name: str, value: Any, *, allow_none: bool = True) -> torch.dtype | None:
    """``value`` if it is one of :data:`COMPUTE_DTYPES` (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if value not in COMPUTE_DTYPES:
        expected = "torch.float32 or torch.float64" + (" or None" if allow_none else "")
        raise invalid(name, expected, value)
    return value


def dtype_name(dtype: torch.dtype) -> str:
    """The one spelling of a dtype in results' parameters: "float64", "float32", ..."""
    return str(dtype).removeprefix("torch.")


@overload
def check_shape(name: str, value: Any, *, allow_none: Literal[False] = ...) -> tuple[int, ...]: ...
@overload
def check_shape(name: str, value: Any, *, allow_none: bool) -> tuple[int, ...] | None: ...
def check_shape(name: str, value: Any, *, allow_none: bool = False) -> tuple[int, ...] | None:
    """``value`` as a non-empty tuple of positive ints (a shape without the batch dimension)."""
    if value is None and allow_none:
        return None
    expected = "a non-empty sequence of positive integers, e.g. (1, 28, 28)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise invalid(name, expected, value)
    if not value or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in value
    ):
        raise invalid(name, expected, value)
    return tuple(int(s) for s in value)


def check_names(
    name: str, value: Any, known: Sequence[str], what: str = "names among"
) -> list[str]:
    """``value`` (one name or several) as a non-empty list of names among ``known`` (``what``
    says what they are in the message, e.g. "of the network's sites")."""
    wanted = [value] if isinstance(value, str) else value
    expected = f"a non-empty list of {what} {list(known)}"
    if not isinstance(wanted, Iterable):
        raise invalid(name, expected, value)
    wanted = list(wanted)
    unknown = [w for w in wanted if w not in known]
    if not wanted or unknown:
        hint = did_you_mean(unknown[0], known) if unknown else ""
        raise InputError(f"{invalid(name, expected, value)}{hint}")
    return wanted


def check_labels(
    name: str, labels: Any, n: int, num_classes: int, *, min_distinct: int = 1
) -> Tensor:
    """``labels`` as a 1-D int64 tensor of ``n`` class indices in [0, num_classes) holding at
    least ``min_distinct`` distinct classes."""
    try:
        y = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError, RuntimeError):
        raise invalid(name, "an array of integer class indices", labels) from None
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise invalid(name, "integer class indices (convert with .long())", y)
    if y.dim() != 1 or len(y) != n:
        raise invalid(name, f"of shape ({n},), one per input point", y)
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise invalid(
            name,
            f"class indices in [0, {num_classes}) for a network with {num_classes} classes",
            f"values from {int(y.min())} to {int(y.max())}",
            raw=True,
        )
    distinct = len(torch.unique(y))
    if distinct < min_distinct:
        raise invalid(name, f"of at least {min_distinct} distinct classes", f"{distinct}", raw=True)
    return y


def check_finite(name: str, x: Tensor) -> Tensor:
    """``x`` if every entry is finite."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise invalid(
            name, "finite (no NaN or inf)", f"{bad} non-finite entries in {describe(x)}", raw=True
        )
    return x
