"""Broken and hostile models for the corpus test (tests/test_corpus.py), importable as model
specs ``hostile_models:NAME`` (tests/ is on sys.path), and a slow experiment for the test that
workers end with their parent."""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from reluscope.experiments import Experiment, ExperimentConfig, Outcome


def small() -> nn.Sequential:
    """A healthy 2-4-1 ReLU MLP (seeded)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).eval()


def as_dict() -> dict:
    return {"weight": torch.ones(2)}


def as_lambda():
    return lambda x: x


def on_meta() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def in_half() -> nn.Module:
    return small().half()


def in_bfloat16() -> nn.Module:
    return small().to(torch.bfloat16)


def complex_weights() -> nn.Module:
    with warnings.catch_warnings():  # torch warns that complex modules are experimental
        warnings.simplefilter("ignore")
        return small().to(torch.complex64)


def zero_width() -> nn.Module:
    with warnings.catch_warnings():  # torch warns that initialising it does nothing
        warnings.simplefilter("ignore")
        return nn.Sequential(nn.Linear(2, 0), nn.ReLU(), nn.Linear(0, 1))


def nan_weight() -> nn.Module:
    model = small()
    with torch.no_grad():
        model[2].weight[0, 1] = math.nan
    return model


def inf_bias() -> nn.Module:
    model = small()
    with torch.no_grad():
        model[0].bias[3] = math.inf
    return model


def nan_running_var() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[1].running_var[2] = math.nan
    return model.eval()


def overflowing() -> nn.Module:
    """Finite float32 weights whose outputs overflow to inf."""
    model = small()
    with torch.no_grad():
        model[0].weight.fill_(1e30)
        model[0].weight[2:].neg_()  # two units see +s, two see -s: one pair is active
        model[2].weight.fill_(1e30)
    return model


def with_gelu() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 1)).eval()


def raising() -> nn.Module:
    raise RuntimeError("the factory broke on purpose")


class SlowConfig(ExperimentConfig):
    pid_file: str = ""


def _slow(config: SlowConfig, ctx) -> Outcome:
    """Writes its pid, then a heartbeat file into its run directory every 0.1 s for a minute."""
    Path(config.pid_file).write_text(str(os.getpid()))
    beat = ctx.path("heartbeat.txt")
    for i in range(600):
        beat.write_text(str(i))
        time.sleep(0.1)
    raise RuntimeError("the slow experiment was meant to be killed")


SLOW = Experiment(
    name="slow",
    title="Slow",
    paper="local_complexity",
    description="Writes a heartbeat until killed.",
    config=SlowConfig,
    run=_slow,
)
