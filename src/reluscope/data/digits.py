"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download)."""

from __future__ import annotations

import torch

from reluscope.data.dataset import Dataset
from reluscope.data.options import flag


def digits(flatten: bool = True) -> Dataset:
    """The 1797 digits of ``sklearn.datasets.load_digits``: pixel intensities 0..16 scaled to
    [0, 1], as 64 features, or as (1, 8, 8) images when ``flatten`` is false."""
    from sklearn.datasets import load_digits

    flatten = flag(flatten, "flatten", "digits")
    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Dataset(x, y, "digits", dict(classes=10, flatten=flatten))
