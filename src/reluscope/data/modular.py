"""Modular arithmetic, the grokking task: one-hot pairs (a, b) labelled (a op b) mod p."""

from __future__ import annotations

import torch

from reluscope.data.dataset import Dataset, split
from reluscope.data.options import choice, positive_int, real
from reluscope.validation import invalid

OPS = ("add", "sub", "mul", "div")


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % k for k in range(2, int(p**0.5) + 1))


def modular(
    p: int = 97,
    op: str = "add",
    train_fraction: float = 0.5,
    part: str = "all",
    *,
    seed: int = 0,
) -> Dataset:
    """Every pair (a, b) in ``{0..p-1}^2`` (for ``div``: b != 0) as the concatenation of the
    one-hot codes of a and b (``2p`` features), labelled ``(a op b) mod p`` (p classes);
    ``div`` is ``a * b^(p-2) mod p`` and needs a prime p.

    ``part`` picks ``all`` pairs (a-major order), or the ``train`` / ``test`` part of
    ``split(all, train_fraction, seed)``.
    """
    p = positive_int(p, "p", "modular")
    op = choice(op, "op", "modular", OPS)
    part = choice(part, "part", "modular", ("all", "train", "test"))
    train_fraction = real(train_fraction, "train_fraction", "modular")
    if p < 2 or (op == "div" and not _is_prime(p)):
        raise invalid("modular: p", ">= 2 (and prime for op=div)", p)
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    if op == "div":
        a, b = a[b != 0], b[b != 0]
        inverse = torch.tensor([pow(k, p - 2, p) for k in range(p)])  # Fermat: b^(p-2) = 1/b
        labels = a * inverse[b] % p
    else:
        labels = {"add": a + b, "sub": a - b, "mul": a * b}[op] % p
    x = torch.cat([torch.nn.functional.one_hot(v, p) for v in (a, b)], dim=1).float()
    info = dict(p=p, op=op, classes=p, train_fraction=train_fraction, seed=seed)
    data = Dataset(x, labels, "modular", info)
    if part == "all":
        return data
    return split(data, train_fraction, seed)[part == "test"]
