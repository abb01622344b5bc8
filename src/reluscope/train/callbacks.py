"""Trainer callbacks: code that runs at fixed points of the training loop, so an experiment adds
to the loop (clip weights, stop early, log) instead of copying it.

Hooks, in the order the :class:`~reluscope.train.Trainer` calls them::

    on_train_start(trainer)            fit() begins (also when resuming), before any probe
    on_eval(trainer, records)          the probes due at trainer.step ran; records are their rows
    should_stop(trainer) -> bool       after the probes of each step: True ends training there
    on_step_end(trainer, loss)         after each update (trainer.step counts it; loss is the
                                       batch loss before the update), before that step's probes
    on_train_end(trainer)              fit() ends (all steps done or stopped), model in eval mode

``on_step_end`` runs in the same uninterruptible section as the update, so a checkpoint never
holds an update without its callbacks' changes. Callbacks are not saved in checkpoints: keep
them stateless, or derive their state from the trainer (``trainer.step``, ``trainer.records``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reluscope.errors import InputError
from reluscope.lowrank import clip_spectral_norms_
from reluscope.validation import check_int, check_number

if TYPE_CHECKING:
    from reluscope.train.trainer import Trainer


class Callback:
    """Base class of trainer callbacks: every hook does nothing; override the ones you need."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Called when ``fit()`` starts (or resumes), before the first probes."""

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """Called after each optimiser update; ``trainer.step`` already counts it."""

    def on_eval(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        """Called after the probes due at ``trainer.step`` ran, with their new records."""

    def should_stop(self, trainer: Trainer) -> bool:
        """Whether to stop training after the probes of ``trainer.step``."""
        return False

    def on_train_end(self, trainer: Trainer) -> None:
        """Called when ``fit()`` ends, the model in eval mode."""


class SpectralClip(Callback):
    """Clips the singular values of every Linear / LowRankLinear weight at ``max_norm`` (in
    place, :func:`reluscope.lowrank.clip_spectral_norms_`) after every ``every``-th update and
    after the last one, so the trained network lies in {||W_l||_2 <= max_norm}."""

    def __init__(self, max_norm: float, every: int = 1) -> None:
        self.max_norm = check_number("max_norm", max_norm, minimum=0, strict=True)
        self.every = check_int("every", every, minimum=1)

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        if trainer.step % self.every == 0 or trainer.step == trainer.config.steps:
            clip_spectral_norms_(trainer.model, self.max_norm)


def check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a list, each checked to be a :class:`Callback`."""
    found = list(callbacks)
    for c in found:
        if not isinstance(c, Callback):
            raise InputError(
                f"callbacks must be reluscope.train.Callback objects; got {type(c).__name__}"
            )
    return found
