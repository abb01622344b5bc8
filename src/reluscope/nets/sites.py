"""Neuron sites: the piecewise-linear (non-affine) operations of a PWLNet.

Two kinds, both continuous and piecewise-linear, so that the network is affine on every region of
constant *pattern*:

- :class:`ActivationOp`, applied elementwise: a piecewise-linear function with breakpoints
  ``b_1 < ... < b_m`` and slopes ``s_0, ..., s_m`` (one per piece, optionally one per channel):
  ReLU (one breakpoint at 0, slopes 0 and 1), LeakyReLU and PReLU (learned slopes), ReLU6 and
  Hardtanh and clamp (two breakpoints, slopes 0, 1, 0). A neuron's pattern is the piece it is
  on: the bits ``z > b_i``.
- :class:`MaxPoolOp`, a **max unit** per output element: the maximum of the candidates in its
  window (max pooling with any kernel, stride, padding, dilation and ceil_mode). Its pattern is
  the leading candidate, and its region boundaries are the ties ``c_a = c_j`` between the
  leading candidate ``a`` and another candidate ``j``.

Every site describes its region boundaries near a point by *boundary functions*
``g = z[p] - z[q] - b`` of its pre-activation ``z`` (flattened per sample): ``z_i - b_k`` for
every neuron i and breakpoint b_k of an activation, ``c_a - c_j`` for every other candidate j
of a max unit (``q = -1`` when there is no second term). Inside a region each g is affine in the
input, with gradient ``grad z_p - grad z_q``; the boundary is where some g vanishes.

Every site also has a *local linear map*: ``local(z)`` gives a state (the slopes at z, or the
leading candidates), and ``push``/``pull`` apply the map (and its transpose) to tangents and
cotangents; this is how Jacobians and gradient norms are propagated.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from reluscope.nets.ops import Op


class SiteOp(Op):
    """A piecewise-linear operation that is not affine: a neuron site."""

    #: Whether LC's bias noise is added to the pre-activation (neurons with a bias).
    noisy: bool = True

    def local(self, z: Tensor) -> Tensor:
        """The state of the local linear map at pre-activations ``z`` (batch first)."""
        raise NotImplementedError

    def push(self, state: Tensor, t: Tensor) -> Tensor:
        """Tangents ``t`` (batch, k, *in_shape) through the local linear map: (batch, k, *out)."""
        raise NotImplementedError

    def pull(self, state: Tensor, c: Tensor, in_shape: tuple[int, ...]) -> Tensor:
        """Cotangents ``c`` (batch, *out_shape) through the transposed map: (batch, *in_shape)."""
        raise NotImplementedError

    def pattern(self, z: Tensor) -> Tensor:
        """The pattern at ``z``: bool, batch first, pattern_width bits per sample, constant on
        every region."""
        raise NotImplementedError

    def blocks(self, z: Tensor) -> Tensor:
        """Per sample of ``z`` (batch, *in_shape), True where the local linear map is zero: every
        output of the op is constant near z (on its region), so no input change passes it."""
        raise NotImplementedError

    def pattern_width(self, in_shape: tuple[int, ...]) -> int:
        """The number of pattern bits for a pre-activation of shape ``in_shape``."""
        raise NotImplementedError

    def boundaries(self, z: Tensor, lead: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The boundary functions at ``z`` (batch, *in_shape): values g, and indices p and q
        into the flattened pre-activation (q = -1: no second term), each of shape
        (batch, n_boundaries). A boundary that cannot be crossed here has g = inf. ``lead``
        (same shape as z) chooses the leading candidates of a max unit (default: z itself)."""
        raise NotImplementedError

    def lipschitz(self, in_shape: tuple[int, ...]) -> float:
        """The Lipschitz constant of the op (Euclidean norms of the flattened tensors)."""
        raise NotImplementedError

    def gradient_factor(self) -> int:
        """How many neuron gradients a boundary function's gradient is a difference of (1 or 2)."""
        return 1

    def linear(self, *xs: Tensor) -> Tensor:
        raise TypeError(f"a {self.kind} site is not affine: it has no linear part")


def _channel_view(t: Tensor, z: Tensor) -> Tensor:
    """A per-channel vector shaped to broadcast over z (batch, C, ...)."""
    return t.reshape((1, -1) + (1,) * (z.dim() - 2))


