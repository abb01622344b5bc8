"""Experiment configurations: pydantic models with a quick and a paper scale, and ``key=value``
overrides read from the command line."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reluscope.errors import InputError

Scale = Literal["quick", "paper"]
SCALES: tuple[str, ...] = ("quick", "paper")


class ExperimentConfig(BaseModel):
    """Base of every experiment's configuration. Field defaults are the quick scale; ``PAPER``
    holds the values that the paper scale changes. Unknown keys and out-of-range values are
    refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    PAPER: ClassVar[dict[str, Any]] = {}

    seed: int = Field(0, ge=0)
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
            raise ValueError("expected cpu, cuda, cuda:N or mps")
        return device

    @classmethod
    def build(
        cls, scale: str = "quick", overrides: dict[str, Any] | None = None
    ) -> ExperimentConfig:
        """The configuration at ``scale`` with ``overrides`` applied, validated."""
        if scale not in SCALES:
            raise InputError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        values = dict(cls.PAPER) if scale == "paper" else {}
        values.update(overrides or {})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            close = [difflib.get_close_matches(k, list(cls.model_fields), n=1) for k in unknown]
            hints = [f"{k!r} -> {c[0]!r}" for k, c in zip(unknown, close, strict=True) if c]
            hint = f"did you mean {', '.join(hints)}? " if hints else ""
            raise InputError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; {hint}"
                f"valid keys: {', '.join(cls.model_fields)}"
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            )
            raise InputError(f"invalid {cls.__name__}: {problems}") from None

    def to_json(self) -> dict[str, Any]:
        """The configuration as plain JSON values."""
        return self.model_dump(mode="json")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "widths=[64,64]", "name=abc"]`` -> a dict; values are read as JSON when
    they parse, else kept as strings (pydantic then validates them)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got {pair!r}")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides[key.strip()] = value
    return overrides
