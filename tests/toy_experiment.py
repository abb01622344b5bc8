"""A cheap experiment for the framework tests: the mean of a seeded Gaussian sample against
its known mean. Importable as ``toy_experiment:EXPERIMENT`` (tests/ is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from reluscope.experiments import Experiment, ExperimentConfig, Figure, Outcome, Prediction
from reluscope.figures import new_figure, save_png


class ToyConfig(ExperimentConfig):
    PAPER: ClassVar[dict[str, Any]] = {"n": 10_000}
    n: int = Field(100, ge=2)
    mean: float = 0.0
    fail: bool = False
    counter: str | None = None  # a file whose line count counts the runs


def run(config: ToyConfig, ctx) -> Outcome:
    if config.fail:
        raise RuntimeError("toy failure on purpose")
    if config.counter:
        with Path(config.counter).open("a") as f:
            f.write(f"{os.getpid()}\n")
    sample = np.random.default_rng(config.seed).normal(config.mean, 1.0, config.n)
    estimate, stderr = float(sample.mean()), float(sample.std(ddof=1) / np.sqrt(config.n))
    fig, (ax,) = new_figure()
    ax.hist(sample, bins=20)
    save_png(fig, ctx.path("hist.png"))
    frame = pd.DataFrame({"metric": ["mean"], "value": [estimate], "stderr": [stderr], "step": [0]})
    z = abs(estimate - config.mean) / stderr
    return Outcome(
        records=frame,
        figures=[Figure("hist.png", "Histogram of the <sample> & its mean.")],
        numbers={"estimate": estimate, "stderr": stderr, "n": config.n},
        predictions=[
            Prediction("The sample mean is within 4 standard errors", z < 4, f"z = {z:.2f}"),
            Prediction(
                "The sample mean is above the true mean", estimate > config.mean, f"{estimate:.3g}"
            ),
        ],
        summary="A toy.",
    )


EXPERIMENT = Experiment(
    name="toy",
    title="Toy mean",
    paper="local_complexity",
    description="Sample mean of a seeded Gaussian sample.",
    config=ToyConfig,
    run=run,
)
