"""What post-training SVD truncation does to a classifier: accuracy and margins before and
after, and the relative weight error of each truncated layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.lowrank.layers import Ranks, truncate_svd, weight_layers
from reluscope.outputs import margins, predict
from reluscope.records import Records, record, tagged
from reluscope.validation import check_labels, check_number


@dataclass(frozen=True)
class TruncationEffect(Records):
    """Accuracy, mean margin and (with ``gamma``) margin risk of a model before and after SVD
    truncation, on the same points; ``agreement`` is the fraction of unchanged predictions;
    ``relative_error[layer]`` = ||W - W_r||_F / ||W||_F; ``ranks`` the ranks used.

    The margin of a point is f_y(x) - max_{j != y} f_j(x) ((2y - 1) f(x) for a single output),
    in output units; the margin risk is the fraction of points with margin <= gamma.
    """

    before: dict[str, float]
    after: dict[str, float]
    agreement: float
    relative_error: dict[str, float]
    ranks: dict[str, int]
    num_points: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`; exact, so stderr None): "<name>_before",
        "<name>_after", "agreement", and per layer "relative_error" and "rank", then the scalar
        params, num_points and ``tags``."""
        rows = [
            record(f"{k}_{when}", v)
            for when, values in (("before", self.before), ("after", self.after))
            for k, v in values.items()
        ]
        rows.append(record("agreement", self.agreement))
        for layer, err in self.relative_error.items():
            rows.append(record("relative_error", err, layer=layer))
            rows.append(record("rank", self.ranks[layer], layer=layer))
        return tagged(rows, dict(self.params, num_points=self.num_points), split, tags)


def _scores(out: Tensor, y: Tensor, gamma: float | None) -> tuple[dict[str, float], Tensor]:
    m = margins(out, y)
    pred = predict(out)
    scores = dict(accuracy=(pred == y).double().mean().item(), margin=m.double().mean().item())
    if gamma is not None:
        scores["margin_risk"] = (m <= gamma).double().mean().item()
    return scores, pred


@torch.no_grad()
def truncation_effect(
    model: nn.Module, x: Tensor, y: Tensor, rank: Ranks, *, gamma: float | None = None
) -> TruncationEffect:
    """Compare ``model`` with ``truncate_svd(model, rank)`` on inputs ``x`` (batch first) and
    int labels ``y`` (class indices of the outputs; 0/1 for a single output): accuracy, mean
    margin and, with ``gamma`` > 0, the margin risk, before and after; the fraction of points
    whose prediction is unchanged; each truncated layer's relative Frobenius error. Both
    models are called as they are (call ``model.eval()`` first for Dropout or BatchNorm).
    """
    truncated = truncate_svd(model, rank)
    if gamma is not None:
        gamma = check_number("gamma", gamma, minimum=0, strict=True)
    x = torch.as_tensor(x)
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    if len(x) == 0 or not torch.isfinite(x).all():
        raise InputError(
            f"x must hold at least one point and be finite, got shape {tuple(x.shape)}"
        )
    out = model(x).reshape(len(x), -1)
    out_r = truncated(x).reshape(len(x), -1)
    y = check_labels("y", y, len(x), max(out.shape[1], 2)).to(out.device)
    before, pred = _scores(out, y, gamma)
    after, pred_r = _scores(out_r, y, gamma)
    old, new = weight_layers(model), weight_layers(truncated)
    chosen = list(rank) if isinstance(rank, dict) else list(old)
    errors = {
        k: float(
            torch.linalg.matrix_norm(old[k].weight - new[k].weight)
            / torch.linalg.matrix_norm(old[k].weight)
        )
        for k in chosen
    }
    ranks = {k: rank[k] if isinstance(rank, dict) else rank for k in chosen}
    return TruncationEffect(
        before=before,
        after=after,
        agreement=(pred == pred_r).double().mean().item(),
        relative_error=errors,
        ranks=ranks,
        num_points=len(x),
        params=dict(gamma=gamma),
    )
