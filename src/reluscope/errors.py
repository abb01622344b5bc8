"""Errors a user can act on: each says what was given and what is expected."""

from __future__ import annotations


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


def validation_summary(exc: Exception) -> str:
    """A pydantic ValidationError as one line: ``key: message (got value)`` per problem."""
    problems = getattr(exc, "errors", lambda: [])()
    return (
        "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in problems
        )
        or str(exc).splitlines()[0]
    )
