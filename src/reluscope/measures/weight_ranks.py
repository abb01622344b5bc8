"""Norms and ranks of every weight layer: what norm- and rank-based generalisation bounds use.

For each Linear, Conv1d and Conv2d layer, in the order the network applies them:

* spectral norm ||W||_2, Frobenius norm ||W||_F, ||W^T||_{2,1} (the sum over output units of
  the Euclidean norm of their incoming weights, i.e. of the rows of W), nuclear norm;
* exact rank (singular values above sigma_1 * max(rows, cols) * eps of the weight's dtype: the
  default tolerance of numpy's and torch's ``matrix_rank``), numerical rank (singular values
  above max(atol, rtol * sigma_1)), stable rank ||W||_F^2 / ||W||_2^2, effective rank
  exp(H(p)) with p = sigma / sum(sigma) (Roy & Vetterli 2007), and the singular values.

A convolution is reported twice. ``norm_kind='conv operator'``: the numbers of the convolution
as the linear map it is on the given input shape (its unrolled matrix, with the layer's stride,
padding, dilation and groups), which is what enters the bounds. ``norm_kind='reshaped kernel'``:
the numbers of the kernel reshaped to (C_out, C_in/groups * prod(kernel)), a common but
different proxy. Everything is computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.measures.conv_operator import ConvOperator
from reluscope.nets.checks import check_module, check_tensors
from reluscope.nets.ops import ConvOp, LinearOp
from reluscope.nets.pwl import INPUT, PWLNet
from reluscope.nets.trace import as_pwlnet
from reluscope.records import OUTPUT_LAYER, Records, record, tagged
from reluscope.validation import (
    check_choice,
    check_int,
    check_number,
    check_shape,
    invalid,
)

#: Default relative tolerance of the numerical rank when neither rtol nor atol is given.
DEFAULT_RTOL = 1e-3
CONV_METHODS = ("auto", "fft", "dense", "lanczos")
SUPPORTED_LAYERS = "Linear, Conv1d, Conv2d"
_SCALARS = (
    "spectral_norm",
    "frobenius_norm",
    "l21_norm",
    "nuclear_norm",
    "rank",
    "numerical_rank",
    "stable_rank",
    "effective_rank",
)


@dataclass(frozen=True)
class LayerStats:
    """Norms and ranks of one matrix: a Linear weight, a convolution operator or a reshaped
    kernel (``norm_kind``), with ``shape`` its (rows, columns) = (outputs, inputs).

    ``layer`` names the layer as the records of every result do (:mod:`reluscope.records`):
    the neuron site whose pre-activation the layer produces, "output" for the layer producing
    the network's output, or the module path when the layer feeds neither directly; ``path``
    is the layer's module path.

    ``method`` says how the singular values were found: 'svd' (of the matrix), 'fft' (exact,
    circular convolution), 'dense svd' (of the unrolled matrix) or 'lanczos' (spectral
    norm only: then nuclear norm, ranks, effective rank and spectrum are None). Frobenius and
    (2,1) norms are always exact.
    """

    layer: str
    path: str
    kind: str
    norm_kind: str
    method: str
    shape: tuple[int, int]
    spectral_norm: float
    frobenius_norm: float
    l21_norm: float
    nuclear_norm: float | None
    rank: int | None
    numerical_rank: int | None
    stable_rank: float
    effective_rank: float | None
    spectrum: tuple[float, ...] | None = field(repr=False)
    has_bias: bool = False


@dataclass(frozen=True)
class WeightRanks(Records):
    """Per-layer norms and ranks of a network (see the module docstring), and the options used.

    ``layers`` holds one entry per Linear layer and two per convolution (operator first, then
    reshaped kernel), in the order the network applies them.
    """

    layers: tuple[LayerStats, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def operators(self) -> tuple[LayerStats, ...]:
        """The entries of the layers' true linear maps (Linear matrices and conv operators)."""
        return tuple(s for s in self.layers if s.norm_kind != "reshaped kernel")

    def get(self, layer: str, norm_kind: str | None = None) -> LayerStats:
        """The entry of ``layer`` (its site name, "output" or module path; its operator unless
        ``norm_kind`` says otherwise)."""
        for s in self.layers if norm_kind else self.operators:
            if layer in (s.layer, s.path) and (norm_kind is None or s.norm_kind == norm_kind):
                return s
        names = sorted({(s.layer, s.norm_kind) for s in self.layers})
        raise InputError(f"no entry for layer {layer!r} ({norm_kind or 'operator'}); have {names}")

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (:mod:`reluscope.records`), one per scalar of each entry (metric
        "spectral_norm", "rank", ...; exact, so stderr None; a quantity that was not computed
        has value None), with the columns path, kind, norm_kind and method, the scalar params
        and ``tags``. ``split`` is None: weights involve no data."""
        rows = [
            record(
                metric,
                getattr(s, metric),
                layer=s.layer,
                path=s.path,
                kind=s.kind,
                norm_kind=s.norm_kind,
                method=s.method,
            )
            for s in self.layers
            for metric in _SCALARS
        ]
        return tagged(rows, self.params, split, tags)

    def summary(self):
        """A wide pandas DataFrame: one row per entry, one column per field but the spectrum."""
        import pandas as pd

        names = [f.name for f in fields(LayerStats) if f.name != "spectrum"]
        return pd.DataFrame([{n: getattr(s, n) for n in names} for s in self.layers])

    def spectrum_records(self, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (layer, norm_kind, index, value) of every computed singular value."""
        return [
            dict(tags, layer=s.layer, norm_kind=s.norm_kind, index=i, value=v)
            for s in self.layers
            if s.spectrum is not None
            for i, v in enumerate(s.spectrum)
        ]


