"""The public surface: ``reluscope/__init__.py`` exports its tiers, every package's ``__all__``
resolves, and every module is public (exports a name, or is a documented public module) or is
marked internal in its docstring."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import reluscope

#: Modules used by name rather than through their package's ``__all__``.
PUBLIC_MODULES = {
    "reluscope.attacks",  # FGSM / PGD
    "reluscope.nets.ops",  # the ops a PWLNet is made of
    "reluscope.nets.sites",  # its neuron sites: activations and max units
    "reluscope.experiments.verdict",  # deciding predictions over seeds, for your own experiments
    "reluscope.regions.plot",  # drawing partitions
    "reluscope.report.html",  # the HTML report
    "reluscope.reproduce",  # every experiment, then the report
    "reluscope.train.data",  # the data forms the Trainer accepts (as_dataset)
    "reluscope.train.lightning",  # ProbeCallback, in the [lightning] extra
    "reluscope.values",  # the one grammar of values written as text
    "reluscope.validation",  # the shared input checks, for users writing their own measures
    "reluscope.records",  # the one record schema
    "reluscope.linalg",  # singular values, spectral norms, truncated SVDs
    "reluscope.outputs",  # predictions and margins from a classifier's outputs
}

PACKAGES = sorted(
    info.name
    for info in pkgutil.walk_packages(reluscope.__path__, "reluscope.")
    if info.ispkg and not info.name.startswith("reluscope.experiments.")
)


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(reluscope.__path__, "reluscope.")
        if not info.ispkg and not info.name.startswith("reluscope.cli.")  # the command line
    )


def test_the_tiers_are_exported_at_the_top():
    import reluscope.bounds
    import reluscope.experiments
    import reluscope.measures
    import reluscope.train

    assert reluscope.compare_bounds is reluscope.bounds.compare
    assert reluscope.local_complexity is reluscope.measures.local_complexity
    assert reluscope.Trainer is reluscope.train.Trainer
    assert reluscope.run_experiment is reluscope.experiments.run_experiment
    assert {"trace", "plane", "weight_ranks", "dynamics", "TrainConfig"} <= set(reluscope.__all__)


@pytest.mark.parametrize("package", ["reluscope", *PACKAGES])
def test_every_exported_name_exists(package: str):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", [])
    assert len(set(names)) == len(names), f"{package}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it lacks: {missing}"


def _exports(module_name: str) -> bool:
    module = importlib.import_module(module_name)
    package = importlib.import_module(module_name.rpartition(".")[0])
    for name in getattr(package, "__all__", []):
        value = getattr(package, name)
        if value is module or getattr(value, "__module__", None) == module_name:
            return True
    return False


def test_every_module_is_public_or_marked_internal():
    unclear = []
    for name in _modules():
        module = importlib.import_module(name)
        if name in PUBLIC_MODULES or hasattr(module, "EXPERIMENT") or _exports(name):
            continue
        if "Internal to reluscope" not in (module.__doc__ or ""):
            unclear.append(name)
    assert not unclear, (
        "export a name of these modules from their package, list them in PUBLIC_MODULES, or "
        f"say 'Internal to reluscope...' in their docstring: {unclear}"
    )


def test_internal_modules_are_not_exported():
    for name in _modules():
        module = importlib.import_module(name)
        if "Internal to reluscope" in (module.__doc__ or ""):
            assert not _exports(name), f"{name} is marked internal but its package exports it"
