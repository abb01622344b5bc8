"""The experiments reluscope knows, found by name. An experiment module anywhere under
``reluscope.experiments`` registers itself by defining ``EXPERIMENT = Experiment(...)``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from reluscope.errors import InputError, did_you_mean
from reluscope.experiments.config import ExperimentConfig

if TYPE_CHECKING:
    from reluscope.experiments.outcome import Outcome
    from reluscope.experiments.runner import RunContext

PAPERS: dict[str, str] = {
    "local_complexity": "Patel & Montufar, On the Local Complexity of Linear Regions in Deep "
    "ReLU Networks (ICML 2025); Humayun et al. (ICML 2024)",
    "low_rank_bounds": "Pinto, Rangamani & Poggio, On Generalization Bounds for Neural Networks "
    "with Low Rank Layers (ALT 2025)",
    "bias_free_relu": "Zhang, Saxe & Latham, When Are Bias-Free ReLU Networks Effectively "
    "Linear Networks? (TMLR 2025)",
}

#: Each paper's arXiv page.
PAPER_URLS: dict[str, str] = {
    "local_complexity": "https://arxiv.org/abs/2412.18283",
    "low_rank_bounds": "https://arxiv.org/abs/2411.13733",
    "bias_free_relu": "https://arxiv.org/abs/2406.12615",
}


ConfigT = TypeVar("ConfigT", bound=ExperimentConfig)


@dataclass(frozen=True)
class Experiment(Generic[ConfigT]):
    """A named experiment: its configuration class and ``run(config, context) -> Outcome``.
    ``order`` sorts experiments of the same paper in the report. ``key_numbers`` describes the
    Outcome's numbers for the report: a key or shell-style pattern (``lc_final.*``) ->
    ``(description, unit)``; the first matching entry describes a number."""

    name: str
    title: str
    paper: str
    description: str
    config: type[ConfigT]
    run: Callable[[ConfigT, RunContext], Outcome]
    order: int = 0
    key_numbers: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"experiment {self.name}: paper must be one of {list(PAPERS)}")


@cache
def _registry() -> dict[str, Experiment]:
    import reluscope.experiments as package

    found: dict[str, Experiment] = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        experiment = getattr(module, "EXPERIMENT", None)
        if isinstance(experiment, Experiment):
            if experiment.name in found:
                raise RuntimeError(f"two experiments are named {experiment.name!r}")
            found[experiment.name] = experiment
    papers = list(PAPERS)
    ordered = sorted(found.values(), key=lambda e: (papers.index(e.paper), e.order, e.name))
    return {e.name: e for e in ordered}


def declared_names() -> list[str]:
    """The names of the experiments under ``reluscope.experiments``, read from their modules'
    source (``EXPERIMENT = Experiment(name=...)``) without importing them: cheap enough for the
    command line's help."""
    return list(_declared_names())


@cache
def _declared_names() -> tuple[str, ...]:
    import reluscope.experiments as package

    names: list[str] = []
    for root in package.__path__:
        for file in sorted(Path(root).rglob("*.py")):
            source = file.read_text(encoding="utf-8")
            if "EXPERIMENT" not in source:
                continue
            for node in ast.walk(ast.parse(source)):
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "EXPERIMENT" for t in node.targets)
                    and isinstance(node.value, ast.Call)
                ):
                    names += [
                        k.value.value
                        for k in node.value.keywords
                        if k.arg == "name"
                        and isinstance(k.value, ast.Constant)
                        and isinstance(k.value.value, str)
                    ]
    return tuple(sorted(names))


def experiments() -> list[Experiment]:
    """Every registered experiment, grouped by paper, in report order."""
    return list(_registry().values())


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``, or a user's experiment given as
    ``package.module:ATTRIBUTE`` (an importable ``Experiment``); an InputError lists the valid
    names otherwise."""
    if ":" in name:
        return _import_experiment(name)
    registry = _registry()
    if name not in registry:
        hint = did_you_mean(name, registry).removeprefix("; ")
        raise InputError(
            f"unknown experiment {name!r}; {hint + ' ' if hint else ''}registered: "
            f"{', '.join(registry) or '(none)'}, or give your own as package.module:ATTRIBUTE"
        )
    return registry[name]


def _import_experiment(path: str) -> Experiment:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import the module of experiment {path!r}: {exc}") from exc
    experiment = getattr(module, attribute, None)
    if not isinstance(experiment, Experiment):
        raise InputError(
            f"{path!r} is not an Experiment (found {type(experiment).__name__} in {module_name})"
        )
    return experiment
