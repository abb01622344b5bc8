"""Turn a torch.nn.Module into a PWLNet with torch.fx."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.nets.checks import check_module
from reluscope.nets.ops import (
    AdaptiveAvgPoolOp,
    AddOp,
    AvgPoolOp,
    BatchNormOp,
    CatOp,
    ConvOp,
    LinearOp,
    MeanOp,
    Op,
    PadOp,
    ReshapeOp,
    ScaleShiftOp,
    UpsampleNearestOp,
)
from reluscope.nets.pwl import INPUT, Node, PWLNet
from reluscope.nets.sites import ActivationOp, MaxPoolOp
from reluscope.validation import check_float_dtype, invalid

SUPPORTED = (
    "Linear, Conv1d, Conv2d, BatchNorm1d/2d (eval mode), AvgPool1d/2d, AdaptiveAvgPool1d/2d, "
    "MaxPool1d/2d, Flatten, Identity, Dropout (eval mode), ReLU, LeakyReLU, PReLU, ReLU6, "
    "Hardtanh, clamp/clip with constant bounds, residual + and -, scaling by a constant, "
    "torch.cat, mean over non-batch dimensions, Upsample(mode='nearest'), ZeroPad/ConstantPad, "
    "flatten/view/reshape, Sequential nesting"
)

#: Argument names of the functions and methods the tracer reads arguments of, in order.
_SIGNATURES = {
    "max_pool": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "adaptive_avg_pool": ("input", "output_size"),
    "hardtanh": ("input", "min_val", "max_val"),
    "clamp": ("input", "min", "max"),
    "cat": ("tensors", "dim"),
    "mean": ("input", "dim", "keepdim"),
    "interpolate": ("input", "size", "scale_factor", "mode"),
    "pad": ("input", "pad", "mode", "value"),
    "prelu": ("input", "weight"),
}
_MAX_POOL_FUNCTIONS = {F.max_pool1d: 1, F.max_pool2d: 2, torch.max_pool1d: 1, torch.max_pool2d: 2}
_ADAPTIVE_FUNCTIONS = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2}
_CLAMP_FUNCTIONS = {torch.clamp, torch.clip}
_CLAMP_METHODS = {"clamp", "clip", "clamp_", "clip_"}

_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_SUB_FUNCTIONS = {operator.sub, operator.isub, torch.sub}


def trace(model: nn.Module, input_shape: Sequence[int], check: bool = True) -> PWLNet:
    """The piecewise-linear view of ``model`` for inputs of shape ``(batch, *input_shape)``.

    Raises UnsupportedLayerError for anything that is not piecewise-linear or not supported, and
    InputError when ``input_shape`` does not fit the model or a parameter or buffer is not a
    finite float32/float64 tensor in memory (:func:`reluscope.nets.checks.check_module`). With ``check`` the traced network's
    output is compared with the module's own on random inputs.
    """
    check_module(model)
    input_shape = _check_shape(input_shape)
    root = model
    if fx.Tracer().is_leaf_module(model, ""):
        # A bare torch.nn layer would be traced into its functional body (F.linear, ...):
        # wrap it so that it shows up as a module, named after its type.
        root = nn.Sequential(OrderedDict([(type(model).__name__, model)]))
    try:
        gm = fx.symbolic_trace(root)
    except Exception as exc:  # torch.fx raises TraceError and assorted errors
        raise UnsupportedLayerError(
            type(model).__name__,
            "untraceable forward",
            SUPPORTED,
            f"torch.fx could not trace the forward (data-dependent control flow?): {exc}",
        ) from exc
    # dtype and device from the parameters, else from floating buffers (BN with affine=False)
    tensors = (*model.parameters(), *model.buffers())
    param = next((t for t in tensors if t.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    example = torch.randn((2,) + input_shape, dtype=dtype, device=device)
    # Before running the model for shapes: a training-mode BatchNorm would update its running
    # statistics.
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            _check_mode(str(node.target), modules[node.target])
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"input_shape {input_shape} does not fit {type(model).__name__}: running it on a batch "
            f"of shape {tuple(example.shape)} failed with: {reason}"
        ) from exc
    ShapeProp(gm).propagate(example)
    net = _Builder(gm, input_shape).build()
    net = fold_batchnorm(net)
    if check:
        _check_equal(model, net, example)
    return net


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        if isinstance(input_shape, (str, bytes)):
            raise TypeError
        shape = tuple(_as_int(s) for s in input_shape)
    except TypeError:
        raise invalid("input_shape", "a non-empty sequence of positive ints", input_shape) from None
    if not shape or any(s <= 0 for s in shape):
        raise invalid("input_shape", "a non-empty sequence of positive ints", shape)
    return shape


def _as_int(s) -> int:
    """An int, or an integral float (4.0); TypeError for anything else (2.5, '4', True)."""
    if isinstance(s, bool):
        raise TypeError
    if isinstance(s, float) and s.is_integer():
        return int(s)
    return operator.index(s)


def _check_mode(path: str, m: nn.Module) -> None:
    """Reject modules whose training-mode forward is not a fixed map."""
    kind = type(m).__name__
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
        raise UnsupportedLayerError(
            path,
            kind,
            SUPPORTED,
            "BatchNorm in training mode is not a fixed affine map: call model.eval()",
        )
    if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
        raise UnsupportedLayerError(
            path, kind, SUPPORTED, "Dropout in training mode is random: call model.eval()"
        )


def _check_equal(model: nn.Module, net: PWLNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model(x)
        got = net(x)
    if not bool(torch.isfinite(expected).all()):
        raise InputError(
            f"{type(model).__name__} returns NaN or inf on random inputs of shape "
            f"{tuple(x.shape[1:])}; expected finite outputs (do its weights overflow?)"
        )
    scale = expected.abs().max().item() + 1.0
    tol = 1e-4 if x.dtype != torch.float64 else 1e-9
    if expected.shape != got.shape or (expected - got).abs().max().item() > tol * scale:
        raise UnsupportedLayerError(
            type(model).__name__,
            "forward mismatch",
            SUPPORTED,
            "the traced network does not reproduce the module's output; the forward uses an "
            "operation the tracer does not model correctly",
        )


class _Builder:
    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
        self.gm = gm
        self.input_shape = input_shape
        self.modules = dict(gm.named_modules())
        self.nodes: list[Node] = []
        self.alias: dict[str, str] = {}  # fx node name -> PWLNet node name
        self.constants: dict[str, object] = {}
        self.output: str | None = None

    def build(self) -> PWLNet:
        placeholders = 0
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    raise UnsupportedLayerError(
                        node.name,
                        "extra forward argument",
                        SUPPORTED,
                        "the forward must take exactly one tensor input",
                    )
                self.alias[node.name] = INPUT
            elif node.op == "get_attr":
                self.constants[node.name] = _fetch_attr(self.gm, node.target)
            elif node.op == "call_module":
                self._module(node)
            elif node.op in ("call_function", "call_method"):
                self._function(node)
            elif node.op == "output":
                self._output(node)
        assert self.output is not None  # every fx graph ends with its output node
        return PWLNet(self.nodes, self.input_shape, self.output)

    # ------------------------------------------------------------------ helpers
    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise UnsupportedLayerError(
                node.name, "non-tensor output", SUPPORTED, "every operation must return one tensor"
            )
        return tuple(meta.shape[1:])

    def _ref(self, arg, owner: fx.Node) -> str:
        if isinstance(arg, fx.Node) and arg.name in self.alias:
            return self.alias[arg.name]
        raise UnsupportedLayerError(
            owner.name,
            str(owner.target),
            SUPPORTED,
            f"argument {arg!r} is not the output of a supported operation",
        )

    def _add(self, node: fx.Node, op: Op, inputs: Sequence[str], path: str) -> None:
        taken = {n.name for n in self.nodes} | {INPUT}
        name = path if node.op == "call_module" and path not in taken else node.name
        self.nodes.append(Node(name, op, tuple(inputs), self._shape(node), path))
        self.alias[node.name] = name

    def _identity(self, node: fx.Node, source) -> None:
        self.alias[node.name] = self._ref(source, node)

    # ------------------------------------------------------------------ modules
    def _module(self, node: fx.Node) -> None:
        path = str(node.target)
        m = self.modules[node.target]
        kind = type(m).__name__
        if not node.args:
            raise UnsupportedLayerError(path, kind, SUPPORTED, "it is called without an input")
        src = self._ref(node.args[0], node)
        if isinstance(m, nn.Linear):
            self._add(node, LinearOp(m.weight.detach().clone(), _param(m.bias)), [src], path)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            self._add(node, ConvOp.from_module(m), [src], path)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _check_mode(path, m)
            if m.running_mean is None or m.running_var is None:
                raise UnsupportedLayerError(
                    path,
                    kind,
                    SUPPORTED,
                    "BatchNorm without running statistics (track_running_stats=False) is not affine",
                )
            norm = BatchNormOp(
                m.running_mean.detach().clone(),
                m.running_var.detach().clone(),
                float(m.eps),
                _param(m.weight),
                _param(m.bias),
            )
            self._add(node, norm, [src], path)
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            pool = AvgPoolOp(
                1 if isinstance(m, nn.AvgPool1d) else 2,
                m.kernel_size,
                m.stride,
                m.padding,
                m.ceil_mode,
                m.count_include_pad,
                getattr(m, "divisor_override", None),
            )
            self._add(node, pool, [src], path)
        elif isinstance(m, (nn.Flatten, nn.Unflatten)):
            if not _keeps_batch(node):
                raise UnsupportedLayerError(
                    path, kind, SUPPORTED, "reshapes must keep the batch dimension first"
                )
            self._add(node, ReshapeOp(self._shape(node)), [src], path)
        elif isinstance(m, nn.Identity):
            self._identity(node, node.args[0])
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            _check_mode(path, m)
            self._identity(node, node.args[0])
        elif isinstance(m, nn.ReLU):
            self._add(node, ActivationOp.relu(), [src], path)
        elif isinstance(m, nn.LeakyReLU):
            self._add(node, ActivationOp.leaky(float(m.negative_slope)), [src], path)
        elif isinstance(m, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
            low, high = float(m.min_val), float(m.max_val)
            self._add(node, _clamp_op(node, low, high), [src], path)
        elif isinstance(m, nn.PReLU):
            self._add(node, self._prelu(node, m.weight), [src], path)
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            if m.return_indices:
                raise UnsupportedLayerError(path, kind, SUPPORTED, "return_indices=True")
            dims = 1 if isinstance(m, nn.MaxPool1d) else 2
            op = MaxPoolOp.create(
                dims, m.kernel_size, m.stride, m.padding, m.dilation, bool(m.ceil_mode)
            )
            self._add(node, op, [src], path)
        elif isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            dims = 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2
            self._add(node, AdaptiveAvgPoolOp(dims, m.output_size), [src], path)
        elif isinstance(m, nn.Upsample):
            if m.mode != "nearest":
                detail = (
                    f"Upsample(mode={m.mode!r}) is not piecewise-linear in general; use 'nearest'"
                )
                raise UnsupportedLayerError(path, kind, SUPPORTED, detail)
            self._add(node, UpsampleNearestOp(m.size, m.scale_factor), [src], path)
        elif isinstance(m, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d)):
            self._add(node, PadOp(tuple(m.padding), float(m.value)), [src], path)
        else:
            detail = ""
            if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
                detail = "softmax is not piecewise-linear: trace the model that returns logits"
            elif isinstance(m, nn.MultiheadAttention):
                detail = "attention is not piecewise-linear"
            else:
                detail = "this module is not piecewise-linear or not supported"
            raise UnsupportedLayerError(path, kind, SUPPORTED, detail)

    # ---------------------------------------------------------------- functions
    def _function(self, node: fx.Node) -> None:
        target = node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        if node.op == "call_method" and target == "size":
            return  # only used as a reshape argument; shapes come from shape propagation
        if (
            node.op == "call_method" and target in _RESHAPE_METHODS
        ) or target in _RESHAPE_FUNCTIONS:
            src = self._ref(node.args[0], node)
            shape = self._shape(node)
            if not _keeps_batch(node):
                raise UnsupportedLayerError(
                    node.name, name, SUPPORTED, "reshapes must keep the batch dimension first"
                )
            self._add(node, ReshapeOp(shape), [src], node.name)
            return
        method = target if node.op == "call_method" and isinstance(target, str) else None
        if target in _RELU_FUNCTIONS or method in ("relu", "relu_"):
            self._add(node, ActivationOp.relu(), [self._ref(node.args[0], node)], node.name)
            return
        if target is F.leaky_relu or method == "leaky_relu":
            slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
            if not isinstance(slope, (int, float)):
                raise UnsupportedLayerError(
                    node.name, name, SUPPORTED, f"negative_slope must be a number; got {slope!r}"
                )
            op = ActivationOp.leaky(float(slope))
            self._add(node, op, [self._ref(node.args[0], node)], node.name)
            return
        if self._site_or_pool(node, target, method):
            return
        if (
            target in _ADD_FUNCTIONS
            or target in _SUB_FUNCTIONS
            or (node.op == "call_method" and target in ("add", "sub", "add_", "sub_"))
        ):
            if node.kwargs.get("alpha", 1) != 1:
                raise UnsupportedLayerError(node.name, name, SUPPORTED, "alpha != 1 in add/sub")
            sub = target in _SUB_FUNCTIONS or target in ("sub", "sub_")
            self._linear_combination(node, node.args[0], node.args[1], -1.0 if sub else 1.0)
            return
        if target in (operator.mul, operator.truediv, torch.mul) and self._scalar_arg(node):
            tensor_arg, factor = self._scalar_arg(node)
            if target is operator.truediv:
                if tensor_arg is not node.args[0]:
                    raise UnsupportedLayerError(node.name, name, SUPPORTED, "division by a tensor")
                factor = 1.0 / factor
            self._add(node, ScaleShiftOp(float(factor)), [self._ref(tensor_arg, node)], node.name)
            return
        if target is operator.neg:
            self._add(node, ScaleShiftOp(-1.0), [self._ref(node.args[0], node)], node.name)
            return
        detail = "this operation is not piecewise-linear or not supported"
        if target in (F.softmax, torch.softmax, F.log_softmax) or target in ("softmax",):
            detail = "softmax is not piecewise-linear: trace the model that returns logits"
        elif target is F.scaled_dot_product_attention:
            detail = "attention is not piecewise-linear"
        raise UnsupportedLayerError(node.name, name, SUPPORTED, detail)

    def _site_or_pool(self, node: fx.Node, target, method: str | None) -> bool:
        """Add the activations, poolings and other new ops called as functions; False when
        ``target`` is none of them."""
        name = node.name
        if target in _MAX_POOL_FUNCTIONS:
            a = _arguments(node, "max_pool")
            if a.get("return_indices"):
                raise UnsupportedLayerError(name, str(target), SUPPORTED, "return_indices=True")
            op = MaxPoolOp.create(
                _MAX_POOL_FUNCTIONS[target],
                a["kernel_size"],
                a.get("stride"),
                a.get("padding", 0),
                a.get("dilation", 1),
                bool(a.get("ceil_mode", False)),
            )
        elif target in _ADAPTIVE_FUNCTIONS:
            a = _arguments(node, "adaptive_avg_pool")
            op = AdaptiveAvgPoolOp(_ADAPTIVE_FUNCTIONS[target], a["output_size"])
        elif target in (F.hardtanh, F.hardtanh_) or target is F.relu6:
            a = _arguments(node, "hardtanh")
            low, high = (
                (0.0, 6.0) if target is F.relu6 else (a.get("min_val", -1.0), a.get("max_val", 1.0))
            )
            op = _clamp_op(node, float(low), float(high))
        elif target in _CLAMP_FUNCTIONS or method in _CLAMP_METHODS:
            a = _arguments(node, "clamp")
            low, high = a.get("min"), a.get("max")
            if any(b is not None and not isinstance(b, (int, float)) for b in (low, high)):
                raise UnsupportedLayerError(
                    name, str(target), SUPPORTED, "clamp bounds must be constant numbers"
                )
            op = _clamp_op(node, low, high)
        elif target is F.prelu:
            weight = _arguments(node, "prelu")["weight"]
            constant = self.constants.get(weight.name) if isinstance(weight, fx.Node) else None
            if not isinstance(constant, torch.Tensor):
                raise UnsupportedLayerError(
                    name, "prelu", SUPPORTED, "the weight must be a parameter"
                )
            op = self._prelu(node, constant)
        elif target is torch.cat:
            a = _arguments(node, "cat")
            dim = a.get("dim", 0)
            rank = len(self._shape(node)) + 1
            dim = dim + rank if dim < 0 else dim
            if dim == 0:
                raise UnsupportedLayerError(name, "cat", SUPPORTED, "cat along the batch dimension")
            inputs = [self._ref(t, node) for t in a["tensors"]]
            self._add(node, CatOp(dim), inputs, name)
            return True
        elif target is torch.mean or method == "mean":
            a = _arguments(node, "mean")
            rank = len(self._shape_of_arg(node.args[0])) + 1
            dims = a.get("dim")
            dims = tuple(range(1, rank)) if dims is None else dims
            dims = tuple(
                d + rank if d < 0 else d for d in ((dims,) if isinstance(dims, int) else dims)
            )
            if 0 in dims:
                raise UnsupportedLayerError(name, "mean", SUPPORTED, "a mean over the batch")
            op = MeanOp(dims, bool(a.get("keepdim", False)))
        elif target is F.interpolate:
            a = _arguments(node, "interpolate")
            if a.get("mode", "nearest") != "nearest":
                raise UnsupportedLayerError(
                    name, "interpolate", SUPPORTED, "only mode='nearest' is piecewise-linear here"
                )
            op = UpsampleNearestOp(a.get("size"), a.get("scale_factor"))
        elif target is F.pad:
            a = _arguments(node, "pad")
            if a.get("mode", "constant") != "constant":
                raise UnsupportedLayerError(name, "pad", SUPPORTED, "only constant padding")
            op = PadOp(tuple(a["pad"]), float(a.get("value") or 0.0))
        else:
            return False
        self._add(node, op, [self._ref(node.args[0], node)], name)
        return True

    def _shape_of_arg(self, arg) -> tuple[int, ...]:
        return tuple(arg.meta["tensor_meta"].shape[1:])

    def _prelu(self, node: fx.Node, weight: torch.Tensor) -> ActivationOp:
        channels = self._shape(node)[0] if self._shape(node) else 1
        if weight.numel() not in (1, channels):
            raise UnsupportedLayerError(
                node.name, "PReLU", SUPPORTED, f"{weight.numel()} slopes for {channels} channels"
            )
        return ActivationOp.prelu(weight)

    def _scalar_arg(self, node: fx.Node):
        a, b = node.args[0], node.args[1]
        if isinstance(b, (int, float)) and isinstance(a, fx.Node):
            return a, float(b)
        if isinstance(a, (int, float)) and isinstance(b, fx.Node):
            return b, float(a)
        return None

    def _linear_combination(self, node: fx.Node, a, b, sign_b: float) -> None:
        terms: list[tuple[str, float]] = []
        constant: torch.Tensor | float = 0.0
        for arg, sign in ((a, 1.0), (b, sign_b)):
            if isinstance(arg, fx.Node) and arg.name in self.alias:
                terms.append((self._ref(arg, node), sign))
            elif isinstance(arg, fx.Node) and arg.name in self.constants:
                constant = constant + sign * torch.as_tensor(self.constants[arg.name]).detach()
            elif isinstance(arg, (int, float)):
                constant = constant + sign * float(arg)
            else:
                raise UnsupportedLayerError(
                    node.name, str(node.target), SUPPORTED, f"operand {arg!r}"
                )
        if not terms:
            raise UnsupportedLayerError(
                node.name, str(node.target), SUPPORTED, "constant arithmetic"
            )
        if isinstance(constant, torch.Tensor):
            constant = (
                constant.unsqueeze(0) if constant.dim() == len(self._shape(node)) else constant
            )
        op = AddOp(tuple(s for _, s in terms), None if _is_zero(constant) else constant)
        self._add(node, op, [t for t, _ in terms], node.name)

    def _output(self, node: fx.Node) -> None:
        out = node.args[0]
        if not isinstance(out, fx.Node):
            raise UnsupportedLayerError(
                "output", type(out).__name__, SUPPORTED, "forward must return a single tensor"
            )
        self.output = self._ref(out, node)


def _arguments(node: fx.Node, signature: str) -> dict:
    """The call's arguments by name (positional ones named by ``_SIGNATURES``)."""
    names = _SIGNATURES[signature]
    out = dict(zip(names, node.args, strict=False))
    out.update(node.kwargs)
    return out


