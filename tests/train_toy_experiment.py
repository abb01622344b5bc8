"""A cheap experiment with a nested training section, for the tests of ``train.*`` keys from
the command line: one logistic-regression run with the Trainer, whose outcome numbers are the
training settings it got. Importable as ``train_toy_experiment:EXPERIMENT``."""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
import torch
from pydantic import Field

from reluscope.data import Dataset
from reluscope.experiments import Experiment, ExperimentConfig, Outcome, training
from reluscope.train import TrainConfig, Trainer


class TrainToyConfig(ExperimentConfig):
    PAPER: ClassVar[dict[str, Any]] = {"train.steps": 7}
    n: int = Field(40, ge=4)
    train: TrainConfig = Field(TrainConfig(optimizer="sgd", lr=0.1, steps=3, batch_size=8))


def run(config: TrainToyConfig, ctx) -> Outcome:
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randn(config.n, 2, generator=gen)
    data = Dataset(x, (x[:, 0] > 0).long(), "halves")
    trainer = Trainer(torch.nn.Linear(2, 2), data, None, training(config), progress=False)
    trainer.fit()
    used = trainer.config
    numbers = {"lr": used.lr, "steps": float(trainer.step), "seed": float(used.seed)}
    frame = pd.DataFrame({"metric": list(numbers), "value": list(numbers.values()), "step": 0})
    return Outcome(records=frame, numbers=numbers, summary="A training toy.")


EXPERIMENT = Experiment(
    name="train-toy",
    title="Training toy",
    paper="local_complexity",
    description="One Trainer run reporting the training settings it got.",
    config=TrainToyConfig,
    run=run,
)
