"""The operations a PWLNet is made of: affine maps and piecewise-linear activations.

Every affine op has ``forward`` (the map itself) and ``linear`` (its linear part, bias dropped),
so that tangents and affine coefficients can be pushed through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import overload

import torch
import torch.nn.functional as F
from torch import Tensor

from reluscope.errors import InputError


class Op:
    """An operation on batched tensors (batch dimension first)."""

    #: Short human-readable kind, used in summaries.
    kind: str = "op"

    #: The op on its inputs: one tensor, or several for :class:`AddOp`.
    forward: Callable[..., Tensor]
    #: The linear part of the op (the op minus its constant term); affine ops only.
    linear: Callable[..., Tensor]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Op:
        return self


@overload
def _cast(t: Tensor, device, dtype) -> Tensor: ...
@overload
def _cast(t: None, device, dtype) -> None: ...
def _cast(t: Tensor | None, device, dtype) -> Tensor | None:
    return None if t is None else t.to(device=device, dtype=dtype)


@dataclass
class LinearOp(Op):
    """y = x W^T + b."""

    weight: Tensor
    bias: Tensor | None = None
    kind: str = "linear"

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def linear(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)

    def to(self, device=None, dtype=None) -> LinearOp:
        return LinearOp(_cast(self.weight, device, dtype), _cast(self.bias, device, dtype))


@dataclass
class ConvOp(Op):
    """An N-d convolution (N = 1 or 2) with any stride, padding, dilation, groups and padding mode."""

    weight: Tensor
    bias: Tensor | None
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str = "zeros"
    reversed_padding: tuple[int, ...] = ()
    kind: str = "conv"

    def _conv(self, x: Tensor, bias: Tensor | None) -> Tensor:
        conv = F.conv1d if self.weight.dim() == 3 else F.conv2d
        padding: tuple[int, ...] | str | int = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self.reversed_padding, mode=self.padding_mode)
            padding = 0
        return conv(x, self.weight, bias, self.stride, padding, self.dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.bias)

    def linear(self, x: Tensor) -> Tensor:
        return self._conv(x, None)

    @classmethod
    def from_module(cls, m: torch.nn.Conv1d | torch.nn.Conv2d) -> ConvOp:
        """The convolution computed by the module ``m``, holding detached copies of its
        parameters."""
        return cls(
            m.weight.detach().clone(),
            None if m.bias is None else m.bias.detach().clone(),
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            m.padding_mode,
            tuple(m._reversed_padding_repeated_twice),
        )

    def to(self, device=None, dtype=None) -> ConvOp:
        return replace(
            self, weight=_cast(self.weight, device, dtype), bias=_cast(self.bias, device, dtype)
        )


@dataclass
class ScaleShiftOp(Op):
    """y = x * scale + shift, per channel (dimension 1); eval-mode BatchNorm and constant scaling."""

    scale: Tensor | float
    shift: Tensor | float | None = None
    kind: str = "scale_shift"

    def _view(self, t: Tensor | float, x: Tensor) -> Tensor | float:
        if not isinstance(t, Tensor) or t.dim() == 0:
            return t
        return t.reshape((1, -1) + (1,) * (x.dim() - 2))

    def forward(self, x: Tensor) -> Tensor:
        y = x * self._view(self.scale, x)
        return y if self.shift is None else y + self._view(self.shift, x)

    def linear(self, x: Tensor) -> Tensor:
        return x * self._view(self.scale, x)

    def to(self, device=None, dtype=None) -> ScaleShiftOp:
        def cast(t):
            return t.to(device=device, dtype=dtype) if isinstance(t, Tensor) else t

        return ScaleShiftOp(cast(self.scale), cast(self.shift))


class BatchNormOp(Op):
    """Eval-mode BatchNorm: y = (x - mean) / sqrt(var + eps) * weight + bias, per channel.

    The statistics are kept as given, so that casting to float64 computes the scale exactly.
    """

    kind = "batch_norm"

    def __init__(self, mean: Tensor, var: Tensor, eps: float, weight=None, bias=None) -> None:
        self.mean, self.var, self.eps, self.weight, self.bias = mean, var, eps, weight, bias

    @property
    def scale(self) -> Tensor:
        scale = torch.rsqrt(self.var + self.eps)
        return scale if self.weight is None else scale * self.weight

    @property
    def shift(self) -> Tensor:
        shift = -self.mean * self.scale
        return shift if self.bias is None else shift + self.bias

    def forward(self, x: Tensor) -> Tensor:
        return ScaleShiftOp(self.scale, self.shift).forward(x)

    def linear(self, x: Tensor) -> Tensor:
        return ScaleShiftOp(self.scale).linear(x)

    def to(self, device=None, dtype=None) -> BatchNormOp:
        return BatchNormOp(
            _cast(self.mean, device, dtype),
            _cast(self.var, device, dtype),
            self.eps,
            _cast(self.weight, device, dtype),
            _cast(self.bias, device, dtype),
        )


@dataclass
class AvgPoolOp(Op):
    """Average pooling (1d or 2d); linear, no constant term."""

    dims: int
    kernel_size: tuple[int, ...] | int
    stride: tuple[int, ...] | int | None
    padding: tuple[int, ...] | int
    ceil_mode: bool
    count_include_pad: bool
    divisor_override: int | None = None
    kind: str = "avg_pool"

    def forward(self, x: Tensor) -> Tensor:
        stride = self.kernel_size if self.stride is None else self.stride  # torch's default
        if self.dims == 1:
            return F.avg_pool1d(
                x,
                self.kernel_size,
                stride,
                self.padding,
                self.ceil_mode,
                self.count_include_pad,
            )
        return F.avg_pool2d(
            x,
            self.kernel_size,
            stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    linear = forward


@dataclass
class ReshapeOp(Op):
    """Reshape every sample to ``shape`` (Flatten, view, reshape; Identity when shape is unchanged)."""

    shape: tuple[int, ...]
    kind: str = "reshape"

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape((x.shape[0],) + self.shape)

    linear = forward


@dataclass
class AddOp(Op):
    """y = sum of the inputs, each times its sign (+1 or -1), plus an optional constant."""

    signs: tuple[float, ...]
    constant: Tensor | float | None = None
    kind: str = "add"

    def linear(self, *xs: Tensor) -> Tensor:
        out = xs[0] * self.signs[0] if self.signs[0] != 1 else xs[0]
        for s, x in zip(self.signs[1:], xs[1:], strict=True):
            out = out + x if s == 1 else out - x
        return out

    def forward(self, *xs: Tensor) -> Tensor:
        out = self.linear(*xs)
        return out if self.constant is None else out + self.constant

    def to(self, device=None, dtype=None) -> AddOp:
        c = self.constant
        if isinstance(c, Tensor):
            c = c.to(device=device, dtype=dtype)
        return AddOp(self.signs, c)


@dataclass
class AdaptiveAvgPoolOp(Op):
    """Adaptive average pooling (1d or 2d) to ``output_size``; linear, no constant term."""

    dims: int
    output_size: tuple[int | None, ...] | int | None
    kind: str = "adaptive_avg_pool"

    def forward(self, x: Tensor) -> Tensor:
        size = self.output_size
        if self.dims == 1 and isinstance(size, tuple) and len(size) == 1:
            size = size[0]
        if self.dims == 1 and isinstance(size, int):
            return F.adaptive_avg_pool1d(x, size)
        if self.dims == 2 and (
            isinstance(size, int) or (isinstance(size, tuple) and len(size) == 2)
        ):
            return F.adaptive_avg_pool2d(x, size)
        raise InputError(
            f"output_size of a {self.dims}-d adaptive average pool must be an int or "
            f"{self.dims} sizes; got {size!r}"
        )

    linear = forward


@dataclass
class MeanOp(Op):
    """The mean over the sample dimensions ``dims`` (counted with the batch dimension as 0)."""

    dims: tuple[int, ...]
    keepdim: bool = False
    kind: str = "mean"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=self.dims, keepdim=self.keepdim)

    linear = forward


@dataclass
class CatOp(Op):
    """Concatenation of the inputs along dimension ``dim`` (>= 1: never the batch)."""

    dim: int
    kind: str = "cat"

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=self.dim)

    linear = forward

    def split(self, c: Tensor, sizes: list[int]) -> tuple[Tensor, ...]:
        """The transpose: a cotangent of the output cut into the inputs' parts."""
        return torch.split(c, sizes, dim=self.dim)


@dataclass
class UpsampleNearestOp(Op):
    """Nearest-neighbour upsampling to ``size`` or by ``scale_factor`` (linear: a copy map)."""

    size: tuple[int, ...] | int | None
    scale_factor: tuple[float, ...] | float | None
    kind: str = "upsample_nearest"

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode="nearest")

    linear = forward


@dataclass
class PadOp(Op):
    """Constant padding (``F.pad`` order of ``pad``): affine, the padded value is its constant."""

    pad: tuple[int, ...]
    value: float = 0.0
    kind: str = "pad"

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pad, value=self.value)

    def linear(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pad, value=0.0)


AFFINE_OPS = (
    LinearOp,
    ConvOp,
    ScaleShiftOp,
    AvgPoolOp,
    AdaptiveAvgPoolOp,
    MeanOp,
    ReshapeOp,
    UpsampleNearestOp,
    PadOp,
)
