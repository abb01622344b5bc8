"""Training data in any of the forms a user has: a reluscope ``Dataset``, a pair of tensors
``(x, y)``, a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` items, or an iterable of
batches such as a ``DataLoader`` (tuples read as ``(x, y, ...)``, dicts by key). The trainer
draws its own seeded mini-batches, so every form is read once into one ``Dataset``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.measures.batches import take_inputs

LABEL_KEYS = ("y", "label", "labels", "target", "targets")
ACCEPTED = (
    "a reluscope.data.Dataset, a pair of tensors (x, y), a torch Dataset of (x, y) items, or "
    "an iterable of (x, y) batches such as a DataLoader"
)


def as_dataset(data: Any, name: str = "data", labels: bool = True) -> Dataset:
    """``data`` as a reluscope ``Dataset``: inputs as float32, labels as int64 (a
    reluscope Dataset is returned as it is). With ``labels`` the data must carry labels.
    InputError for anything else, for empty data and for batches whose shapes differ."""
    if isinstance(data, Dataset):
        return data
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        x, y = data
    elif isinstance(data, Tensor):
        x, y = data, None
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        x, y = _stack([data[i] for i in range(len(data))], name, stacked=False)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        x, y = _stack(list(data), name, stacked=True)
    else:
        raise InputError(f"{name} must be {ACCEPTED}; got {type(data).__name__}")
    if y is None and labels:
        raise InputError(f"{name} has no labels; training needs {ACCEPTED}")
    if len(x) == 0:
        raise InputError(f"{name} is empty: expected at least one point")
    if x.dim() < 2:
        raise InputError(
            f"{name} inputs have shape {tuple(x.shape)}: expected (points, features...)"
        )
    if y is not None and (y.dtype.is_floating_point or y.shape != x.shape[:1]):
        raise InputError(
            f"{name} labels must be integer class indices of shape ({len(x)},); got "
            f"{y.dtype} of shape {tuple(y.shape)}"
        )
    return Dataset(x.detach().cpu().float(), None if y is None else y.cpu().long(), name)


def _stack(items: list, name: str, stacked: bool) -> tuple[Tensor, Tensor | None]:
    """Inputs and labels of ``items`` (batches when ``stacked``, single points otherwise)
    joined into two tensors."""
    if not items:
        raise InputError(f"{name} is empty: expected at least one point")
    xs = [torch.as_tensor(take_inputs(item)) for item in items]
    ys = [_take_labels(item) for item in items]
    if any(y is None for y in ys) and not all(y is None for y in ys):
        raise InputError(f"some items of {name} have labels and others do not")
    join = torch.cat if stacked else torch.stack
    try:
        x = join(xs)
        y = None if ys[0] is None else join([torch.as_tensor(y) for y in ys])
    except RuntimeError as exc:
        raise InputError(f"the items of {name} have different shapes: {exc}") from None
    return x, y


def _take_labels(item: Any) -> Tensor | None:
    """The labels of a batch or item: element 1 of a tuple, a label key of a dict, else None."""
    if isinstance(item, (tuple, list)):
        return item[1] if len(item) > 1 else None
    if isinstance(item, Mapping):
        return next((item[k] for k in LABEL_KEYS if k in item), None)
    return None
