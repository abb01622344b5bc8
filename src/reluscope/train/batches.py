"""Which training points each step uses: a pure function of the seed and the step.

Internal to reluscope.train: not part of the public API.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reluscope.errors import InputError


class BatchSampler:
    """Mini-batches drawn without replacement within each epoch.

    Epoch e is a random permutation of the n points from a dedicated CPU ``torch.Generator``
    seeded with a hash of (``seed``, e); step s takes the (s mod k)-th block of ``batch_size``
    indices of epoch s // k, with k = n // batch_size blocks per epoch (the n mod batch_size
    points left over change from epoch to epoch). Since the batch of a step depends only on
    (seed, step), a resumed run draws the same batches with no generator state to save.
    ``batch_size`` is capped at n.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1:
            raise InputError("the training set is empty: expected at least one point")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.per_epoch = self.n // self.batch_size
        self._epoch: int | None = None
        self._perm: Tensor | None = None

    def permutation(self, epoch: int) -> Tensor:
        """The order of the points in ``epoch``."""
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        return torch.randperm(self.n, generator=gen)

    def indices(self, step: int) -> Tensor:
        """The indices of the points of the update from ``step`` to ``step + 1``."""
        epoch, block = divmod(step, self.per_epoch)
        if self._perm is None or epoch != self._epoch:
            self._epoch, self._perm = epoch, self.permutation(epoch)
        start = block * self.batch_size
        return self._perm[start : start + self.batch_size]
