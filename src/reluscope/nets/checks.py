"""Checks of a model where reluscope reads it (trace, weights loading, the bounds' weights):
a real nn.Module with finite real-valued float32/float64 tensors of non-zero size, in memory.

Each check names the offending parameter or buffer (``layer.weight``), so that a NaN in the
third layer is reported as such instead of surfacing as a LinAlgError or a NaN result.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from reluscope.errors import InputError
from reluscope.validation import COMPUTE_DTYPES

if TYPE_CHECKING:
    from reluscope.nets.pwl import PWLNet


def check_module(model: object, what: str = "model", compute_dtype: bool = True) -> nn.Module:
    """``model`` when it is an nn.Module whose parameters and buffers pass
    :func:`check_tensors` (with ``compute_dtype``); an InputError naming the first problem
    otherwise."""
    if not isinstance(model, nn.Module):
        raise InputError(f"{what} must be a torch.nn.Module; got {type(model).__name__}")
    named = [*model.named_parameters(), *model.named_buffers()]
    check_tensors(named, f"{what} ({type(model).__name__})", compute_dtype)
    return model


def check_tensors(
    named: Iterable[tuple[str, Tensor]], source: str, compute_dtype: bool = True
) -> None:
    """Every floating tensor of ``named`` (name, tensor) is in memory, real, of non-zero size
    and finite, and (with ``compute_dtype``) float32/float64. ``source`` says where they come
    from in the messages (the model's class, or a weights file)."""
    for name, t in named:
        if not isinstance(t, Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue  # integer buffers such as BatchNorm's num_batches_tracked
        if t.is_meta:
            raise InputError(
                f"{source}: '{name}' is on the meta device (it has a shape but no values); "
                "expected a model with its weights loaded (e.g. model.to_empty(device='cpu') "
                "and load_state_dict)"
            )
        if t.is_complex() or (compute_dtype and t.dtype not in COMPUTE_DTYPES):
            raise InputError(
                f"{source}: '{name}' is {str(t.dtype).removeprefix('torch.')}; expected "
                "float32 or float64 (call model.float() or model.double())"
            )
        if t.numel() == 0 and t.dim() > 0:
            raise InputError(
                f"{source}: '{name}' has shape {tuple(t.shape)}, a layer of zero width; "
                "expected every layer to have at least one unit"
            )
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            kinds = "NaN" if bool(t.isnan().any()) else "inf"
            if kinds == "NaN" and bool(t.isinf().any()):
                kinds = "NaN and inf"
            raise InputError(
                f"{source}: '{name}' holds {bad} {kinds} value(s) of {t.numel()}; expected "
                "finite weights (did training diverge?)"
            )


def check_net(net: PWLNet, compute_dtype: bool = False) -> PWLNet:
    """``net`` when every tensor of its ops passes :func:`check_tensors`, each named
    ``path.key`` after its layer (``2.weight``; ``0+1.bias`` for a folded BatchNorm)."""
    named = [
        (f"{node.path or node.name}.{key}", value)
        for node in net.nodes
        for key, value in vars(node.op).items()
        if isinstance(value, Tensor)
    ]
    check_tensors(named, "model", compute_dtype)
    return net


def check_real_inputs(x: Tensor, what: str = "inputs") -> Tensor:
    """``x`` when its dtype is real (floating or integer); InputError for bool and complex
    tensors, whose conversion to floats would silently change them."""
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(
            f"{what} must be real numbers (a floating or integer tensor); got dtype "
            f"{str(x.dtype).removeprefix('torch.')}"
        )
    return x


def check_finite_outputs(outputs: Tensor, what: str = "the network") -> Tensor:
    """``outputs`` when every value is finite; InputError otherwise (the network overflows on
    these inputs, so any quantity computed from its outputs would be meaningless)."""
    finite = torch.isfinite(outputs)
    if not bool(finite.all()):
        rows = int((~finite.reshape(len(outputs), -1)).any(dim=1).sum())
        raise InputError(
            f"{what} returns NaN or inf at {rows} of {len(outputs)} inputs "
            f"({str(outputs.dtype).removeprefix('torch.')} overflow?); expected finite outputs "
            "(try dtype=torch.float64, or smaller inputs or weights)"
        )
    return outputs