# --------------------------------------------------------------------------- one matrix
def rank_thresholds(
    sigma_max: float, shape: Sequence[int], eps: float, rtol: float | None, atol: float | None
) -> tuple[float, float]:
    """(exact-rank tolerance, numerical-rank tolerance) for a matrix of ``shape`` whose largest
    singular value is ``sigma_max``: sigma_max * max(shape) * eps, and max(atol, rtol *
    sigma_max) with rtol = DEFAULT_RTOL when both are None (a missing one counts as 0)."""
    if rtol is None and atol is None:
        rtol = DEFAULT_RTOL
    return sigma_max * max(shape) * eps, max(atol or 0.0, (rtol or 0.0) * sigma_max)


def effective_rank(singular_values: Tensor) -> float:
    """exp of the Shannon entropy of sigma / sum(sigma) (Roy & Vetterli); 0 for a zero matrix."""
    s = singular_values[singular_values > 0]
    if len(s) == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def _from_singular_values(
    s: Tensor, *, shape: tuple[int, int], frobenius: float, l21: float, eps: float, tols: dict
) -> dict[str, Any]:
    """The LayerStats fields that follow from the singular values ``s`` (descending)."""
    s1 = float(s[0]) if len(s) else 0.0
    exact_tol, numerical_tol = rank_thresholds(s1, shape, eps, **tols)
    return dict(
        shape=shape,
        spectral_norm=s1,
        frobenius_norm=frobenius,
        l21_norm=l21,
        nuclear_norm=float(s.sum()),
        rank=int((s > exact_tol).sum()),
        numerical_rank=int((s > numerical_tol).sum()),
        stable_rank=frobenius**2 / s1**2 if s1 > 0 else 0.0,
        effective_rank=effective_rank(s),
        spectrum=tuple(s.tolist()),
    )


def matrix_stats(
    weight: Tensor,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    eps: float | None = None,
) -> dict[str, Any]:
    """Norms and ranks of a 2-D ``weight`` (rows = outputs) as a dict of LayerStats fields.

    ``eps`` (default: that of the weight's dtype) sets the exact-rank tolerance.
    """
    if eps is None:
        eps = torch.finfo(weight.dtype).eps
    w = weight.detach().to(torch.float64)
    s = torch.linalg.svdvals(w)
    return _from_singular_values(
        s,
        shape=(w.shape[0], w.shape[1]),
        frobenius=float(w.norm()),
        l21=float(w.norm(dim=1).sum()),
        eps=eps,
        tols=dict(rtol=rtol, atol=atol),
    )


# --------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class _Layer:
    name: str
    path: str
    op: LinearOp | ConvOp
    input_shape: tuple[int, ...] | None


