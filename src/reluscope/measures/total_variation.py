"""Total variation TV(f; p) = E_{x~p} ||grad_x f(x)|| (Patel & Montufar 2025), and the
quantities of its bound by local complexity.

Which f is explicit (``output``), with gradients taken in output units per input unit:
- "logits": the whole output; the norm is the Frobenius norm of the input Jacobian J_f(x).
- an int k: output k (flattened index); the Euclidean norm of its gradient.
- "predicted": the output with the largest value at x (the first one on ties).
- "norm": ||f(x)||_2, whose gradient is J_f(x)^T f(x) / ||f(x)||_2 (0 where f(x) = 0).

The bound (spec section 2 item 4, section 5 item 9). For each site l in ``layers`` the output
factors as f = g_l o z^(l), so J_f(x) = Dg_l J_l(x) and ||J_f(x)||_op <= Lip(g_l) ||J_l(x)||_op.
Averaging over the L chosen sites and taking expectations:
    E ||J_f||_op <= max_l Lip(g_l) * (1/L) * sum_l E ||J_l(x)||_op.
The scalar options have ||grad|| <= ||J_f||_op; for "logits" ||J_f||_F <= sqrt(rank J_f)
||J_f||_op <= sqrt(min(output_dim, input_dim)) ||J_f||_op, so the bound reported as ``tv_bound``
carries that factor for "logits" and none otherwise. Lip(g_l) is the upper bound of
:func:`reluscope.measures.lipschitz.lipschitz_from_sites` (sums over paths of products of
operator norms). The factorisation needs every path from the input to the output to pass through
the site's pre-activation: true for every site of an MLP or a plain CNN, but not for a site
inside a residual branch, which the bound therefore leaves out (see :func:`factoring_sites`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError, did_you_mean
from reluscope.linalg import spectral_norm
from reluscope.measures.batches import net_for
from reluscope.measures.lipschitz import lipschitz_from_sites
from reluscope.measures.meter import Meter
from reluscope.measures.results import MeasureResult
from reluscope.nets.checks import check_finite_outputs
from reluscope.nets.pwl import INPUT, Node, PWLNet, Site
from reluscope.validation import check_bool, check_number

NAME = "tv"
OUTPUTS = ("logits", "predicted", "norm")
_BAD = "bad_neurons"
_OP = "op_norm:"


def c_eta(eta: float, sigma: float) -> float:
    """c^eta_bias = exp(-eta^2 / (2 sigma^2)) / (sqrt(2 pi) sigma): the density of the bias
    noise N(0, sigma^2) at distance eta (per pre-activation unit). It underflows to 0 when
    eta / sigma is above about 38."""
    return math.exp(-(eta**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def output_gradient_norm(output: str | int, value: Tensor, jac: Tensor) -> Tensor:
    """Per point ||grad_x f(x)|| for the ``output`` option, from the output values (batch, out)
    and the output Jacobian (batch, out, in)."""
    if output == "logits":
        return torch.linalg.matrix_norm(jac)
    if output == "norm":
        norm = value.norm(dim=1, keepdim=True)
        unit = torch.where(norm > 0, value / norm.clamp_min(torch.finfo(value.dtype).tiny), 0.0)
        return torch.einsum("bo,boi->bi", unit, jac).norm(dim=1)
    if output == "predicted":
        k = value.argmax(dim=1)
    elif isinstance(output, int):
        k = torch.full((len(value),), output, device=value.device)
    else:
        raise InputError(
            f"unknown output {output!r}; expected one of {list(OUTPUTS)} or an int index"
            f"{did_you_mean(output, OUTPUTS)}"
        )
    return jac[torch.arange(len(jac), device=jac.device), k].norm(dim=1)


def factoring_sites(net: PWLNet) -> list[Site]:
    """The sites through whose pre-activation every path from the input to the output passes,
    so that the output is a function g_l of the pre-activation alone."""
    out = []
    for site in net.sites:
        src = net.node(site.name).inputs[0]
        reached = {INPUT} if src != INPUT else set()
        for n in net.nodes:  # in execution (topological) order
            if n.name != src and any(a in reached for a in n.inputs):
                reached.add(n.name)
        if net.output not in reached:
            out.append(site)
    return out


def bad_neurons(net: PWLNet, preactivations: dict[str, Tensor], counted: Iterable[str]) -> Tensor:
    """Per point, the number of neurons of the ``counted`` sites that are not good at the point.

    A neuron is good when it can bend the function: some path from the input reaches its
    pre-activation without crossing a *blocking* site, one whose local linear map is zero at the
    point (:meth:`~reluscope.nets.sites.SiteOp.blocks`: a ReLU site with every neuron inactive,
    a ReLU6/Hardtanh site with every neuron on one of its two flat ends; a leaky ReLU, a PReLU
    with nonzero slopes or a max-pooling site never blocks). In a sequential network these are
    the neurons of the sites after the first blocking one; a residual connection around a
    blocking site keeps the neurons after it good. ``preactivations`` holds every site's
    pre-activation, flattened (batch, site.size), as :meth:`PWLNet.jacobian_pass` gives them.
    """
    counted = set(counted)
    first = next(iter(preactivations.values()))
    total = torch.zeros(len(first), dtype=torch.float64, device=first.device)
    sites = {s.name: s for s in net.sites}

    def step(node: Node, ins: list[Tensor]) -> Tensor:
        """Whether every path from the input to the node's value crosses a blocking site."""
        cut = torch.stack(ins).all(dim=0)
        site = sites.get(node.name)
        if site is None:
            return cut
        if site.name in counted:
            total.add_(cut.to(torch.float64) * site.size)
        z = preactivations[site.name].reshape((len(first),) + site.shape)
        return cut | site.op.blocks(z)

    zero = torch.zeros(len(first), dtype=torch.bool, device=first.device)
    net.interpret({INPUT: zero}, step)
    return total


