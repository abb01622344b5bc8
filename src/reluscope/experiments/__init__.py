"""The papers' experiments: validated configs, a registry by name, and a resumable runner."""

from reluscope.experiments.config import ExperimentConfig, training
from reluscope.experiments.outcome import Figure, Outcome, Prediction
from reluscope.experiments.registry import Experiment, experiments, get_experiment
from reluscope.experiments.runner import RunContext, RunSummary, run_experiment

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "Figure",
    "Outcome",
    "Prediction",
    "RunContext",
    "RunSummary",
    "experiments",
    "get_experiment",
    "run_experiment",
    "training",
]