def _layer_op(m: nn.Linear | nn.Conv1d | nn.Conv2d) -> LinearOp | ConvOp:
    """The op of an affine module, with its parameters detached."""
    if isinstance(m, nn.Linear):
        return LinearOp(m.weight.detach(), None if m.bias is None else m.bias.detach())
    return ConvOp.from_module(m)


def _module_layers(model: nn.Module, input_shape: tuple[int, ...] | None) -> list[_Layer]:
    """Linear / Conv1d / Conv2d layers of ``model``: in call order with their input shapes when
    ``input_shape`` is given (one forward pass in eval mode), else in definition order."""
    found: dict[str, nn.Linear | nn.Conv1d | nn.Conv2d] = {}
    for path, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            found[path or type(m).__name__] = m
        elif isinstance(m, nn.modules.conv._ConvNd):
            raise UnsupportedLayerError(
                path or type(m).__name__,
                type(m).__name__,
                SUPPORTED_LAYERS,
                "weight_ranks measures Linear layers and 1-D / 2-D convolutions",
            )
    if input_shape is None:
        convs = [p for p, m in found.items() if not isinstance(m, nn.Linear)]
        if convs:
            raise InputError(
                f"the model has convolutions (first at {convs[0]!r}); their operator norm depends "
                "on the input size: pass input_shape=(channels, *spatial), e.g. (1, 28, 28)"
            )
        names = _site_names(model, None)
        return [_Layer(names.get(p, p), p, _layer_op(m), None) for p, m in found.items()]
    calls: dict[str, tuple[int, ...]] = {}

    def record(path: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            calls.setdefault(path, tuple(args[0].shape[1:]))

        return hook

    hooks = [m.register_forward_pre_hook(record(p)) for p, m in found.items()]
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1,) + input_shape, dtype=dtype, device=device))
    except Exception as exc:
        raise InputError(
            f"the model does not run on inputs of shape (batch, {', '.join(map(str, input_shape))})"
            f" given by input_shape: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    layers = []
    names = _site_names(model, input_shape)
    for p, shape in calls.items():
        layers.append(_Layer(names.get(p, p), p, _layer_op(found[p]), shape))
    return layers


def _site_names(model: nn.Module, input_shape: tuple[int, ...] | None) -> dict[str, str]:
    """Module path -> record layer name (see :class:`LayerStats`) of the model's affine layers,
    from its trace; empty when the model does not trace (the paths then name the layers)."""
    try:
        net = as_pwlnet(model, input_shape)
    except (InputError, UnsupportedLayerError):
        return {}
    return {layer.path: layer.name for layer in _net_layers(net)}


def _record_name(net: PWLNet, node: str) -> str | None:
    """The site fed by the affine node ``node``, "output" when it makes the output, else None."""
    if node == net.output:
        return OUTPUT_LAYER
    for site in net.sites:
        if net.node(site.name).inputs[0] == node:
            return site.name
    return None


def _net_layers(net: PWLNet) -> list[_Layer]:
    layers = []
    for n in net.nodes:
        if isinstance(n.op, (LinearOp, ConvOp)):
            src = n.inputs[0]
            shape = net.input_shape if src == INPUT else net.node(src).shape
            path = n.path or n.name
            layers.append(_Layer(_record_name(net, n.name) or path, path, n.op, tuple(shape)))
    return layers


def _conv_stats(
    layer: _Layer, method: str, max_dense: int, eps: float, tols: dict, seed: int
) -> LayerStats:
    conv, input_shape = layer.op, layer.input_shape
    assert isinstance(conv, ConvOp) and input_shape is not None  # convolutions have input shapes
    op = ConvOperator(conv, input_shape)
    rows = op.row_norms()
    shape = (op.d_out, op.d_in)
    frobenius, l21 = float(rows.norm()), float(rows.sum())
    if method == "auto":
        if op.is_circular():
            method = "fft"
        elif op.d_in * op.d_out <= max_dense:
            method = "dense"
        else:
            method = "lanczos"
    if method == "fft" and not op.is_circular():
        raise InputError(
            f"conv_method='fft' needs a circular convolution (padding_mode='circular', stride 1, "
            f"output the input's size); layer {layer.path!r} is not one: use 'auto'"
        )
    common: dict[str, Any] = dict(
        layer=layer.name,
        path=layer.path,
        kind=f"conv{conv.weight.dim() - 2}d",
        norm_kind="conv operator",
        has_bias=conv.bias is not None,
    )
    if method == "lanczos":
        sigma, _ = op.spectral_norm(seed=seed)
        return LayerStats(
            **common,
            method="lanczos",
            shape=shape,
            spectral_norm=sigma,
            frobenius_norm=frobenius,
            l21_norm=l21,
            nuclear_norm=None,
            rank=None,
            numerical_rank=None,
            stable_rank=frobenius**2 / sigma**2 if sigma > 0 else 0.0,
            effective_rank=None,
            spectrum=None,
        )
    if method == "fft":
        s = op.fft_singular_values()
    else:
        s = torch.linalg.svdvals(op.dense())
    stats = _from_singular_values(s, shape=shape, frobenius=frobenius, l21=l21, eps=eps, tols=tols)
    return LayerStats(**common, method="fft" if method == "fft" else "dense svd", **stats)


def weight_ranks(
    model: nn.Module | PWLNet,
    data: None = None,
    *,
    input_shape: Sequence[int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    conv_method: str = "auto",
    max_dense: int = 2**22,
    seed: int = 0,
) -> WeightRanks:
    """Norms and ranks of every Linear / Conv1d / Conv2d layer of ``model`` (see module doc).

    The call shape of every measure; ``data`` must be None: the weights alone decide.

    ``model``: a torch module (its layers' own weights; BatchNorm is not folded in) or a
    PWLNet (its affine ops as they are). ``input_shape`` (without batch) is needed for
    convolutions; with it the layers come in call order. ``rtol`` / ``atol``: tolerances of the
    numerical rank (default rtol = 1e-3). ``conv_method``: how a conv operator's singular values
    are found: 'fft' (exact; circular convolutions only), 'dense' (SVD of the unrolled matrix),
    'lanczos' (spectral norm only, by Lanczos iteration on A^T A from a start seeded with
    ``seed``), or 'auto': fft when possible, else dense when the unrolled matrix has at most
    ``max_dense`` entries, else lanczos.
    """
    if data is not None:
        raise invalid("data", "None (weight_ranks reads the weights only)", data)
    check_number("rtol", rtol, minimum=0, allow_none=True)
    check_number("atol", atol, minimum=0, allow_none=True)
    check_choice("conv_method", conv_method, CONV_METHODS)
    check_int("max_dense", max_dense, minimum=0)
    shape = check_shape("input_shape", input_shape, allow_none=True)
    if isinstance(model, PWLNet):
        if shape is not None and shape != model.input_shape:
            raise InputError(
                f"input_shape {shape} differs from the PWLNet's input shape {model.input_shape}"
            )
        layers = _net_layers(model)
    elif isinstance(model, nn.Module):
        check_module(model, compute_dtype=False)  # SVDs below run in float64
        layers = _module_layers(model, shape)
    else:
        raise invalid("model", "a torch.nn.Module or a PWLNet", type(model).__name__)
    tols = dict(rtol=rtol, atol=atol)
    out: list[LayerStats] = []
    for layer in layers:
        weight = layer.op.weight
        check_tensors([(f"{layer.path}.weight", weight)], "model", compute_dtype=False)
        eps = torch.finfo(weight.dtype).eps
        has_bias = layer.op.bias is not None
        if isinstance(layer.op, LinearOp):
            stats = matrix_stats(weight, eps=eps, **tols)
            out.append(
                LayerStats(
                    layer=layer.name,
                    path=layer.path,
                    kind="linear",
                    norm_kind="matrix",
                    method="svd",
                    has_bias=has_bias,
                    **stats,
                )
            )
            continue
        out.append(_conv_stats(layer, conv_method, max_dense, eps, tols, seed))
        kernel = matrix_stats(weight.reshape(weight.shape[0], -1), eps=eps, **tols)
        out.append(
            LayerStats(
                layer=layer.name,
                path=layer.path,
                kind=out[-1].kind,
                norm_kind="reshaped kernel",
                method="svd",
                has_bias=has_bias,
                **kernel,
            )
        )
    params = dict(
        input_shape=None if shape is None else list(shape),
        rtol=DEFAULT_RTOL if rtol is None and atol is None else rtol,
        atol=atol,
        conv_method=conv_method,
        max_dense=max_dense,
        seed=seed,
    )
    return WeightRanks(tuple(out), params)
