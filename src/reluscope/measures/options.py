"""Validation shared by the measures: the network, its sites, sizes and numeric options."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn

from reluscope.errors import InputError
from reluscope.nets.checks import check_dtype
from reluscope.nets.pwl import PWLNet, Site
from reluscope.nets.trace import as_pwlnet


def prepare_net(
    model: nn.Module | PWLNet,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> PWLNet:
    """The PWLNet of ``model`` (traced unless it is one), cast to ``dtype`` when given.

    Device and dtype otherwise follow the model's parameters.
    """
    check_dtype(dtype)
    net = as_pwlnet(model, input_shape)
    if dtype is None:
        return net
    return net if dtype == net.dtype else net.to(dtype=dtype)


def select_sites(net: PWLNet, layers: Iterable[str] | str | None = None) -> list[Site]:
    """The sites named in ``layers``, in network order (all sites when None).

    Raises InputError for an unknown name (listing the sites) or a network without sites.
    """
    if not net.sites:
        raise InputError(
            "the network has no ReLU/LeakyReLU sites: expected at least one activation"
        )
    if layers is None:
        return list(net.sites)
    wanted = [layers] if isinstance(layers, str) else list(layers)
    names = [s.name for s in net.sites]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise InputError(f"unknown layer(s) {unknown}; the network's sites are {names}")
    if not wanted:
        raise InputError(f"layers is empty; expected some of the network's sites {names}")
    return [s for s in net.sites if s.name in wanted]


def check_chunk(chunk_size: int | None, name: str = "chunk_size") -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"{name} must be a positive integer or None, got {chunk_size!r}")
    return chunk_size


def check_nonnegative(name: str, value: float, positive: bool = False) -> float:
    """``value`` as a finite float that is >= 0 (> 0 with ``positive``), or an InputError."""
    bound = "> 0" if positive else ">= 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return v
