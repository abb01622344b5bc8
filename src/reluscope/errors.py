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


def renamed_key_hints(keys: object) -> str:
    """The rename notes of those ``keys`` that were renamed, joined (empty when none was)."""
    return " ".join(RENAMED_KEYS[k] for k in keys if isinstance(k, str) and k in RENAMED_KEYS)
