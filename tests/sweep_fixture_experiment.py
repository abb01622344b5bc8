"""A cheap experiment for the sweep tests: it trains nothing. Its records are the closed form
``value(step) = a * step**2 + seed + (sum(widths) if mode == "y" else 0)`` for steps
``0..n-1``; it appends a line to ``calls.txt`` in its run directory each time it runs, draws
one tiny figure, and raises when ``a`` is negative."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import Field

from reluscope.experiments import (
    Experiment,
    ExperimentConfig,
    Figure,
    Outcome,
    Prediction,
    RunContext,
)
from reluscope.figures import new_figure, save_png


class FixtureConfig(ExperimentConfig):
    PAPER: ClassVar[dict[str, Any]] = {"n": 6}
    a: float = 1.0
    n: int = Field(3, ge=2)
    mode: Literal["x", "y"] = "x"
    widths: list[int] = [4]


def run(config: FixtureConfig, ctx: RunContext) -> Outcome:
    with ctx.path("calls.txt").open("a") as calls:
        calls.write("run\n")
    if config.a < 0:
        raise RuntimeError(f"asked to fail (a={config.a})")
    shift = config.seed + (sum(config.widths) if config.mode == "y" else 0)
    steps = list(range(config.n))
    values = [config.a * s**2 + shift for s in steps]
    fig, (ax,) = new_figure(size=(1.5, 1.2))
    ax.plot(steps, values)
    save_png(fig, ctx.path("values.png"), dpi=40)
    slope = values[1] - values[0]
    return Outcome(
        records=pd.DataFrame({"step": steps, "metric": "value", "value": values}),
        figures=[Figure("values.png", "value against step")],
        numbers={"total": float(sum(values)), "last": float(values[-1])},
        predictions=[
            Prediction(
                claim="the value grows by at least 1 from step 0 to step 1",
                passed=bool(slope >= 1),
                measured=f"growth {slope:.3g}",
            )
        ],
        summary="closed-form values",
    )


EXPERIMENT = Experiment(
    name="sweep-fixture",
    title="Sweep fixture",
    paper="bias_free_relu",
    description="A closed-form experiment for testing sweeps.",
    config=FixtureConfig,
    run=run,
)
