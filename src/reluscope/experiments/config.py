"""Experiment configurations: pydantic models with a quick and a paper scale, overridable key
by key (``train.lr=0.01`` reaches the nested training section), and the training
configuration an experiment passes to the Trainer."""

from __future__ import annotations

import difflib
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reluscope.errors import InputError, renamed_key_hints, validation_summary
from reluscope.train.config import TrainConfig
from reluscope.validation import check_choice
from reluscope.values import merge, nest

Scale = Literal["quick", "paper"]
SCALES: tuple[str, ...] = ("quick", "paper")


class ExperimentConfig(BaseModel):
    """Base of every experiment's configuration. Field defaults are the quick scale; ``PAPER``
    holds the values that the paper scale changes. Unknown keys and out-of-range values are
    refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    PAPER: ClassVar[dict[str, Any]] = {}

    seed: int = Field(0, ge=0)
    seeds: int = Field(
        1, ge=1, description="seeds the verdicts are decided over: seed, seed + 1, ..."
    )
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
        """The configuration at ``scale`` with ``overrides`` applied, validated. Overrides of a
        nested section are dotted keys (``{"train.lr": 0.01}``) or dicts (``{"train": {"lr":
        0.01}}``); they change only the keys they name, the rest keeps the section's default."""
        check_choice("scale", scale, SCALES)
        values = nest(dict(cls.PAPER)) if scale == "paper" else {}
        values = merge(values, nest(dict(overrides or {})))
        _check_keys(cls, values, "")
        for name, field in cls.model_fields.items():
            section = _section(field.annotation)
            if section is not None and isinstance(values.get(name), dict):
                default = field.get_default(call_default_factory=True)
                values[name] = merge(default.model_dump(), values[name])
        try:
            return cls(**values)
        except ValidationError as exc:
            raise InputError(f"invalid {cls.__name__}: {validation_summary(exc)}") from None

    @classmethod
    def config_keys(cls) -> list[str]:
        """The keys ``--set`` takes, a nested section as ``NAME.*`` (e.g. ``train.*``)."""
        return [
            f"{name}.*" if _section(field.annotation) else name
            for name, field in cls.model_fields.items()
        ]

    def to_json(self) -> dict[str, Any]:
        """The configuration as plain JSON values."""
        return self.model_dump(mode="json")


def training(config: ExperimentConfig, **values: Any) -> TrainConfig:
    """The training configuration of an experiment: its ``train`` section with the
    experiment's ``seed`` and ``device``, then ``values`` (what the experiment itself sets,
    e.g. the weight decay of each run of a sweep), validated. A key of ``values`` that the
    user changed in the ``train`` section is an InputError: it would be silently ignored."""
    section = getattr(config, "train", None)
    if not isinstance(section, TrainConfig):
        raise InputError(
            f"{type(config).__name__} has no train section: an experiment that trains declares "
            "train: TrainConfig in its config"
        )
    default = type(config).model_fields["train"].get_default(call_default_factory=True)
    ignored = sorted(k for k in values if getattr(section, k) != getattr(default, k))
    if ignored:
        raise InputError(
            f"{', '.join('train.' + k for k in ignored)} cannot be set for "
            f"{type(config).__name__}: the experiment sets it for each of its training runs"
        )
    return TrainConfig(
        **{**section.model_dump(), "seed": config.seed, "device": config.device, **values}
    )


def _section(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class of a nested section field (e.g. ``train: TrainConfig``)."""
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _check_keys(model: type[BaseModel], values: dict[str, Any], prefix: str) -> None:
    """InputError for keys of ``values`` that ``model`` (or a nested section) does not have,
    naming the valid ones and the new names of renamed keys. The training section's seed and
    device come from the experiment's own."""
    unknown = sorted(set(values) - set(model.model_fields))
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        close = [(k, difflib.get_close_matches(k, list(model.model_fields), n=1)) for k in unknown]
        hints = [f"'{prefix}{k}' -> '{prefix}{c[0]}'" for k, c in close if c]
        hint = f"did you mean {', '.join(hints)}? " if hints else ""
        raise InputError(
            f"unknown config key(s) {names} for {model.__name__}; {hint}valid keys: "
            f"{', '.join(prefix + k for k in model.model_fields)}. {renamed_key_hints(unknown)}".rstrip()
        )
    for name, value in values.items():
        section = _section(model.model_fields[name].annotation)
        if section is None or not isinstance(value, dict):
            continue
        if section is TrainConfig and prefix == "" and {"seed", "device"} & set(value):
            raise InputError(
                f"{name}.seed and {name}.device are the experiment's seed and device: set "
                "seed=... and device=... instead"
            )
        _check_keys(section, value, f"{prefix}{name}.")
