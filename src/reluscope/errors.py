"""Errors a user can act on: each says what was given and what is expected."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any


class ReluscopeError(Exception):
    """Base class of every error reluscope raises on purpose."""


class UnsupportedLayerError(ReluscopeError):
    """A module or operation that is not piecewise-linear or not supported by the tracer; the
    message (one line) names its path, its type, why, and what is supported."""

    def __init__(self, path: str, kind: str, supported: str, detail: str = "") -> None:
        self.path = path
        self.kind = kind
        reason = f": {detail.rstrip('.')}" if detail else ""
        message = f"unsupported layer at '{path}' (type {kind}){reason}. Supported: {supported}."
        super().__init__(message)


class InputError(ReluscopeError, ValueError):
    """Bad input data, shapes, options or files."""


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """For a mistyped ``value``: "; did you mean 'CHOICE'?" naming the one of ``choices``
    closest to it in spelling (case, '-' and '_' aside), or "" when none is close."""
    if not isinstance(value, str) or not value:
        return ""
    names = [str(c.value) if isinstance(c, Enum) else str(c) for c in choices]

    def key(text: str) -> str:
        return text.lower().replace("-", "_")

    by_key = {key(n): n for n in names}
    close = difflib.get_close_matches(key(value), list(by_key), n=1, cutoff=0.6)
    return f"; did you mean {by_key[close[0]]!r}?" if close else ""


def validation_summary(exc: Exception) -> str:
    """A pydantic ValidationError as one line: ``key: message (got value)`` per problem, with
    a "did you mean" for a mistyped choice."""
    problems: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    return (
        "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            + _choice_hint(err)
            for err in problems
        )
        or str(exc).splitlines()[0]
    )


def _choice_hint(err: dict[str, Any]) -> str:
    """The "did you mean" of a pydantic literal or enum error (its choices are quoted in
    ``ctx['expected']``)."""
    if err.get("type") not in ("literal_error", "enum"):
        return ""
    choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    return did_you_mean(err.get("input"), choices)


class TrainingDiverged(ReluscopeError, ArithmeticError):
    """Training produced a NaN or infinite loss: the step, the loss and the learning rate are
    in the message (and in ``step``, ``loss``, ``lr``)."""

    def __init__(self, message: str, *, step: int, loss: float, lr: float) -> None:
        self.step, self.loss, self.lr = step, loss, lr
        super().__init__(message)


#: Keys that were renamed, with the names that replace them (configs, specs and keywords).
RENAMED_KEYS: dict[str, str] = {
    "init_scale": (
        "init_scale has three names now: param_scale (the Trainer multiplies every parameter "
        "by it when training starts: TrainConfig.param_scale, train.param_scale in experiment "
        "configs), init_multiplier (the zoo mlp multiplies its default initialisation by it) "
        "and init_std (the bias-free experiments draw their initial weights as init_std * "
        "N(0, 1))"
    ),
    "init_scales": "init_scales is now param_scales (the Trainer's param_scale of each run)",
}


def renamed_key_hints(keys: Iterable[object]) -> str:
    """The rename notes of those ``keys`` that were renamed, joined (empty when none was)."""
    return " ".join(RENAMED_KEYS[k] for k in keys if isinstance(k, str) and k in RENAMED_KEYS)
