"""Data given to a measure: a tensor, or an iterable of batches such as a DataLoader.

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import as_pwlnet

LABEL_KEYS = ("y", "label", "labels", "target", "targets")


def take_inputs(batch, input_key: str | int | None = None) -> Tensor:
    """The input tensor of a batch: the batch itself, element ``input_key`` (default 0) of a
    tuple/list, or key ``input_key`` (default "x", "input" or "inputs") of a dict."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)):
        key = 0 if input_key is None else input_key
        if not isinstance(key, int) or not -len(batch) <= key < len(batch):
            raise InputError(
                f"batches are tuples of length {len(batch)}; input_key={key!r} must be an index"
            )
        return take_inputs(batch[key])
    if isinstance(batch, Mapping):
        keys = [input_key] if input_key is not None else ["x", "input", "inputs", "image", "images"]
        for key in keys:
            if key in batch:
                return take_inputs(batch[key])
        raise InputError(
            f"batches are dicts with keys {sorted(map(str, batch))}; pass input_key= naming the "
            "inputs"
        )
    raise InputError(
        f"a batch must be a tensor, a tuple/list (inputs first) or a dict, got {type(batch).__name__}"
    )


def iterate_batches(
    net: PWLNet, data, batch_size: int = 256, input_key: str | int | None = None
) -> Iterator[Tensor]:
    """Validated batches of inputs for ``net``: cast to its dtype and device, checked for shape,
    NaN/inf and emptiness. ``data`` is a tensor (split into ``batch_size`` chunks) or an
    iterable of batches (a DataLoader: tuples are read as (inputs, ...), dicts by key)."""
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        data = torch.as_tensor(data) if not isinstance(data, Tensor) else data
        if data.dim() == len(net.input_shape):
            data = data.unsqueeze(0)
        source = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    else:
        source = (take_inputs(b, input_key) for b in data)
    seen = 0
    for x in source:
        x = torch.as_tensor(x)
        if x.numel() == 0:
            continue
        yield net.check_input(x)
        seen += len(x)
    if seen == 0:
        raise InputError("the data is empty: expected at least one input point")


def net_for(
    model: nn.Module | PWLNet,
    data: Any,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> PWLNet:
    """The PWLNet a measure of ``model`` on ``data`` analyses: ``model`` itself or its trace,
    cast to ``dtype``. The input shape is ``input_shape`` when given, else read from the first
    Linear layer, else from a data tensor (:func:`reluscope.nets.trace.infer_input_shape`)."""
    return as_pwlnet(model, input_shape, dtype=dtype, data=data)


def take_labels(batch, label_key: str | int | None = None):
    """The labels of a batch: element ``label_key`` (default 1) of a tuple/list, or key
    ``label_key`` (default "y", "label", "labels", "target" or "targets") of a dict."""
    if isinstance(batch, (tuple, list)):
        key = 1 if label_key is None else label_key
        if not isinstance(key, int) or not -len(batch) <= key < len(batch):
            raise InputError(
                f"batches are tuples of length {len(batch)}; label_key={key!r} must be an index "
                "of the labels (default 1: (inputs, labels))"
            )
        return batch[key]
    if isinstance(batch, Mapping):
        keys = [label_key] if label_key is not None else list(LABEL_KEYS)
        for key in keys:
            if key in batch:
                return batch[key]
        raise InputError(
            f"batches are dicts with keys {sorted(map(str, batch))}; pass label_key= naming the "
            "labels"
        )
    raise InputError(
        "labels are needed: pass update(x, y), or batches that are (inputs, labels) tuples or "
        f"dicts; got a batch of type {type(batch).__name__} alone"
    )