class ActivationOp(SiteOp):
    """An elementwise continuous piecewise-linear function.

    ``breakpoints`` b_1 < ... < b_m; ``slopes`` of shape (m + 1,) or, per channel (dimension 1
    of the input), (m + 1, C); ``value`` is f(b_1). Build one with :meth:`relu`, :meth:`leaky`,
    :meth:`prelu` or :meth:`clamp`.
    """

    def __init__(
        self,
        slope: float = 0.0,
        *,
        breakpoints: tuple[float, ...] = (0.0,),
        slopes: Tensor | None = None,
        value: float = 0.0,
        kind: str | None = None,
    ) -> None:
        if slopes is None:
            if not math.isfinite(slope):
                raise ValueError(f"activation slope must be finite, got {slope}")
            slopes = torch.tensor([float(slope), 1.0], dtype=torch.float64)
        self.breakpoints = tuple(float(b) for b in breakpoints)
        self.slopes = slopes
        self.value = float(value)
        if len(self.breakpoints) + 1 != slopes.shape[0]:
            raise ValueError("an activation needs one more slope than breakpoints")
        if any(b >= c for b, c in zip(self.breakpoints, self.breakpoints[1:], strict=False)):
            raise ValueError(f"breakpoints must increase, got {self.breakpoints}")
        self.kind = kind or self._default_kind()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def relu(cls) -> ActivationOp:
        return cls(0.0)

    @classmethod
    def leaky(cls, slope: float) -> ActivationOp:
        return cls(float(slope))

    @classmethod
    def prelu(cls, weight: Tensor) -> ActivationOp:
        """PReLU with one slope (``weight`` of 1 element) or one per channel."""
        w = weight.detach().clone().reshape(-1)
        if w.numel() == 1:
            return cls(float(w[0]), kind=f"prelu({float(w[0]):g})")
        ones = torch.ones_like(w)
        return cls(slopes=torch.stack([w, ones]), kind=f"prelu({w.numel()} channels)")

    @classmethod
    def clamp(cls, low: float | None, high: float | None) -> ActivationOp:
        """clamp(x, low, high) (Hardtanh, ReLU6 = clamp(x, 0, 6)); either bound may be None."""
        if low is not None and high is not None:
            return cls(
                breakpoints=(low, high),
                slopes=torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                value=low,
                kind=f"clamp({low:g}, {high:g})",
            )
        if low is not None:
            slopes = torch.tensor([0.0, 1.0], dtype=torch.float64)
            return cls(breakpoints=(low,), slopes=slopes, value=low, kind=f"clamp(min={low:g})")
        if high is not None:
            slopes = torch.tensor([1.0, 0.0], dtype=torch.float64)
            return cls(breakpoints=(high,), slopes=slopes, value=high, kind=f"clamp(max={high:g})")
        raise ValueError("clamp needs a lower or an upper bound")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActivationOp)
            and self.breakpoints == other.breakpoints
            and self.value == other.value
            and self.slopes.shape == other.slopes.shape
            and bool((self.slopes.cpu() == other.slopes.cpu()).all())
        )

    def __hash__(self) -> int:
        return hash((self.breakpoints, self.value, self.kind))

    def __repr__(self) -> str:
        return f"ActivationOp({self.kind})"

    def _default_kind(self) -> str:
        if self.is_leaky:
            s = float(self.slopes[0])
            return "relu" if s == 0 else f"leaky_relu({s:g})"
        return f"pwl({len(self.breakpoints)} breakpoints)"

    @property
    def is_leaky(self) -> bool:
        """A (leaky) ReLU: one breakpoint at 0, value 0, slope 1 above it, one slope below."""
        return (
            self.breakpoints == (0.0,)
            and self.value == 0.0
            and self.slopes.dim() == 1
            and float(self.slopes[1]) == 1.0
        )

    @property
    def slope(self) -> float:
        """The negative slope of a (leaky) ReLU; ValueError for other activations."""
        if not self.is_leaky:
            raise ValueError(f"{self.kind} is not a (leaky) ReLU: it has no single slope")
        return float(self.slopes[0])

    def to(self, device=None, dtype=None) -> ActivationOp:
        return ActivationOp(
            breakpoints=self.breakpoints,
            slopes=self.slopes.to(device=device),
            value=self.value,
            kind=self.kind,
        )

    # ------------------------------------------------------------------ evaluation
    def _slope(self, i: int, z: Tensor) -> Tensor | float:
        s = self.slopes[i]
        if s.dim() == 0:
            return float(s)
        return _channel_view(s.to(device=z.device, dtype=z.dtype), z)

    def forward(self, z: Tensor) -> Tensor:
        b = self.breakpoints
        if self.is_leaky:
            s = float(self.slopes[0])
            return torch.relu(z) if s == 0 else torch.where(z > 0, z, z * s)
        if self.slopes.dim() == 1 and self.slopes.tolist() == [0.0, 1.0, 0.0]:
            return torch.clamp(z, b[0], b[1])
        if self.slopes.dim() == 1 and self.slopes.tolist() in ([0.0, 1.0], [1.0, 0.0]):
            low = float(self.slopes[0]) == 0.0
            return torch.clamp(z, min=b[0]) if low else torch.clamp(z, max=b[0])
        # general: continuous with f(b_1) = value, slope s_i on piece i
        out = self.value + (z - b[0]) * self._slope(0, z)
        for i, bi in enumerate(b):
            out = out + (self._slope(i + 1, z) - self._slope(i, z)) * torch.relu(z - bi)
        return out

    def local(self, z: Tensor) -> Tensor:
        """The slope at every pre-activation (a value exactly at a breakpoint takes the piece
        below it)."""
        one = torch.ones((), dtype=z.dtype, device=z.device)
        gain = one * self._slope(0, z)
        for i, bi in enumerate(self.breakpoints):
            gain = torch.where(z > bi, one * self._slope(i + 1, z), gain)
        return gain

    gain = local

    def push(self, state: Tensor, t: Tensor) -> Tensor:
        return t * state.unsqueeze(1)

    def pull(self, state: Tensor, c: Tensor, in_shape: tuple[int, ...]) -> Tensor:
        return c * state

    def blocks(self, z: Tensor) -> Tensor:
        """True where every unit is on a piece of slope 0: a ReLU's all inactive, a ReLU6's or
        Hardtanh's each on either flat end; never for a leaky ReLU or PReLU with nonzero slopes.
        A value exactly at a breakpoint takes the piece below it, as in :meth:`local`."""
        return (self.local(z) == 0).reshape(len(z), -1).all(dim=1)

    def pattern(self, z: Tensor) -> Tensor:
        """The bits ``z > b_k``: shaped like z for one breakpoint, else with a last dimension
        of one bit per breakpoint."""
        bits = [z > b for b in self.breakpoints]
        return bits[0] if len(bits) == 1 else torch.stack(bits, dim=-1)

    def pattern_width(self, in_shape: tuple[int, ...]) -> int:
        return math.prod(in_shape) * len(self.breakpoints)

    def boundaries(self, z: Tensor, lead: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        flat = z.reshape(len(z), -1)
        n = flat.shape[1]
        b = torch.tensor(self.breakpoints, dtype=z.dtype, device=z.device)
        g = (flat.unsqueeze(2) - b).reshape(len(z), -1)
        p = torch.arange(n, device=z.device).repeat_interleave(len(b)).expand(len(z), -1)
        return g, p, torch.full_like(p, -1)

    def lipschitz(self, in_shape: tuple[int, ...]) -> float:
        return float(self.slopes.abs().max())


@dataclass(frozen=True)
class MaxPoolOp(SiteOp):
    """Max pooling (1-d or 2-d): one max unit per output element."""

    dims: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    kind: str = "max_pool"
    noisy = False

    @classmethod
    def create(cls, dims: int, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        """A max pool with torch's argument conventions (ints or tuples; stride defaults to the
        kernel size)."""

        def tup(v) -> tuple[int, ...]:
            return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * dims

        stride = kernel_size if stride is None or stride == [] or stride == () else stride
        return cls(dims, tup(kernel_size), tup(stride), tup(padding), tup(dilation), ceil_mode)

    def _pool(self, z: Tensor) -> Tensor:
        pool = F.max_pool1d if self.dims == 1 else F.max_pool2d
        return pool(
            z, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode
        )

    def forward(self, z: Tensor) -> Tensor:
        return self._pool(z)

    def local(self, z: Tensor) -> Tensor:
        """The leading candidate of every unit: its flat index in the channel's plane."""
        pool = F.max_pool1d if self.dims == 1 else F.max_pool2d
        _, leaders = pool(
            z,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=True,
        )
        return leaders

    def push(self, state: Tensor, t: Tensor) -> Tensor:
        b, k = t.shape[:2]
        plane = t.reshape(b, k, t.shape[2], -1)
        idx = state.reshape(b, 1, state.shape[1], -1).expand(-1, k, -1, -1)
        return plane.gather(3, idx).reshape((b, k) + tuple(state.shape[1:]))

    def pull(self, state: Tensor, c: Tensor, in_shape: tuple[int, ...]) -> Tensor:
        """Cotangents (batch, *out) to the input (batch, *in_shape): added at the leaders."""
        b = c.shape[0]
        out = c.new_zeros((b, in_shape[0], math.prod(in_shape[1:])))
        out.scatter_add_(2, state.reshape(b, in_shape[0], -1), c.reshape(b, in_shape[0], -1))
        return out.reshape((b,) + in_shape)

    def windows(self, in_shape: tuple[int, ...]) -> Tensor:
        """The candidates of every unit: flat indices into a sample's input, -1 for padding;
        shape (units, window size), units in output order."""
        return _windows(self, tuple(in_shape))

    def _build_windows(self, in_shape: tuple[int, ...]) -> Tensor:
        c = in_shape[0]
        spatial = in_shape[1:]
        grid = torch.arange(math.prod(in_shape)).reshape((1,) + in_shape) + 1
        if self.dims == 1:
            grid = grid.unsqueeze(2)  # (1, C, 1, L)
        ks, st, pd, dl = (
            ((1 if name != "padding" else 0,) + tuple(v)) if self.dims == 1 else tuple(v)
            for name, v in (
                ("kernel", self.kernel_size),
                ("stride", self.stride),
                ("padding", self.padding),
                ("dilation", self.dilation),
            )
        )
        out = tuple(self._pool(torch.zeros((1,) + in_shape)).shape[2:])
        out2 = (1,) + out if self.dims == 1 else out
        size2 = (1,) + spatial if self.dims == 1 else spatial
        # enough padding after the input for ceil_mode's last windows
        need = [o * s + d * (k - 1) + 1 for o, s, d, k in zip(out2, st, dl, ks, strict=True)]
        extra = [max(0, n - (sz + p)) for n, sz, p in zip(need, size2, pd, strict=True)]
        grid = F.pad(grid.double(), (pd[1], extra[1], pd[0], extra[0]))
        cols = F.unfold(grid, ks, dilation=dl, stride=st)  # (1, C * K, L)
        k = math.prod(ks)
        n_h = (grid.shape[2] - dl[0] * (ks[0] - 1) - 1) // st[0] + 1
        n_w = (grid.shape[3] - dl[1] * (ks[1] - 1) - 1) // st[1] + 1
        cols = cols.reshape(c, k, n_h, n_w)[:, :, : out2[0], : out2[1]]
        idx = cols.permute(0, 2, 3, 1).reshape(-1, k).round().long() - 1
        return idx

    def candidates(self, z: Tensor) -> Tensor:
        """The candidate values of every unit, (batch, units, window), -inf for padding."""
        w = self.windows(tuple(z.shape[1:])).to(z.device)
        flat = z.reshape(len(z), -1)
        pad = torch.full((len(z), 1), -math.inf, dtype=z.dtype, device=z.device)
        return torch.cat([flat, pad], dim=1)[:, w]

    def blocks(self, z: Tensor) -> Tensor:
        """Never: a max unit passes its leading candidate with slope 1."""
        return torch.zeros(len(z), dtype=torch.bool, device=z.device)

    def pattern(self, z: Tensor) -> Tensor:
        lead = self.local(z).reshape(len(z), -1)
        w = self.windows(tuple(z.shape[1:])).to(z.device)
        plane = math.prod(z.shape[2:])
        channel = torch.arange(w.shape[0], device=z.device) // (w.shape[0] // z.shape[1])
        flat_lead = lead + channel * plane
        return (w.unsqueeze(0) == flat_lead.unsqueeze(2)).reshape(len(z), -1)

    def pattern_width(self, in_shape: tuple[int, ...]) -> int:
        return self.windows(in_shape).numel()

    def boundaries(self, z: Tensor, lead: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        shape = tuple(z.shape[1:])
        w = self.windows(shape).to(z.device)
        cand = self.candidates(z)
        ref = cand if lead is None else self.candidates(lead)
        a = ref.argmax(dim=2, keepdim=True)  # (b, units, 1)
        g = cand.gather(2, a) - cand
        g = g.masked_fill(torch.arange(w.shape[1], device=z.device) == a, math.inf)
        g = torch.nan_to_num(g, nan=math.inf, posinf=math.inf, neginf=math.inf)
        wb = w.unsqueeze(0).expand(len(z), -1, -1)
        p = wb.gather(2, a).expand(-1, -1, w.shape[1])
        return g.reshape(len(z), -1), p.reshape(len(z), -1), wb.reshape(len(z), -1)

    def lipschitz(self, in_shape: tuple[int, ...]) -> float:
        """sqrt of the largest number of windows an input element is in: the local map selects
        one input per unit, so each column of its matrix has at most that many ones."""
        w = self.windows(in_shape)
        w = w[w >= 0]
        if len(w) == 0:
            return 0.0
        return math.sqrt(int(torch.bincount(w).max()))

    def gradient_factor(self) -> int:
        return 2

    def to(self, device=None, dtype=None) -> MaxPoolOp:
        return replace(self)


@functools.lru_cache(maxsize=64)
def _windows(op: MaxPoolOp, in_shape: tuple[int, ...]) -> Tensor:
    return op._build_windows(in_shape)


SITE_OPS = (ActivationOp, MaxPoolOp)
