"""Training with probes: a plain PyTorch ``Trainer`` (optimisers, schedules, checkpoints and
resume, callbacks) and probes (a measure plus a schedule) that record tidy metrics during
training, in the trainer or in any training loop through ``ProbeLoop`` (or ``ProbeRunner``), and in PyTorch
Lightning through ``reluscope.train.lightning.ProbeCallback`` (the ``lightning`` extra)."""

from reluscope.train import probes
from reluscope.train.callbacks import Callback, SpectralClip
from reluscope.train.config import TrainConfig
from reluscope.train.loop import ProbeLoop
from reluscope.train.optim import build_optimizer, learning_rate
from reluscope.train.probe import (
    RECORD_COLUMNS,
    Probe,
    ProbeContext,
    random_points,
    records_frame,
    step_seed,
    to_records,
)
from reluscope.train.runner import ProbeRunner
from reluscope.train.schedule import Schedule, every, log_steps
from reluscope.train.trainer import Trainer

__all__ = [
    "Callback",
    "RECORD_COLUMNS",
    "Probe",
    "ProbeContext",
    "ProbeLoop",
    "ProbeRunner",
    "Schedule",
    "SpectralClip",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "every",
    "learning_rate",
    "log_steps",
    "probes",
    "random_points",
    "records_frame",
    "step_seed",
    "to_records",
]
