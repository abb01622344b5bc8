"""Spectral norm of a convolution as an operator: reluscope.weight_ranks against the
references, side by side.

A conv layer's true operator norm (the Lipschitz constant the bounds need) is not the norm of
its reshaped kernel. Methods compared on the same seeded layers (float64, CPU, one thread):

- ``dense svd`` (reference): unroll the conv into its (d_out, d_in) matrix from basis images
  and take the largest singular value (exact; memory d_out * d_in).
- ``power x100``: 100 steps of power iteration on A^T A with conv / conv-transpose (what
  Lipschitz-regularisation code commonly does; its value is a lower estimate).
- ``reshaped kernel``: the spectral norm of the (C_out, C_in*k*k) kernel matrix, as
  ``torch.nn.utils.parametrizations.spectral_norm`` uses (a different quantity: the column
  "value / exact" shows how far it is from the operator norm).
- ``reluscope``: ``weight_ranks`` with ``conv_method='auto'``: the exact FFT spectrum for
  circular convolutions (Sedghi et al. 2019), Lanczos on A^T A otherwise.

    python benchmarks/bench_conv_norms.py
"""

from __future__ import annotations

import platform
import time

import torch
from torch import nn

from reluscope.measures.conv_operator import ConvOperator
from reluscope.measures.weight_ranks import _conv_op, weight_ranks

CASES = [  # (channels, kernel, image side, padding mode)
    (16, 3, 16, "zeros"),
    (16, 3, 16, "circular"),
    (32, 3, 24, "zeros"),
    (32, 3, 24, "circular"),
    (64, 3, 32, "circular"),
    (64, 3, 32, "zeros"),
]
DENSE_LIMIT = 5_000  # unrolled dimension above which the dense reference is skipped (SVD cost d^3)


def best_time(fn, repeats: int = 3):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def power_iteration(op: ConvOperator, steps: int = 100) -> float:
    x = torch.randn(1, op.d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        x = op.adjoint(op.apply(x))
        x = x / x.norm()
    return float(op.apply(x).norm())


def main() -> None:
    torch.set_num_threads(1)
    print(f"# conv operator norms, {platform.node()}, torch {torch.__version__}, 1 thread")
    header = (
        f"{'layer':<28}{'method':<18}{'time s':>10}{'value':>12}{'value/exact':>13}{'speed-up':>10}"
    )
    print(header)
    for channels, k, side, mode in CASES:
        conv = nn.Conv2d(channels, channels, k, padding=k // 2, padding_mode=mode).double()
        torch.manual_seed(0)
        nn.init.normal_(conv.weight, std=(channels * k * k) ** -0.5)
        op = ConvOperator(_conv_op(conv), (channels, side, side))
        kernel = conv.weight.detach()
        name = f"{channels}ch {k}x{k} {side}x{side} {mode}"
        rows = []
        if op.d_in <= DENSE_LIMIT:
            rows.append(
                (
                    "dense svd",
                    *best_time(lambda op=op: float(torch.linalg.svdvals(op.dense())[0]), 1),
                )
            )
        rows.append(("power x100", *best_time(lambda op=op: power_iteration(op))))
        rows.append(
            (
                "reshaped kernel",
                *best_time(
                    lambda w=kernel: float(torch.linalg.matrix_norm(w.reshape(len(w), -1), 2))
                ),
            )
        )
        rows.append(
            (
                "reluscope",
                *best_time(
                    lambda conv=conv, shape=op.input_shape: (
                        weight_ranks(conv, shape, conv_method="auto").layers[0].spectral_norm
                    )
                ),
            )
        )
        timed = {method: (seconds, value) for method, seconds, value in rows}
        exact = timed["dense svd" if "dense svd" in timed else "reluscope"][1]
        reference = timed["dense svd" if "dense svd" in timed else "power x100"][0]
        for method, seconds, value in rows:
            print(
                f"{name:<28}{method:<18}{seconds:>10.4f}{value:>12.6f}{value / exact:>13.6f}"
                f"{reference / seconds:>10.1f}"
            )
    print(
        "speed-up: the reference's time (dense svd, else power x100) / this method's time; "
        "value/exact: against the dense SVD, else against reluscope's (exact FFT or Lanczos)"
    )


if __name__ == "__main__":
    main()
