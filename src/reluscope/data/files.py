"""Data sets from the user's own files: .npz / .npy / .pt arrays, and the data directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reluscope.data.dataset import Dataset
from reluscope.errors import InputError
from reluscope.io import load_tensors, read_arrays

FILE_SUFFIXES = (".npz", ".npy", ".pt")
DATA_DIR_ENV = "RELUSCOPE_DATA_DIR"


def as_dataset(x: Any, y: Any, name: str, info: dict[str, Any], scale: float = 1.0) -> Dataset:
    """Check arrays read from a file and wrap them: ``x / scale`` as float32 (n, features...),
    ``y`` as int64 class labels (or None)."""
    try:
        x = torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: x is not a numeric array ({exc})") from None
    if x.dim() < 2 or len(x) == 0 or x.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise InputError(
            f"{name}: x has shape {tuple(x.shape)} and dtype {x.dtype}; expected a non-empty real "
            "array of shape (n, features...) (reshape 1-D data to (n, 1))"
        )
    x = x.to(torch.float64) / scale
    if not torch.isfinite(x).all():
        raise InputError(f"{name}: x contains NaN or inf; expected finite values")
    if y is None:
        return Dataset(x.float(), None, name, info)
    y = torch.as_tensor(np.asarray(y))
    integral = not y.is_floating_point() or bool((y == y.round()).all())
    if (
        y.shape != (len(x),)
        or y.is_complex()
        or y.dtype == torch.bool
        or not integral
        or (y < 0).any()
    ):
        raise InputError(
            f"{name}: y has shape {tuple(y.shape)}; expected {len(x)} non-negative integer "
            "class labels matching the points of x"
        )
    return Dataset(x.float(), y.to(torch.int64), name, info)


def load_file(path: str | os.PathLike[str]) -> Dataset:
    """A data set from a local file: ``.npz`` (arrays ``x`` and optional ``y``, else its first
    array), ``.npy`` (one array of inputs) or ``.pt`` (a tensor, or a dict with ``x`` and
    optional ``y``; loaded with ``torch.load(weights_only=True)``, so nothing is unpickled)."""
    path = Path(path)
    name = str(path)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise InputError(f"data file {name!r}: expected a {'/'.join(FILE_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        obj = load_tensors(path, "data file")
    else:
        obj = read_arrays(path, "data file")
    if isinstance(obj, dict) and "x" in obj:
        return as_dataset(obj["x"], obj.get("y"), name, {"file": name})
    if isinstance(obj, dict) and obj and suffix == ".npz":
        return as_dataset(next(iter(obj.values())), None, name, {"file": name})
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return as_dataset(obj, None, name, {"file": name})
    kind = f"a dict with keys {sorted(map(str, obj))}" if isinstance(obj, dict) else type(obj)
    raise InputError(
        f"data file {name!r} holds {kind}; expected an array/tensor of inputs or a dict with "
        "'x' (inputs) and optional 'y' (labels)"
    )


def data_root(data_dir: str | os.PathLike[str] | None, dataset: str, expected: str) -> Path:
    """The directory holding local copies of ``dataset``: ``data_dir``, else the environment
    variable RELUSCOPE_DATA_DIR. ``expected`` says which files belong there."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir is None:
        raise InputError(
            f"{dataset} is read from a local directory (reluscope never downloads): pass "
            f"--data-dir DIR (data_dir= in Python) or set {DATA_DIR_ENV}, with {expected} in DIR"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise InputError(
            f"data directory {str(root)!r} for {dataset} does not exist: create it and put "
            f"{expected} there"
        )
    return root


def read_npz_part(path: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``x_{part}`` and ``y_{part}`` of the ``.npz`` file at ``path`` (the layout of
    ``mnist.npz`` and ``cifar10.npz``)."""
    arrays = read_arrays(path, "data file")
    if not isinstance(arrays, dict):
        raise InputError(f"{str(path)!r} holds one array; expected an .npz archive")
    keys = (f"x_{part}", f"y_{part}")
    if not set(keys) <= set(arrays):
        raise InputError(f"{str(path)!r} has arrays {sorted(arrays)}; expected {list(keys)}")
    return arrays[keys[0]], arrays[keys[1]]


def find_file(dirs: list[Path], names: list[str]) -> Path | None:
    """The first existing file among ``names`` in ``dirs`` (directories searched in order)."""
    for folder in dirs:
        for file_name in names:
            if (folder / file_name).is_file():
                return folder / file_name
    return None
