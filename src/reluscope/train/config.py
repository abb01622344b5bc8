"""Training configuration: optimiser, loss, schedule, precision, seed, checkpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reluscope.errors import renamed_key_hints


class TrainConfig(BaseModel):
    """How a model is trained. Steps count optimiser updates; the learning rate is per step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(1000, ge=1, description="optimiser steps")
    batch_size: int = Field(64, ge=1, description="examples per step (capped at the data size)")
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0)
    decay_biases: bool = Field(False, description="apply weight decay to biases and norms too")
    param_scale: float = Field(
        1.0, gt=0, description="every parameter multiplied by it when training starts"
    )
    loss: Literal["ce", "mse"] = Field("ce", description="cross-entropy, or MSE on one-hot")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from warmup_start * lr")
    warmup_start: float = Field(0.1, gt=0, le=1)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr: float = Field(0.0, ge=0, description="end of the cosine schedule")
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    seed: int = Field(0, ge=0, description="seeds the batches, the global RNG and the probes")
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        hints = renamed_key_hints(values) if isinstance(values, dict) else ""
        if hints:
            raise ValueError(hints)
        return values

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        return self
