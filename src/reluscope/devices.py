"""Devices named by the user (``--device``, ``device=``): parsed and checked to exist here.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import torch

from reluscope.errors import InputError, did_you_mean

DEVICE_HELP = "cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch.device that this machine has; InputError otherwise (an unknown
    name, the meta device, CUDA or MPS not available, a CUDA index out of range)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device must be one of {DEVICE_HELP}; got {name!r}{_hint(name)}"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device must be one of {DEVICE_HELP}; got {name!r}{_hint(name)}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but CUDA is not available here")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(
                f"device {name!r} asked for, but this machine has {count} CUDA device(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} asked for, but MPS is not available here")
    return device


def _hint(name: object) -> str:
    """The "did you mean" of a mistyped device name (e.g. 'cpuu', 'cdua:1')."""
    _, sep, index = str(name).partition(":")
    return did_you_mean(str(name), ("cpu", "mps", f"cuda{sep}{index}"))
