"""Multiclass margins and the empirical margin risk every margin bound starts from.

The margin of an output v in R^C at label y is M(v, y) = v_y - max_{j != y} v_j (> 0 when the
point is classified correctly). The empirical margin risk at margin gamma is
R_gamma = (1/n) #{i : M(f(x_i), y_i) <= gamma}; it bounds the ramp loss
clip(1 - M / gamma, 0, 1) from above, which in turn bounds the 0-1 loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from reluscope import validation
from reluscope.bounds import checks
from reluscope.errors import InputError
from reluscope.outputs import margins


def check_labels(labels: Any, n: int, num_outputs: int) -> Tensor:
    """``labels`` as an int64 tensor of shape (n,), each in [0, num_outputs), with at least two
    distinct classes; InputError saying what is wrong otherwise."""
    if num_outputs < 2:
        raise InputError(
            f"margin bounds need a network with at least two outputs (one per class), got "
            f"{num_outputs}: for a binary task use two logits"
        )
    return validation.check_labels("labels", labels, n, num_outputs, min_distinct=2)


@dataclass(frozen=True)
class MarginStats:
    """The margins of a classifier on a sample at margin ``margin`` (gamma).

    ``risk`` = fraction of points with margin <= gamma (the empirical margin risk),
    ``ramp_risk`` = mean of clip(1 - M / gamma, 0, 1), ``error`` = fraction with margin <= 0
    (misclassified, ties counted as errors), plus the smallest and median margin.
    """

    margin: float
    risk: float
    ramp_risk: float
    error: float
    min_margin: float
    median_margin: float
    n: int

    @classmethod
    def from_margins(cls, values: Tensor, margin: float) -> MarginStats:
        gamma = checks.margin(margin)
        values = values.double()
        ramp = (1 - values / gamma).clamp(0, 1)
        return cls(
            margin=gamma,
            risk=float((values <= gamma).double().mean()),
            ramp_risk=float(ramp.mean()),
            error=float((values <= 0).double().mean()),
            min_margin=float(values.min()),
            median_margin=float(values.median()),
            n=len(values),
        )

    def to_record(self, **tags: Any) -> dict[str, Any]:
        return dict(tags, **self.__dict__)


def margin_risk(outputs: Tensor, labels: Any, margin: float) -> MarginStats:
    """The margin statistics (see :class:`MarginStats`) of ``outputs`` (n, C) at ``labels``."""
    outputs = torch.as_tensor(outputs)
    if outputs.dim() != 2:
        raise InputError(f"outputs must have shape (n, classes), got {tuple(outputs.shape)}")
    y = check_labels(labels, len(outputs), outputs.shape[1]).to(outputs.device)
    return MarginStats.from_margins(margins(outputs, y), margin)


def default_margin(outputs: Tensor, labels: Any, quantile: float = 0.1) -> float:
    """A data-dependent margin: the ``quantile`` of the positive margins (so that about that
    fraction of the correctly classified points has margin <= gamma). Choosing gamma from the
    data is covered by the post hoc bound's union bound over margins, not by the others."""
    y = check_labels(labels, len(outputs), outputs.shape[1]).to(outputs.device)
    values = margins(torch.as_tensor(outputs).double(), y)
    positive = values[values > 0]
    if len(positive) == 0:
        raise InputError("no point is classified correctly: there is no positive margin to use")
    return float(torch.quantile(positive, quantile))
