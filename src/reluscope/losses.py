"""Classification losses and predictions on a model's outputs of shape (batch, classes).

``"ce"`` is the cross-entropy of the softmax of the outputs (logits); ``"mse"`` is the squared
error between the outputs and the one-hot targets, averaged over the classes (torch's
``MSELoss`` on one-hot targets, as in the Omnigrok / Humayun et al. grokking setups). A model
with a single output is a binary classifier with labels 0 and 1: its output is the logit of
class 1 (binary cross-entropy for ``"ce"``, squared error against the label for ``"mse"``).

Internal to reluscope: shared by its packages, not part of the public API.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from reluscope.errors import InputError
from reluscope.outputs import predict
from reluscope.validation import check_choice

LOSSES = ("ce", "mse")


def check_targets(output: Tensor, y: Tensor, kind: str = "ce") -> None:
    """InputError unless ``kind`` is a known loss, ``output`` (the model's output on some of the
    points) has shape (batch, classes) and the labels ``y`` are integers in range for it."""
    check_choice("loss", kind, LOSSES)
    if output.dim() != 2:
        raise InputError(
            f"the model's output has shape {tuple(output.shape)}; expected (batch, classes)"
        )
    if y.dim() != 1 or y.is_floating_point() or y.is_complex():
        raise InputError(
            f"labels must be a 1-d integer tensor; got {y.dtype} of shape {tuple(y.shape)}"
        )
    classes = max(output.shape[1], 2)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise InputError(
            f"labels range from {int(y.min())} to {int(y.max())}, but the model has "
            f"{output.shape[1]} output(s): expected labels in [0, {classes - 1}]"
        )


def point_losses(output: Tensor, y: Tensor, kind: str = "ce") -> Tensor:
    """The loss of every point, shape (batch,)."""
    if output.shape[1] == 1:
        target = y.to(output.dtype)
        if kind == "ce":
            return F.binary_cross_entropy_with_logits(output[:, 0], target, reduction="none")
        return (output[:, 0] - target) ** 2
    if kind == "ce":
        return F.cross_entropy(output, y, reduction="none")
    target = F.one_hot(y, output.shape[1]).to(output.dtype)
    return ((output - target) ** 2).mean(dim=1)


def loss(output: Tensor, y: Tensor, kind: str = "ce") -> Tensor:
    """The mean loss over the batch (a scalar tensor)."""
    return point_losses(output, y, kind).mean()


def correct(output: Tensor, y: Tensor) -> Tensor:
    """Whether each point is classified correctly (bool, shape (batch,))."""
    return predict(output) == y.to(output.device)