class TotalVariationMeter(Meter):
    """Streaming total variation and LC-TV bound quantities: ``update(batch)``, ``compute()``,
    ``reset()``, ``merge(other)``. See :func:`total_variation` for the options; the others are
    those of :class:`~reluscope.measures.meter.Meter`."""

    name = NAME

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        output: str | int = "logits",
        eta: float = 1.0,
        sigma: float = 0.01,
        bound: bool = True,
        layers: Iterable[str] | str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, layers=layers, **options)
        self.output = _check_output(output, self.net.output_dim)
        self.eta = check_number("eta", eta, minimum=0, strict=True)
        self.sigma = check_number("sigma", sigma, minimum=0, strict=True)
        self.bound = check_bool("bound", bound)
        if bound:
            self.sites = _bound_sites(self.net, self.sites, layers is None)
        self._lipschitz: dict[str, float] | None = None

    def options(self) -> dict[str, Any]:
        return (
            dict(output=self.output, bound=self.bound, eta=self.eta, sigma=self.sigma)
            | super().options()
        )

    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        names = self.site_names
        p = self.net.jacobian_pass(x, names, output=True)
        assert p.output is not None and p.output_jacobian is not None  # output=True gives both
        check_finite_outputs(p.output)
        out = {NAME: output_gradient_norm(self.output, p.output, p.output_jacobian)}
        for name in names:
            out[name] = torch.linalg.matrix_norm(p.site_jacobians[name])
            if self.bound:
                out[_OP + name] = spectral_norm(p.site_jacobians[name])
        if self.bound:
            out[_BAD] = bad_neurons(self.net, p.preactivations, names)
        return out

    def compute(self) -> MeasureResult:
        """TV over the points so far (with its standard error), each site's TV in
        ``per_layer`` and, with ``bound``, the bound's quantities in ``extra`` and
        ``layer_extra``."""
        n = self._require_points(NAME)
        names = self.site_names
        extra, layer_extra = self._bound_quantities(names) if self.bound else ({}, {})
        return MeasureResult(
            name=NAME,
            value=self.stats.mean(NAME),
            stderr=self.stats.stderr(NAME),
            per_layer={name: self.stats.mean(name) for name in names},
            per_layer_stderr={name: self.stats.stderr(name) for name in names},
            params=self.options(),
            extra=extra,
            layer_extra=layer_extra,
            num_points=n,
        )

    def _bound_quantities(
        self, names: list[str]
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        if self._lipschitz is None:  # the net is a fixed snapshot: compute once
            self._lipschitz = lipschitz_from_sites(self.net)
        lips = {name: float(self._lipschitz[name]) for name in names}
        op_norms = {name: self.stats.mean(_OP + name) for name in names}
        lip_max = max(lips.values())
        factor = 1.0
        if self.output == "logits":
            factor = math.sqrt(min(self.net.output_dim, self.net.input_dim))
        extra = dict(
            lipschitz_above=lip_max,
            tv_bound=factor * lip_max * sum(op_norms.values()) / len(names),
            c_eta=c_eta(self.eta, self.sigma),
            B=self.stats.mean(_BAD),
        )
        return extra, {"lipschitz": lips, "jacobian_op_norm": op_norms}


def _bound_sites(net: PWLNet, chosen: list[Site], default: bool) -> list[Site]:
    """The chosen sites that the output factors through (all of them unless ``default``), or
    an InputError naming the others."""
    ok = [s.name for s in factoring_sites(net)]
    if default and ok:
        return [s for s in chosen if s.name in ok]
    others = [s.name for s in chosen if s.name not in ok]
    if others:
        raise InputError(
            f"the TV bound needs sites that every input-output path passes through; {others} "
            f"lie on residual branches. Choose layers among {ok}, or pass bound=False"
        )
    return chosen


def _check_output(output: str | int, output_dim: int) -> str | int:
    """``output`` if it is one of OUTPUTS or an output index in range, else an InputError."""
    if isinstance(output, str) and output in OUTPUTS:
        return output
    if isinstance(output, int) and not isinstance(output, bool):
        if 0 <= output < output_dim:
            return output
        raise InputError(
            f"output={output} is not an output index: the network has {output_dim} outputs, "
            f"expected 0 <= output < {output_dim}"
        )
    raise InputError(
        f"unknown output {output!r}; expected one of {list(OUTPUTS)} or an int index"
        f"{did_you_mean(output, OUTPUTS)}"
    )


def total_variation(
    model: nn.Module | PWLNet,
    data: Any,
    *,
    output: str | int = "logits",
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> MeasureResult:
    """TV = E_x ||grad_x f(x)|| over ``data``, for the ``output`` option ("logits", an int index,
    "predicted" or "norm"; see the module docstring), in output units per input unit.

    ``per_layer[site]`` = E_x ||J_l(x)||_F, the total variation of the site's pre-activation
    (pre-activation units per input unit), for the sites in ``layers``.

    With ``bound`` (default) ``extra`` and ``layer_extra`` hold the quantities of the LC-TV
    bound, over the sites in ``layers`` (default: every site the output factors through, see
    :func:`factoring_sites`; all sites of an MLP or a plain CNN, the sites outside residual
    branches of a ResNet):
    - ``layer_extra["lipschitz"][site]``: Lip(g_l), an upper bound of the Lipschitz constant of
      the map from the site's pre-activation to the output; "lipschitz_above" = max over sites.
    - ``layer_extra["jacobian_op_norm"][site]``: E_x ||J_l(x)||_op, the mean spectral norm of
      the input Jacobian of the site's pre-activation.
    - "tv_bound" = max_l Lip(g_l) * (1/L) * sum_l E_x ||J_l(x)||_op, times
      sqrt(min(output_dim, input_dim)) for "logits" (Frobenius <= sqrt(rank) * spectral): an
      upper bound of ``value`` for sequential networks.
    - "c_eta" = exp(-eta^2 / (2 sigma^2)) / (sqrt(2 pi) sigma), the constant of the LC bound.
    - "B": the mean number of neurons (of the chosen sites) that are not good at x: every path
      from the input to them crosses a site whose local linear map is zero at x (a ReLU site
      with all neurons inactive, a ReLU6/Hardtanh site with all neurons on flat ends; leaky
      ReLU, PReLU and max pooling never block). See :func:`bad_neurons`.

    ``data`` is a tensor (batch first) or an iterable of batches (a DataLoader of tensors, tuples
    or dicts). ``options`` are the keywords of :class:`TotalVariationMeter`: ``eta`` (default
    1.0) and ``sigma`` (default 0.01) of "c_eta", ``bound``, ``layers``, and those of
    :class:`~reluscope.measures.meter.Meter`: ``input_key`` picks the inputs of each batch;
    ``batch_size`` points share a tangent pass (default: as many as keep the largest tangent near
    2**26 numbers); ``input_shape`` is needed to trace a module whose first layer is not Linear.
    Device and dtype follow the model unless ``dtype`` is given. ``bound=False`` skips the bound
    (and its cost: spectral norms of every site's Jacobian, operator norms of every layer).
    Returns a MeasureResult named "tv" with the standard error over points.
    """
    net = net_for(model, data, input_shape, dtype)
    return TotalVariationMeter(net, output=output, **options).update_from(data).compute()
