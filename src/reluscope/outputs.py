"""What a classifier's outputs say: the predicted classes and the margins."""

from __future__ import annotations

import torch
from torch import Tensor


def predict(output: Tensor) -> Tensor:
    """Predicted labels of outputs (n, C): the arg-max output (the first on ties), or
    ``output > 0`` for a single output (n, 1)."""
    if output.shape[1] == 1:
        return (output[:, 0] > 0).long()
    return output.argmax(dim=1)


def margins(output: Tensor, labels: Tensor) -> Tensor:
    """Per point f_y - max_{j != y} f_j for outputs (n, C), or (2y - 1) f for (n, 1): positive
    where the point is classified correctly, in output units."""
    if output.shape[1] == 1:
        return (2 * labels - 1).to(output.dtype) * output[:, 0]
    own = output.gather(1, labels.unsqueeze(1))[:, 0]
    rest = output.scatter(1, labels.unsqueeze(1), -torch.inf).amax(dim=1)
    return own - rest
