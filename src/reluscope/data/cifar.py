"""CIFAR-10 from a local directory: ``cifar10.npz`` or the python pickle batches."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from reluscope.data.dataset import Dataset
from reluscope.data.files import as_dataset, data_root, find_file, read_npz_part
from reluscope.data.options import choice, flag
from reluscope.errors import InputError

BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
EXPECTED = (
    "cifar10.npz (arrays x_train, y_train, x_test, y_test; images (n, 32, 32, 3) or "
    "(n, 3, 32, 32), uint8) or the python batches data_batch_1..data_batch_5 and test_batch "
    "(from cifar-10-python.tar.gz), directly or in a subfolder cifar-10-batches-py/ or cifar10/"
)
# The only globals a CIFAR-10 python batch refers to: numpy arrays and the bytes codec.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only numpy arrays, lists, dicts, strings and numbers."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) of one CIFAR-10 python batch file."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels)
    except Exception as exc:
        raise InputError(
            f"{str(path)!r} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        ) from exc


def cifar10(
    part: str = "train", flatten: bool = True, *, data_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """The CIFAR-10 ``train`` (50000) or ``test`` (10000) images from ``data_dir``: pixels
    scaled to [0, 1], as 3072 features in channel-major order, or as (3, 32, 32) images when
    ``flatten`` is false. ``cifar10.npz`` is preferred over the pickle batches."""
    part = choice(part, "part", "cifar10", ("train", "test"))
    flatten = flag(flatten, "flatten", "cifar10")
    root = data_root(data_dir, "cifar10", EXPECTED)
    dirs = [root, root / "cifar-10-batches-py", root / "cifar10"]
    npz = find_file(dirs, ["cifar10.npz"])
    if npz is not None:
        x, y = read_npz_part(npz, part)
        y = y.reshape(-1)
        if x.ndim == 4 and x.shape[-1] == 3:
            x = x.transpose(0, 3, 1, 2)
        source = npz
    else:
        found = [find_file(dirs, [name]) for name in BATCHES[part]]
        paths = [p for p in found if p is not None]
        if len(paths) < len(found):
            raise InputError(f"CIFAR-10 {part} batches not found in {str(root)!r}: put {EXPECTED}")
        batches = [read_batch(p) for p in paths]
        x = np.concatenate([images for images, _ in batches])
        y = np.concatenate([labels for _, labels in batches])
        source = paths[0].parent
    if x.shape[1:] != (3, 32, 32):
        raise InputError(
            f"CIFAR-10 images in {str(source)!r} have shape {x.shape}; expected (n, 3, 32, 32)"
        )
    x = x.reshape(len(x), -1) if flatten else x
    info = dict(part=part, flatten=flatten, classes=10, source=str(source))
    return as_dataset(x, y, "cifar10", info, scale=255.0)
