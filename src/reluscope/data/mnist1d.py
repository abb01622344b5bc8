"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package (no download)."""

from __future__ import annotations

import random

import numpy as np
import torch

from reluscope.data.dataset import Dataset
from reluscope.data.options import positive_int
from reluscope.errors import InputError


def mnist1d(n: int = 5000, *, seed: int = 0) -> Dataset:
    """``n`` MNIST-1D signals (40 features, 10 balanced classes) from ``mnist1d.data.make_dataset``.

    The package's generator with its default arguments: the 10 digit templates, random padding,
    scale, translation, correlated and i.i.d. noise, shear, then resampling to length 40; the
    whole set is standardised to mean 0 and standard deviation 1. ``n`` must be a multiple of 10
    (``n // 10`` signals per class). The generator seeds NumPy's global RNG with ``seed``; the
    caller's NumPy and ``random`` states are restored afterwards. ``n=5000, seed=42`` are the
    package's defaults (its 4000/1000 train/test split is not applied here: use ``split``).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    n = positive_int(n, "n", "mnist1d")
    if n % 10 or not 0 <= seed < 2**32:
        raise InputError(
            f"mnist1d: expected n a multiple of 10 and 0 <= seed < 2**32, got n={n}, seed={seed}"
        )
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n, 1.0, seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    y = torch.as_tensor(data["y"], dtype=torch.int64)
    return Dataset(x, y, "mnist1d", dict(n=n, classes=10, seed=seed, generator="mnist1d"))
