"""Local rank (Patel & Montufar 2025): per site, the expected numerical rank of the input
Jacobian of its pre-activation, LR_l = E_x rank(J_l(x)), J_l(x) = d z^(l)(x) / dx.

The rank is a number of dimensions: that of the feature manifold x -> z^(l)(x) near x. It counts
the singular values of J_l(x) above max(atol, rtol * largest singular value), as
``torch.linalg.matrix_rank`` does; the authors' code uses atol = 0.01, rtol = 0. It is at most
min(input_dim, site width, rank of every weight before the site).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.linalg import singular_values
from reluscope.measures.batches import net_for
from reluscope.measures.meter import Meter
from reluscope.measures.results import MeasureResult
from reluscope.nets.pwl import PWLNet
from reluscope.validation import check_number

NAME = "local_rank"


class LocalRankMeter(Meter):
    """Streaming local rank: ``update(batch)``, ``compute()``, ``reset()``, ``merge(other)``.

    See :func:`local_rank` for the options; the others are those of
    :class:`~reluscope.measures.meter.Meter`. ``batch_size`` is the number of points per
    tangent pass (default: sized to the network, see
    :func:`~reluscope.measures.jacobians.default_chunk_size`).
    """

    name = NAME

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        atol: float = 0.01,
        rtol: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self.atol = check_number("atol", atol, minimum=0)
        self.rtol = check_number("rtol", rtol, minimum=0)

    def options(self) -> dict[str, Any]:
        return dict(atol=self.atol, rtol=self.rtol) | super().options()

    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        jacs = self.net.jacobian_pass(x, self.site_names).site_jacobians
        out = {}
        for name in self.site_names:
            s = singular_values(jacs[name])
            tol = (self.rtol * s[..., :1]).clamp_min(self.atol)
            out[name] = (s > tol).sum(dim=-1).to("cpu", torch.float64)
        out[NAME] = torch.stack(list(out.values())).sum(dim=0)
        return out

    def compute(self) -> MeasureResult:
        """Mean rank per site and of their sum over the points so far, with standard errors."""
        n = self._require_points(NAME)
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(NAME),
            stderr=self.stats.stderr(NAME),
            per_layer={s: self.stats.mean(s) for s in self.site_names},
            per_layer_stderr={s: self.stats.stderr(s) for s in self.site_names},
            params=self.options(),
            num_points=n,
        )


def local_rank(
    model: nn.Module | PWLNet,
    data: Any,
    *,
    atol: float = 0.01,
    rtol: float = 0.0,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> MeasureResult:
    """Expected numerical rank of the input Jacobian of each site's pre-activation over ``data``.

    ``atol`` (absolute, in the Jacobian's units: pre-activation units per input unit) and
    ``rtol`` (relative to the largest singular value) set the rank tolerance
    max(atol, rtol * sigma_max). ``data`` is a tensor (batch first) or an iterable of batches (a
    DataLoader of tensors, tuples or dicts). ``options`` are the keywords of
    :class:`~reluscope.measures.meter.Meter`: ``layers`` picks the sites (default all),
    ``input_key`` the inputs of each batch; ``batch_size`` points share a tangent pass (default:
    as many as keep the largest tangent near 2**26 numbers); ``input_shape`` (default: from the
    first Linear layer or a data tensor) traces a module. Device and dtype follow the model
    unless ``dtype`` is given.

    Returns a MeasureResult named "local_rank": ``per_layer`` is every chosen site's expected
    rank (in dimensions, with standard errors over points) and ``value`` the expected sum of the
    chosen sites' ranks.
    """
    net = net_for(model, data, input_shape, dtype)
    meter = LocalRankMeter(net, atol=atol, rtol=rtol, **options)
    return meter.update_from(data).compute()