def _clamp_op(node: fx.Node, low: float | None, high: float | None) -> ActivationOp:
    if low is not None and high is not None and not low < high:
        raise UnsupportedLayerError(
            node.name, "clamp", SUPPORTED, f"clamp bounds must satisfy min < max, got {low}, {high}"
        )
    return ActivationOp.clamp(low, high)


def _is_zero(c) -> bool:
    if isinstance(c, torch.Tensor):
        return bool((c == 0).all())
    return c == 0


def _param(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


def _keeps_batch(node: fx.Node) -> bool:
    """Whether the reshape ``node`` keeps its input's batch dimension first."""
    source = node.args[0]
    return (
        isinstance(source, fx.Node)
        and source.meta["tensor_meta"].shape[0] == node.meta["tensor_meta"].shape[0]
    )


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def fold_batchnorm(net: PWLNet) -> PWLNet:
    """Fold each per-channel scale/shift into the Linear or Conv that feeds only it."""
    users: dict[str, int] = {}
    for n in net.nodes:
        for a in n.inputs:
            users[a] = users.get(a, 0) + 1
    by_name = {n.name: n for n in net.nodes}
    replaced: dict[str, str] = {}
    nodes: list[Node] = []
    folded: set[str] = set()
    for n in net.nodes:
        n = Node(n.name, n.op, tuple(replaced.get(a, a) for a in n.inputs), n.shape, n.path)
        src = by_name.get(n.inputs[0]) if n.inputs else None
        if (
            isinstance(n.op, (ScaleShiftOp, BatchNormOp))
            and isinstance(n.op.scale, torch.Tensor)
            and n.op.scale.dim() == 1
            and src is not None
            and isinstance(src.op, (LinearOp, ConvOp))
            # a Linear acts on the last dimension, the scale on dimension 1: same only when 1-d
            and (isinstance(src.op, ConvOp) or len(src.shape) == 1)
            and users.get(src.name) == 1
            and src.name != net.output
            and src.op.weight.shape[0] == n.op.scale.shape[0]
        ):
            prev = next(i for i, m in enumerate(nodes) if m.name == src.name)
            nodes[prev] = Node(
                n.name,
                _fold(src.op, n.op.scale, n.op.shift),
                src.inputs,
                n.shape,
                f"{src.path}+{n.path}",
            )
            folded.add(src.name)
            continue
        nodes.append(n)
    if not folded:
        return net
    out = PWLNet(nodes, net.input_shape, net.output)
    out.unfolded = net
    return out


def _fold(op: LinearOp | ConvOp, scale: torch.Tensor, shift: torch.Tensor | float | None) -> Op:
    """``op`` followed by a per-output-channel ``x * scale + shift``, as one op."""
    w = op.weight * scale.reshape((-1,) + (1,) * (op.weight.dim() - 1))
    b = op.bias * scale if op.bias is not None else torch.zeros_like(scale)
    if shift is not None:
        b = b + shift
    if isinstance(op, LinearOp):
        return LinearOp(w, b)
    return replace(op, weight=w, bias=b)


def infer_input_shape(model: nn.Module, data: object = None) -> tuple[int, ...] | None:
    """The input shape (without the batch dimension) of ``model``: ``(in_features,)`` when its
    first Linear / Conv1d / Conv2d module is a Linear, else the shape of a data tensor without
    its first (batch) dimension, else None (a convolution's input size is not in its weights)."""
    first = next(
        (m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None
    )
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(data, torch.Tensor) and data.dim() >= 2:
        return tuple(data.shape[1:])
    return None


def as_pwlnet(
    model: nn.Module | PWLNet,
    input_shape: Sequence[int] | None = None,
    *,
    dtype: torch.dtype | None = None,
    data: object = None,
) -> PWLNet:
    """``model`` itself when it is a PWLNet, else its trace, cast to ``dtype`` when given
    (device and dtype otherwise follow the model). Without ``input_shape`` the shape comes from
    :func:`infer_input_shape` (the first Linear layer, or the tensor ``data``)."""
    check_float_dtype("dtype", dtype)
    if isinstance(model, PWLNet):
        net = model
    elif isinstance(model, nn.Module):
        input_shape = input_shape or infer_input_shape(model, data)
        if input_shape is None:
            raise InputError(
                f"cannot infer the input shape of {type(model).__name__}: pass input_shape "
                "(without the batch dimension), e.g. input_shape=(3, 32, 32)"
            )
        net = trace(model, input_shape)
    else:
        raise InputError(f"model must be a torch.nn.Module or a PWLNet; got {type(model).__name__}")
    return net if dtype is None or dtype == net.dtype else net.to(dtype=dtype)
