"""Fixtures shared by several test modules."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reluscope.experiments import RunSummary, run_experiment


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (restored afterwards): for small matrices one thread
    is fastest and immune to a busy machine. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run_small(tmp_path_factory):
    """A function ``run_small(sizes)``: each experiment of ``sizes`` (name -> config overrides)
    run once at quick scale with its overrides (one seed unless they say otherwise), on one
    torch thread (restored afterwards), into
    a fresh temporary folder: name -> RunSummary. For module-scoped fixtures, which are set up
    before the function-scoped ``one_thread``."""

    def run(sizes: dict[str, dict[str, Any]]) -> dict[str, RunSummary]:
        root = tmp_path_factory.mktemp("runs")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return {
                name: run_experiment(
                    name, "quick", {"seeds": 1, **overrides}, root / name, progress=False
                )
                for name, overrides in sizes.items()
            }
        finally:
            torch.set_num_threads(threads)

    return run
