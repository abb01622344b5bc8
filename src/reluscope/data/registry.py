"""``load_data``: a data set from a spec string (generated, bundled, or a local file)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from reluscope.data.cifar import cifar10
from reluscope.data.dataset import Dataset
from reluscope.data.digits import digits
from reluscope.data.files import FILE_SUFFIXES, load_file
from reluscope.data.mnist import mnist
from reluscope.data.mnist1d import mnist1d
from reluscope.data.modular import modular
from reluscope.data.options import parse_spec
from reluscope.data.synthetic import gaussian, uniform
from reluscope.errors import InputError, did_you_mean

DATASETS: dict[str, Callable[..., Dataset]] = {
    "gaussian": gaussian,
    "uniform": uniform,
    "digits": digits,
    "mnist1d": mnist1d,
    "modular": modular,
    "mnist": mnist,
    "cifar10": cifar10,
}


def _options(fn: Callable[..., Dataset]) -> list[str]:
    """The options a spec may set for ``fn`` (everything but ``data_dir``)."""
    return [n for n in inspect.signature(fn).parameters if n != "data_dir"]


def load_data(
    spec: str | os.PathLike[str],
    *,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """The data set described by ``spec``, never downloaded.

    ``spec`` is a path to a ``.npz`` / ``.npy`` / ``.pt`` file, or ``name[:key=value,...]`` with
    ``name`` one of ``gaussian``, ``uniform``, ``digits``, ``mnist1d``, ``modular`` (generated or
    bundled) or ``mnist``, ``cifar10`` (read from ``data_dir``, else $RELUSCOPE_DATA_DIR).
    ``seed`` seeds the generated data sets; a ``seed=`` in the spec wins.
    """
    if isinstance(spec, os.PathLike) or str(spec).strip().lower().endswith(FILE_SUFFIXES):
        return load_file(str(spec).strip())
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty or non-string data spec {spec!r}; expected e.g. 'gaussian:n=500'")
    name, options = parse_spec(spec)
    if name not in DATASETS:
        raise InputError(
            f"unknown data set {name!r} in data spec {spec!r}; known: {sorted(DATASETS)}, or a "
            f"path to a {'/'.join(FILE_SUFFIXES)} file{did_you_mean(name, DATASETS)}"
        )
    fn = DATASETS[name]
    accepted = _options(fn)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"unknown option(s) {unknown} for data set {name!r}; accepted: {accepted}"
            f"{did_you_mean(unknown[0], accepted)}"
        )
    if "seed" in accepted:
        options.setdefault("seed", seed)
    if "data_dir" in inspect.signature(fn).parameters:
        options["data_dir"] = data_dir
    return fn(**options)
