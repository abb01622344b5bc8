"""Local complexity (LC) of a piecewise-linear network: the density of linear-region boundaries
near the data, smoothed by Gaussian noise on the hidden biases (Patel & Montufar, ICML 2025).

By the co-area formula, with noise ``eps ~ N(0, sigma^2)`` added to every hidden neuron's
pre-activation (``noise_draws`` independent draws per data point; the output layer is not
perturbed),

    LC = sum over hidden neurons z of  E_x E_eps [ k_sigma(a_z(x)) * ||grad_x z(x)|| ]

the (n_0 - 1)-volume of the neuron zero sets (the region boundaries) weighted by the data
density, in units of 1 / (input length); for 1-D inputs uniform on [a, b] and sigma -> 0, the
number of breakpoints in [a, b] divided by b - a. ``grad_x z`` is the input gradient of the
neuron's pre-activation in the noisy network (activation pattern of the noisy earlier layers),
and:

- preset ``"theory"`` (default): ``centring="full"``, ``normalised=True``. The argument
  ``a_z = zbar_z = w_z . h~ + b_z`` is the full pre-activation with the neuron's own mean bias
  (its own noise is integrated out) computed from the earlier layers' noisy activations ``h~``;
  ``k_sigma(a) = exp(-a^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)``, the normalised Gaussian density.
- preset ``"paper_code"``: ``centring="no_bias"``, ``normalised=False``, exactly the authors'
  code: ``a_z = w_z . h~`` (the linear part of the op producing the pre-activation, bias
  removed) and ``k_sigma(a) = exp(-a^2 / (2 sigma^2))`` (no ``1/(sqrt(2 pi) sigma)``).

**Several breakpoints and max units.** A region boundary is the zero set of a *boundary
function* g (see :mod:`reluscope.nets.sites`): ``g = z - b_k`` for each breakpoint b_k of a
neuron's activation (ReLU6 and Hardtanh have two), and ``g = c_a - c_j`` for a max unit
(max pooling) whose leading candidate is a, for each other candidate j of its window. The
co-area formula applies to each g as to a ReLU neuron: inside a region g is affine with
gradient ``grad_x g`` (``grad z`` for a breakpoint, ``grad c_a - grad c_j`` for a tie), so the
(n_0 - 1)-volume of {g = 0} near x, smoothed by a kernel of width sigma in the value of g,
is ``E[k_sigma(g(x)) ||grad_x g(x)||]``, and

    LC = sum over sites, units and boundary functions g of  E_x E_eps [ k_sigma(g) ||grad_x g|| ].

For an activation, ``g = zbar - b_k`` with the neuron's own noise integrated out exactly as for
ReLU (its noise shifts every breakpoint of the neuron together). A max unit has no bias and gets
no noise of its own: its leader is taken at the noisy candidates (the noise of the layers
below), and ``k_sigma`` smooths its ties at the same width. Ties with a candidate other than the
leader are boundaries only where both lead, i.e. at g = 0, which is where the kernel weighs
them; ties between two non-leading candidates are no boundaries and are not counted. For
``centring="no_bias"`` the values are the bias-free ones (the breakpoints still subtracted).

For convolutions the noise is per neuron (per channel and position), not per channel bias.
The noise is drawn independently for every (point, draw) row, whereas the authors' code draws
one perturbation per batch: the expectation is the same, and independent draws make the
standard error valid. Sites named in ``layers`` (default: all) are summed; the noise is on all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.measures.batches import net_for
from reluscope.measures.gradnorms import (
    CHUNK_ELEMENTS,
    ExactGradientNorms,
    bias_noise,
    boundary_terms,
    noisy_pass,
    sketch_boundary_norms,
    sketch_probes,
)
from reluscope.measures.lipschitz import neuron_gradient_bounds
from reluscope.measures.meter import Meter
from reluscope.measures.results import MeasureResult
from reluscope.memory import check_fits
from reluscope.nets.pwl import PWLNet
from reluscope.validation import check_bool, check_choice, check_int, check_number

#: preset -> (centring, normalised)
PRESETS = {"theory": ("full", True), "paper_code": ("no_bias", False)}
METHODS = ("exact", "sketch")
CENTRINGS = ("full", "no_bias")
#: Offset of the probe random stream from the noise stream (both seeded by ``seed``).
_PROBE_STREAM = 0x5EED_0F_9B0BE5
NAME = "lc"
# running sums kept by the meter
_NEAR, _PAIRS, _TRUNCATION = "near_threshold", "pairs", "truncation"
_NORM_SUM, _PROBE_VAR = "gradient_norm_sum", "probe_variance"


def gaussian_kernel(a: Tensor, sigma: float, normalised: bool) -> Tensor:
    """``exp(-a^2 / (2 sigma^2))``, divided by ``sqrt(2 pi) sigma`` when ``normalised``."""
    k = torch.exp(-0.5 * (a / sigma) ** 2)
    return k / (math.sqrt(2 * math.pi) * sigma) if normalised else k


class LocalComplexityMeter(Meter):
    """Streaming local complexity: ``update(batch)``, ``compute()``, ``reset()``,
    ``merge(other)``.

    Options as in :func:`local_complexity`; the others are those of
    :class:`~reluscope.measures.meter.Meter` (``batch_size``: points per update step, default
    256). Noise (and, for the sketch, probes) are drawn from generators seeded by ``seed`` in
    the order the points arrive, so the result depends on the batching; ``reset()`` forgets
    the points seen and reseeds. Meters merged for a data-parallel run should be seeded apart.
    """

    name = NAME

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        sigma: float = 0.01,
        preset: str = "theory",
        centring: str | None = None,
        normalised: bool | None = None,
        method: str = "exact",
        noise_draws: int = 1,
        cutoff: float = 10.0,
        probes: int = 64,
        bounds: bool = False,
        seed: int = 0,
        batch_size: int | None = 256,
        **options: Any,
    ) -> None:
        check_choice("preset", preset, PRESETS)
        centring = PRESETS[preset][0] if centring is None else centring
        normalised = PRESETS[preset][1] if normalised is None else normalised
        self.sigma = check_number("sigma", sigma, minimum=0, strict=True)
        self.method = check_choice("method", method, METHODS)
        self.centring = check_choice("centring", centring, CENTRINGS)
        self.normalised = check_bool("normalised", normalised)
        self.bounds = check_bool("bounds", bounds)
        self.cutoff = check_number("cutoff (in units of sigma)", cutoff, minimum=0, strict=True)
        self.noise_draws = check_int("noise_draws", noise_draws, minimum=1)
        self.probes = check_int("probes", probes, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.preset = preset
        super().__init__(model, batch_size=batch_size, **options)
        if self.method == "sketch":  # one point's probe tangents must fit, whatever the chunking
            widest = max([self.net.input_dim] + [math.prod(n.shape) for n in self.net.nodes])
            check_fits(
                self.probes * (self.net.input_dim + 3 * widest) * self.net.dtype.itemsize,
                f"the sketch with probes={self.probes}",
                "use fewer probes",
            )
        self._row_bounds: dict[str, Tensor] | None = None
        self._exact_norms = ExactGradientNorms(self.net)
        self.reset()

    def options(self) -> dict[str, Any]:
        return (
            dict(
                sigma=self.sigma,
                preset=self.preset,
                centring=self.centring,
                normalised=self.normalised,
                method=self.method,
                noise_draws=self.noise_draws,
                cutoff=self.cutoff,
                probes=self.probes if self.method == "sketch" else None,
                bounds=self.bounds,
                seed=self.seed,
                device=str(self.net.device),
            )
            | super().options()
        )

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Forget every point seen and reseed the noise and probe generators."""
        super().reset()
        self._noise_gen = torch.Generator().manual_seed(self.seed)
        self._probe_gen = torch.Generator().manual_seed((self.seed + _PROBE_STREAM) % 2**63)

    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        """Per-point contributions (noise drawn from the meter's generators, which advance)."""
        per_row = self._rows(x)
        # average the noise draws of each point: the points are the independent samples
        per_point = per_row.reshape(self.noise_draws, len(x), -1).mean(dim=0).cpu()
        out = {site: per_point[:, i] for i, site in enumerate(self.site_names)}
        out[NAME] = per_point.sum(dim=1)
        return out

    def compute(self) -> MeasureResult:
        """The estimate over every point seen so far."""
        n = self._require_points(NAME)
        total = self.stats.total
        extra = {"near_threshold_fraction": total(_NEAR) / max(total(_PAIRS), 1)}
        if self.method == "exact":
            extra["truncation_bound"] = total(_TRUNCATION) / n
        else:
            probe_var = total(_PROBE_VAR)
            extra["probe_stderr"] = math.sqrt(probe_var) / n if self.probes > 1 else math.nan
        if self.bounds:
            peak = 1 / (math.sqrt(2 * math.pi) * self.sigma) if self.normalised else 1.0
            extra["gradient_norm_sum"] = total(_NORM_SUM) / n
            extra["upper_bound"] = peak * total(_NORM_SUM) / n
        names = self.site_names
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(NAME),
            stderr=self.stats.stderr(NAME),
            per_layer={s: self.stats.mean(s) for s in names},
            per_layer_stderr={s: self.stats.stderr(s) for s in names},
            params=self.options(),
            extra=extra,
            num_points=n,
        )

    # ---------------------------------------------------------------- estimation
    def _rows(self, x: Tensor) -> Tensor:
        """Per-row contributions (rows, layers), rows = noise draws x points (draw-major)."""
        net = self.net
        rows = x.repeat((self.noise_draws,) + (1,) * (x.dim() - 1))
        noise = bias_noise(net, len(rows), self.sigma, self._noise_gen)
        widest = max(
            [net.input_dim]
            + [math.prod(n.shape) for n in net.nodes]
            + [s.pattern_width for s in net.sites]
        )
        k = self.probes if self.method == "sketch" else 1
        step = max(1, CHUNK_ELEMENTS // (k * widest))
        parts = []
        for i in range(0, len(rows), step):
            chunk = {s: v[i : i + step] for s, v in noise.items()}
            parts.append(self._chunk(rows[i : i + step], chunk))
        return torch.cat(parts)

    def _chunk(self, x: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """Per-row contributions (rows, layers) of one chunk of rows."""
        sketch = self.method == "sketch"
        rec = noisy_pass(
            self.net,
            x,
            noise,
            self.site_names,
            bias_free=self.centring == "no_bias",
            probes=sketch_probes(self.net, len(x), self.probes, self._probe_gen)
            if sketch
            else None,
        )
        parts = []
        for site in self.site_names:
            arg, p, q = boundary_terms(self.net, site, rec, self.centring)
            weight = gaussian_kernel(arg, self.sigma, self.normalised)
            near = arg.abs() <= self.cutoff * self.sigma
            self.stats.add_sum(_NEAR, int(near.sum()))
            self.stats.add_sum(_PAIRS, int(torch.isfinite(arg).sum()))
            if sketch:
                norms = sketch_boundary_norms(rec.tangents[site], p, q)
                parts.append(self._sketch_site(norms, weight))
            else:
                parts.append(self._exact_site(site, rec.states, weight, near, p, q))
        if not sketch:
            return torch.stack(parts, dim=1)
        per_probe = torch.stack(parts, dim=2)  # (rows, probes, layers)
        # the probe variance of a row's estimate: the sample variance over the probes, over k
        probe_var = per_probe.sum(dim=2).var(dim=1).sum() / self.probes
        self.stats.add_sum(_PROBE_VAR, float(probe_var) / self.noise_draws**2)
        return per_probe.mean(dim=1)

    def _sketch_site(self, norms: Tensor, weight: Tensor) -> Tensor:
        """Each probe's estimate of a site's contribution per row: (rows, probes)."""
        if self.bounds:
            finite = torch.isfinite(weight) & (weight >= 0)
            counted = norms * finite.unsqueeze(1)
            norm_sum = float(counted.sum(dtype=torch.float64)) / self.probes / self.noise_draws
            self.stats.add_sum(_NORM_SUM, norm_sum)
        return torch.einsum("rkn,rn->rk", norms, weight).to(torch.float64)

    def _exact_site(
        self,
        site: str,
        states: dict[str, Tensor],
        weight: Tensor,
        near: Tensor,
        p: Tensor,
        q: Tensor,
    ) -> Tensor:
        """A site's contribution per row from the exact norms of its near-threshold boundary
        functions (a neuron at a breakpoint, a max unit's tie)."""
        r, i = near.nonzero(as_tuple=True)
        norms = self._exact_norms(site, states, r, p[r, i], q[r, i])
        out = torch.zeros(len(weight), dtype=torch.float64, device=weight.device)
        out.index_add_(0, r, (weight[r, i] * norms).to(torch.float64))
        if not bool(near.all()):
            bound = self._neuron_bounds()[site].to(device=weight.device, dtype=weight.dtype)
            padded = torch.cat([bound, bound.new_zeros(1)])  # q = -1: no second term
            boundary_bound = padded[p] + padded[q]
            neglected = (weight * boundary_bound * ~near).sum(dtype=torch.float64)
            self.stats.add_sum(_TRUNCATION, float(neglected) / self.noise_draws)
        if self.bounds:
            r, i = torch.isfinite(weight).nonzero(as_tuple=True)
            norms = self._exact_norms(site, states, r, p[r, i], q[r, i])
            self.stats.add_sum(_NORM_SUM, float(norms.sum(dtype=torch.float64)) / self.noise_draws)
        return out

    def _neuron_bounds(self) -> dict[str, Tensor]:
        """Flattened upper bounds of every neuron's gradient norm, computed once."""
        if self._row_bounds is None:
            bounds = neuron_gradient_bounds(self.net)
            self._row_bounds = {s: b.reshape(-1) for s, b in bounds.items()}
        return self._row_bounds


def local_complexity(
    model: nn.Module | PWLNet,
    data: Any,
    *,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> MeasureResult:
    """The local complexity of ``model`` on ``data`` (see the module docstring for the formula).

    ``model`` is a torch module (traced with ``input_shape``; inferred for MLPs and from a data
    tensor) or a PWLNet; ``data`` a tensor (batch, *input_shape) or an iterable of batches (a
    DataLoader yielding tensors, tuples with the inputs first or dicts, see ``input_key``),
    processed ``batch_size`` points at a time (default 256).

    The keywords in ``options`` go to :class:`LocalComplexityMeter` (whose signature gives
    their defaults): ``sigma`` the noise standard deviation
    (input-to-pre-activation units); ``preset`` ``"theory"`` or ``"paper_code"``, overridden by
    ``centring`` (``"full"`` or ``"no_bias"``) and ``normalised``; ``noise_draws`` noise draws
    per point; ``layers`` the site names to sum (default all); ``seed`` seeds the noise and the
    probes; ``dtype`` casts the network (e.g. ``torch.float64``).

    ``method="exact"``: gradient norms, computed exactly by reverse sweeps, only for the
    (point, neuron) pairs with ``|a_z| <= cutoff * sigma``; the cost scales with the number of
    such near-threshold neurons, not with the input dimension. ``extra["truncation_bound"]``
    bounds what the cutoff left out: the mean over points of the sum over the neglected neurons
    of ``k_sigma(a_z)`` times an upper bound of ``||grad_x z||`` (weight-row norms times
    Lipschitz bounds of the layers below, see :mod:`reluscope.measures.lipschitz`; for a max
    unit's tie, the sum of the two candidates' bounds).

    ``method="sketch"``: every neuron's gradient norm is estimated without bias from ``probes``
    Gaussian random-probe JVPs; the standard error then includes the probe noise, and
    ``extra["probe_stderr"]`` is the standard error due to the probes alone (from the spread of
    the single-probe estimates), i.e. of the difference from the exact method on the same
    points and noise.

    The result (name ``"lc"``): ``value``, ``stderr`` (standard error of the mean over the
    points, each point averaged over its noise draws), ``per_layer`` contributions with their
    ``per_layer_stderr``, ``params``, and ``extra``: ``near_threshold_fraction`` (the fraction of
    (point, draw, neuron) triples with ``|a_z| <= cutoff * sigma``), ``truncation_bound`` (exact
    method) and, with ``bounds=True``, ``gradient_norm_sum`` = ``E sum_z ||grad_x z||`` and
    ``upper_bound`` = peak kernel value times it (an upper bound of LC; expensive for the exact
    method, which then needs every neuron's gradient).
    """
    net = net_for(model, data, input_shape, dtype)
    return LocalComplexityMeter(net, **options).update_from(data).compute()
