"""`--tensorboard` on `run` and `sweep`: every training run of the experiment logs its records."""

from __future__ import annotations

import sys

import pandas as pd
import torch
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.data import Dataset
from reluscope.experiments import Experiment, ExperimentConfig, Outcome, run_experiment
from reluscope.nets import mlp
from reluscope.train import TrainConfig, Trainer
from reluscope.train import probes as P


def _train(config, ctx) -> Outcome:
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, (x[:, 0] > 0).long(), "halves")
    trainer = Trainer(
        mlp([4, 8, 2], seed=0),
        data,
        data,
        TrainConfig(steps=4, batch_size=8),
        [P.accuracy_loss()],
        run_dir=ctx.subdir("train"),
        progress=False,
    )
    return Outcome(records=trainer.fit())


TRAINING = Experiment("tiny-training", "t", "local_complexity", "d", ExperimentConfig, _train)


def test_tensorboard_option_makes_every_trainer_log(tmp_path, monkeypatch):
    made = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir, self.scalars = log_dir, []
            made.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def close(self):
            pass

    fake = type(sys)("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    summary = run_experiment(TRAINING, "quick", {}, tmp_path / "on", tensorboard=True)
    (writer,) = made
    assert writer.log_dir == str(tmp_path / "on" / "train" / "tensorboard")
    records: pd.DataFrame = summary.outcome.records
    assert sorted(writer.scalars) == sorted(
        (f"{r.metric}/{r.split}", r.value, r.step) for r in records.itertuples()
    )
    run_experiment(TRAINING, "quick", {}, tmp_path / "off")
    assert len(made) == 1  # off by default, and the switch does not outlive its run


def test_tensorboard_option_without_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    for command in (["run"], ["sweep", "--grid", "n=20,30"]):
        args = [
            *command,
            "toy_experiment:EXPERIMENT",
            "--tensorboard",
            "--out",
            str(tmp_path / "x"),
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "reluscope[tensorboard]" in result.output, result.output
    assert not (tmp_path / "x").exists()
