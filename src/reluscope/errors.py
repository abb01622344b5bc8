"""Errors a user can act on: each says what was given and what is expected."""

from __future__ import annotations


class ReluscopeError(Exception):
    """Base class of every error reluscope raises on purpose."""


class UnsupportedLayerError(ReluscopeError):
    """A module or operation that is not piecewise-linear or not supported by the tracer."""

    def __init__(self, path: str, kind: str, supported: str, detail: str = "") -> None:
        self.path = path
        self.kind = kind
        message = (
            f"unsupported layer at '{path}' (type {kind}). {detail}".rstrip()
            + f"\nSupported: {supported}."
        )
        super().__init__(message)


class InputError(ReluscopeError, ValueError):
    """Bad input data, shapes, options or files."""
