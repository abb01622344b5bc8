"""A convolution as the linear map it is on inputs of one shape: its singular values and norms.

The map is x -> conv(x) without the bias, for inputs of shape ``(C_in, *spatial)``, with the
layer's stride, padding (any mode), dilation and groups. Its matrix ("unrolled" or Toeplitz
matrix) has ``prod(output shape)`` rows and ``prod(input shape)`` columns; it is never formed
unless asked for (:meth:`ConvOperator.dense`).

* :meth:`~ConvOperator.fft_singular_values`: all singular values exactly, for circular padding
  with stride 1 and an output the size of the input (then the map is block-diagonalised by the
  discrete Fourier transform: one ``C_out x C_in`` matrix per frequency; Sedghi, Gupta & Long,
  ICLR 2019).
* :meth:`~ConvOperator.spectral_norm`: the largest singular value by Lanczos iteration on
  A^T A, with the adjoint from autograd; the estimate never exceeds the true value.
* :meth:`~ConvOperator.row_norms`: the Euclidean norm of every row exactly (one per output unit).

Internal to reluscope.measures: not part of the public API.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reluscope.nets.ops import ConvOp

#: Most entries a batch of basis images (or of their images) may hold at once.
CHUNK_ENTRIES = 2**22


class ConvOperator:
    """The linear part of ``op`` on inputs of shape ``input_shape`` (without batch), in float64."""

    def __init__(self, op: ConvOp, input_shape: Sequence[int]) -> None:
        self.op = op.to(dtype=torch.float64)
        self.input_shape = tuple(int(s) for s in input_shape)
        probe = torch.zeros((1,) + self.input_shape, dtype=torch.float64, device=self.device)
        self.output_shape = tuple(self.op.linear(probe).shape[1:])

    @property
    def device(self) -> torch.device:
        return self.op.weight.device

    @property
    def d_in(self) -> int:
        return math.prod(self.input_shape)

    @property
    def d_out(self) -> int:
        return math.prod(self.output_shape)

    def apply(self, x: Tensor) -> Tensor:
        """A x for a batch of flat inputs ``x`` (batch, d_in) -> (batch, d_out)."""
        y = self.op.linear(x.reshape((len(x),) + self.input_shape))
        return y.reshape(len(x), -1)

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y for a batch of flat outputs ``y`` (batch, d_out) -> (batch, d_in)."""
        x = torch.zeros(len(y), self.d_in, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.apply(x), x, grad_outputs=y)
        return grad

    def _basis_chunks(self, dim: int, other: int):
        step = max(1, CHUNK_ENTRIES // max(dim, other))
        for start in range(0, dim, step):
            stop = min(dim, start + step)
            eye = torch.zeros(stop - start, dim, dtype=torch.float64, device=self.device)
            eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            yield eye

    def dense(self) -> Tensor:
        """The (d_out, d_in) matrix of the map, built column by column from basis images."""
        cols = [self.apply(e) for e in self._basis_chunks(self.d_in, self.d_out)]
        return torch.cat(cols).T.contiguous()

    def row_norms(self) -> Tensor:
        """The Euclidean norm of each row of the matrix (d_out,), exactly.

        With zero padding, row o holds each weight of the receptive field of output o at most
        once (at the input it meets; padded positions are absent), so its squared norm is the
        convolution of an all-ones input with the squared weights. Other padding modes may send
        two weights to the same input, so the rows are taken from the adjoint of basis vectors.
        """
        if self.op.padding_mode == "zeros":
            squared = ConvOp(
                self.op.weight**2,
                None,
                self.op.stride,
                self.op.padding,
                self.op.dilation,
                self.op.groups,
            )
            ones = torch.ones((1,) + self.input_shape, dtype=torch.float64, device=self.device)
            return squared.linear(ones).reshape(-1).clamp_min(0).sqrt()
        if self.is_circular():  # every row is a shifted copy of its channel's kernel on the grid
            per_channel = self._kernel_on_grid().flatten(1).norm(dim=1)
            return per_channel.repeat_interleave(self.d_out // len(per_channel))
        rows = [self.adjoint(e).norm(dim=1) for e in self._basis_chunks(self.d_out, self.d_in)]
        return torch.cat(rows)

    def is_circular(self) -> bool:
        """True when the map is a circular convolution: circular padding, stride 1 and an
        output of the input's spatial size."""
        return (
            self.op.padding_mode == "circular"
            and all(s == 1 for s in self.op.stride)
            and self.output_shape[1:] == self.input_shape[1:]
        )

    def _kernel_on_grid(self) -> Tensor:
        """The (C_out, C_in, *spatial) array holding, for a circular convolution, the weight
        that output (o, position 0) gives input (c, position p): the kernel's taps laid on the
        input grid at dilation * tap modulo the size, groups expanded to full channels."""
        w = self.op.weight
        c_out, c_in = w.shape[0], self.input_shape[0]
        per_out, per_in = c_out // self.op.groups, c_in // self.op.groups
        spatial = self.input_shape[1:]
        dense_kernel = torch.zeros(
            (c_out, c_in) + tuple(w.shape[2:]), dtype=w.dtype, device=w.device
        )
        for g in range(self.op.groups):
            out_, in_ = slice(g * per_out, (g + 1) * per_out), slice(g * per_in, (g + 1) * per_in)
            dense_kernel[out_, in_] = w[out_]
        full = torch.zeros((c_out, c_in) + spatial, dtype=w.dtype, device=w.device)
        for tap in itertools.product(*(range(k) for k in w.shape[2:])):
            where = tuple(
                (t * d) % n for t, d, n in zip(tap, self.op.dilation, spatial, strict=True)
            )
            full[(slice(None), slice(None)) + where] += dense_kernel[
                (slice(None), slice(None)) + tap
            ]
        return full

    def fft_singular_values(self) -> Tensor:
        """All prod(spatial) * min(C_out, C_in) singular values of a circular convolution,
        descending.

        The kernel is laid on the input grid (tap k at position dilation * k, modulo the size),
        transformed with an FFT over the spatial axes, and the C_out x C_in matrix of every
        frequency is decomposed; the union of their singular values is the map's spectrum
        (the padding offset only multiplies each frequency by a unit phase).
        """
        if not self.is_circular():
            raise ValueError("fft_singular_values needs a circular convolution (see is_circular)")
        full = self._kernel_on_grid()
        c_out, c_in = full.shape[:2]
        spatial = self.input_shape[1:]
        dims = tuple(range(2, 2 + len(spatial)))
        freq = torch.fft.fftn(full, dim=dims)
        per_freq = freq.permute(*dims, 0, 1).reshape(-1, c_out, c_in)
        values = torch.linalg.svdvals(per_freq).reshape(-1)
        return values.sort(descending=True).values

    def spectral_norm(self, *, tol: float = 1e-10, seed: int = 0) -> tuple[float, int]:
        """(largest singular value, number of A^T A products) by Lanczos iteration on A^T A
        (ARPACK through scipy's ``eigsh``, started from a seeded random vector).

        The result is a Ritz value, so it never exceeds the true value (up to rounding); it is
        accurate to a relative ``tol`` in sigma^2.
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator, eigsh

        if self.d_in == 1:
            return float(self.apply(torch.ones(1, 1, dtype=torch.float64)).norm()), 1
        count = 0

        def gram(v: np.ndarray) -> np.ndarray:
            nonlocal count
            count += 1
            x = torch.as_tensor(np.ascontiguousarray(v).reshape(1, -1), device=self.device)
            return self.adjoint(self.apply(x)).cpu().numpy().reshape(-1)

        operator = LinearOperator((self.d_in, self.d_in), matvec=gram, dtype=np.float64)
        start = np.random.default_rng(seed).standard_normal(self.d_in)
        value = eigsh(operator, k=1, which="LA", tol=tol, v0=start, return_eigenvectors=False)
        return math.sqrt(max(float(value[0]), 0.0)), count
