"""Local rank (Patel & Montufar 2025): per site, the expected numerical rank of the input
Jacobian of its pre-activation, LR_l = E_x rank(J_l(x)), J_l(x) = d z^(l)(x) / dx.

The rank is a number of dimensions: that of the feature manifold x -> z^(l)(x) near x. It counts
the singular values of J_l(x) above max(atol, rtol * largest singular value), as
``torch.linalg.matrix_rank`` does; the authors' code uses atol = 0.01, rtol = 0. It is at most
min(input_dim, site width, rank of every weight before the site).
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from reluscope.measures.jacobians import singular_values
from reluscope.measures.meter import Meter
from reluscope.measures.options import check_nonnegative
from reluscope.measures.results import MeasureResult
from reluscope.nets.pwl import PWLNet

NAME = "local_rank"


class LocalRankMeter(Meter):
    """Streaming local rank: ``update(batch)`` then ``compute()``.

    See :func:`local_rank` for the arguments; ``options`` are the keywords of
    :class:`~reluscope.measures.meter.Meter`. ``batch_size`` is the number of points per
    tangent pass (default: sized to the network, see
    :func:`~reluscope.measures.jacobians.default_chunk_size`).
    """

    def __init__(
        self, model: nn.Module | PWLNet, atol: float = 0.01, rtol: float = 0.0, **options
    ) -> None:
        super().__init__(model, **options)
        self.atol = check_nonnegative("atol", atol)
        self.rtol = check_nonnegative("rtol", rtol)

    def _accumulate(self, x: Tensor) -> None:
        names = [s.name for s in self.sites]
        jacs = self.net.jacobian_pass(x, names).site_jacobians
        for name in names:
            s = singular_values(jacs[name])
            tol = (self.rtol * s[..., :1]).clamp_min(self.atol)
            self.stats.add(name, (s > tol).sum(dim=-1))

    def compute(self) -> MeasureResult:
        """Mean rank per site over the points so far, with standard errors."""
        n = self._require_points(self.sites[-1].name)
        last = self.sites[-1].name
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(last),
            stderr=self.stats.stderr(last),
            per_layer={s.name: self.stats.mean(s.name) for s in self.sites},
            per_layer_stderr={s.name: self.stats.stderr(s.name) for s in self.sites},
            params=dict(
                atol=self.atol,
                rtol=self.rtol,
                layers=[s.name for s in self.sites],
                value_layer=last,
                dtype=str(self.net.dtype),
            ),
            num_points=n,
        )


def local_rank(
    model: nn.Module | PWLNet, data, atol: float = 0.01, rtol: float = 0.0, **options
) -> MeasureResult:
    """Expected numerical rank of the input Jacobian of each site's pre-activation over ``data``.

    ``atol`` (absolute, in the Jacobian's units: pre-activation units per input unit) and
    ``rtol`` (relative to the largest singular value) set the rank tolerance
    max(atol, rtol * sigma_max). ``data`` is a tensor (batch first) or an iterable of batches (a
    DataLoader of tensors, tuples or dicts). ``options`` are the keywords of
    :class:`~reluscope.measures.meter.Meter`: ``layers`` picks the sites (default all),
    ``input_key`` the inputs of each batch; ``batch_size`` points share a tangent pass (default:
    as many as keep the largest tangent near 2**26 numbers); ``input_shape`` is needed to trace a
    module whose first layer is not Linear. Device and dtype follow the model unless ``dtype`` is
    given.

    Returns a MeasureResult named "local_rank": ``per_layer`` is every chosen site's expected
    rank (with standard errors over points) and ``value`` that of the LAST chosen site (named in
    ``params["value_layer"]``).
    """
    return LocalRankMeter(model, atol, rtol, **options).update_from(data).compute()
