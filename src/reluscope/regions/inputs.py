"""Validation shared by the slice functions: networks, points and extents.

Internal to reluscope.regions: not part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.checks import check_net, check_real_inputs
from reluscope.nets.pwl import PWLNet
from reluscope.nets.trace import as_pwlnet
from reluscope.validation import check_float_dtype, invalid


def point_tensor(value, name: str) -> Tensor:
    """``value`` as a finite floating-point tensor, or an InputError naming it."""
    try:
        # Python numbers are doubles: keep them in float64 rather than torch's default float32
        # (which would move e.g. 0.1 by 1e-9 before the float64 computation even starts).
        t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"{name} must be a tensor or a sequence of numbers, got {value!r}"
        ) from exc
    if not t.is_floating_point():
        t = check_real_inputs(t, name).to(torch.float64)
    if t.numel() == 0:
        raise InputError(f"{name} is empty; expected the network's input shape")
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or inf; expected finite values")
    return t


def prepare_net(
    model: nn.Module | PWLNet,
    input_shape: Sequence[int] | None,
    dtype: torch.dtype,
    example=None,
    example_name: str = "the first point",
) -> PWLNet:
    """The PWLNet of ``model`` in ``dtype``, with finite parameters.

    The input shape is ``input_shape``, else that of a given PWLNet, else inferred from an
    ``example`` point (a tensor in the input's shape) or from a first Linear layer.
    """
    check_float_dtype("dtype", dtype, allow_none=False)
    inferred = False
    if input_shape is None and not isinstance(model, PWLNet) and example is not None:
        ex = torch.as_tensor(example)
        first = next(
            (m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None
        )
        if not isinstance(first, nn.Linear) or ex.dim() > 1:
            input_shape, inferred = tuple(ex.shape), True
    try:
        net = as_pwlnet(model, input_shape)
    except InputError as exc:
        if not inferred:
            raise
        raise InputError(
            f"the input shape {input_shape} was taken from the shape of {example_name}, and it "
            f"does not fit {type(model).__name__}: give {example_name} in the network's input "
            "shape, or pass input_shape"
        ) from exc
    net = net.to(dtype=dtype)
    check_finite_net(net)
    return net


def check_finite_net(net: PWLNet) -> None:
    """Raise InputError when a parameter of ``net`` is NaN or inf, naming the layer."""
    check_net(net)


def check_extent(extent: Sequence[float], size: int) -> tuple[float, ...]:
    """``extent`` as floats (lo, hi, ...) with lo < hi for each axis, or an InputError."""
    try:
        ext = tuple(float(e) for e in extent)
    except (TypeError, ValueError):
        raise invalid("extent", f"{size} numbers", extent) from None
    if len(ext) != size:
        raise invalid("extent", f"{size} numbers (s_min, s_max, t_min, t_max)", ext)
    if not all(math.isfinite(e) for e in ext):
        raise invalid("extent", "finite", ext)
    for i in range(0, size, 2):
        if not ext[i] < ext[i + 1]:
            raise InputError(f"empty extent {ext}: expected min < max on every axis")
    return ext
