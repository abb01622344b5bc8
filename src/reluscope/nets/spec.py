"""Build a model from a text spec (zoo name or importable factory) plus an optional state dict.

Spec grammar::

    mlp:2-64-64-1                          zoo MLP with widths 2, 64, 64, 1
    mlp:2-64-1:bias=false,slope=0.2        ... plus keyword arguments
    cnn            cnn:in_channels=1,image_size=28            resnet:width=8,blocks=1
    package.module:function[:k=v,...]      any importable factory returning an nn.Module

Values follow the value grammar of :mod:`reluscope.values` (the one of ``--set`` and
``--grid``): bool (true/false), none, int, float, JSON list, dash-separated tuple (``8-16``) or
string. Weights are loaded with ``torch.load(weights_only=True)``; no object is ever unpickled.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reluscope.errors import InputError, did_you_mean, renamed_key_hints
from reluscope.io import load_tensors
from reluscope.memory import check_fits
from reluscope.nets.checks import check_module, check_tensors
from reluscope.nets.vision import VISION_MODELS
from reluscope.nets.zoo import ZOO as SMALL_ZOO
from reluscope.values import parse_options

#: Every zoo model by spec name: the small seeded models and the torchvision classics.
ZOO = {**SMALL_ZOO, **VISION_MODELS}

SPEC_HELP = (
    "a zoo spec such as 'mlp:2-64-1', 'mlp:2-64-1:activation=leaky_relu', 'cnn', "
    "'resnet:width=8,blocks=1', or a factory 'package.module:function[:k=v,...]'"
)


def _parse_widths(text: str, spec: str) -> tuple[int, ...]:
    """Parse dash-separated positive integer widths such as ``2-64-1``."""
    parts = text.split("-")
    if len(parts) < 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise InputError(
            f"bad mlp widths {text!r} in model spec {spec!r}; expected at least two positive "
            "integers joined by '-', e.g. 'mlp:2-64-1'"
        )
    return tuple(int(p) for p in parts)


def _check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], name: str) -> None:
    """Raise InputError naming the accepted keywords if ``kwargs`` has one ``fn`` does not take."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = renamed_key_hints(unknown)
        raise InputError(
            f"unknown keyword argument(s) {unknown} for {name!r}; accepted: {accepted}"
            + (f". {hints}" if hints else did_you_mean(unknown[0], accepted))
        )


def _resolve(spec: str) -> tuple[Callable[..., nn.Module], dict[str, Any], str, bool]:
    """Return (factory, kwargs, display name, is_zoo) for ``spec``."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty or non-string model spec {spec!r}; expected {SPEC_HELP}")
    spec = spec.strip()
    head, _, rest = spec.partition(":")
    if head in ZOO:
        kwargs: dict[str, Any] = {}
        first, sep, tail = rest.partition(":")
        if head == "mlp" and first and "=" not in first:
            kwargs["widths"] = _parse_widths(first, spec)
            first, sep, tail = tail.partition(":")
        elif first and "=" not in first:
            raise InputError(
                f"bad model spec {spec!r}: only 'mlp' takes dash-separated widths; "
                f"expected '{head}' or '{head}:key=value,...'"
            )
        if sep:
            raise InputError(f"bad model spec {spec!r}: too many ':' parts; expected {SPEC_HELP}")
        if first:
            extra = parse_options(first, spec, noun="keyword argument")
            if "widths" in extra and "widths" in kwargs:
                raise InputError(f"mlp widths given twice in model spec {spec!r}")
            kwargs.update(extra)
        if head == "mlp" and "widths" not in kwargs:
            raise InputError(f"model spec {spec!r} has no widths; expected e.g. 'mlp:2-64-1'")
        if isinstance(kwargs.get("widths"), int):
            kwargs["widths"] = (kwargs["widths"],)
        return ZOO[head], kwargs, head, True
    if not rest:
        raise InputError(
            f"unknown model {spec!r}{did_you_mean(head, ZOO) or ';'} zoo models are "
            f"{sorted(ZOO)}, or give a factory as 'package.module:function[:k=v,...]'"
        )
    fn_name, _, kw_text = rest.partition(":")
    try:
        module = importlib.import_module(head)
    except Exception as exc:
        raise InputError(
            f"cannot import module {head!r} from model spec {spec!r} ({type(exc).__name__}: "
            f"{exc}){did_you_mean(head, ZOO) or ';'} expected an importable "
            f"'package.module:function' or a zoo model {sorted(ZOO)}"
        ) from exc
    factory = getattr(module, fn_name, None)
    if factory is None or not callable(factory):
        raise InputError(
            f"module {head!r} has no callable {fn_name!r} (model spec {spec!r}); "
            "expected 'package.module:function'"
        )
    kwargs = parse_options(kw_text, spec, noun="keyword argument") if kw_text else {}
    return factory, kwargs, f"{head}:{fn_name}", False


def _state_dict_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Extract a state dict from a loaded checkpoint object (plain, 'state_dict' or 'model')."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            f"weights file {str(path)!r} holds {type(obj).__name__}; expected a state dict of "
            "tensors, or a dict with a 'state_dict' or 'model' entry holding one"
        )
    return obj


def load_weights(model: nn.Module, weights: str | os.PathLike[str]) -> None:
    """Load a state dict from ``weights`` into ``model`` (strictly), with actionable errors."""
    path = Path(weights)
    obj = load_tensors(path, "weights file")
    state = _state_dict_from(obj, path)
    check_tensors(state.items(), f"weights file {str(path)!r}", compute_dtype=False)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing keys {missing}")
        if unexpected:
            details.append(f"unexpected keys {unexpected}")
        if mismatched:
            details.append(f"shape mismatches [{'; '.join(mismatched)}]")
        raise InputError(f"weights file {str(path)!r} does not fit the model: {', '.join(details)}")
    model.load_state_dict(state, strict=True)


def _check_size(
    factory: Callable[..., nn.Module], kwargs: dict[str, Any], spec: str, shape: tuple[int, ...]
) -> None:
    """Refuse a zoo model whose parameters and the values of one input's forward pass would not
    fit in memory, before building it. Counted on the meta device, where tensors have shapes but
    no storage: the parameters, the input of ``shape`` and the largest layer output (the least
    a forward pass holds at once). Sizes whose byte counts overflow 64 bits are refused too."""
    itemsize = torch.get_default_dtype().itemsize
    hint = "choose smaller widths, width_mult or image_size"
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            shapes = factory(**kwargs)
            count = sum(p.numel() for p in shapes.parameters())
            values = math.prod(shape) + _largest_output(shapes, shape)
    except RuntimeError as exc:
        if "overflow" not in str(exc):
            return  # bad options are reported when the model is built for real
        too_big = 2**63  # bytes: the first size torch cannot count
        check_fits(too_big, f"model {spec!r} (its tensor sizes overflow: over 2**63 bytes)", hint)
        return
    except Exception:  # bad options are reported when the model is built for real
        return
    check_fits(
        (count + values) * itemsize,
        f"model {spec!r} ({count:,} parameters; one input of shape {shape} and its largest "
        f"layer output hold {values:,} values)",
        hint,
    )


def _largest_output(model: nn.Module, shape: tuple[int, ...]) -> int:
    """The number of values of the largest output of a leaf module of ``model`` (on the meta
    device) for one input of ``shape``; of the outputs so far when the forward pass fails."""
    sizes = [0]

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty((1,) + tuple(shape), device="meta"))
    except Exception as exc:  # a model that cannot run on meta tensors: its outputs so far
        if "overflow" in str(exc):
            raise
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def _zoo_input_shape(name: str, kwargs: dict[str, Any], fn: Callable[..., Any]) -> tuple[int, ...]:
    """Input shape (no batch dim) of the zoo model ``name`` built with ``kwargs``."""
    if name == "mlp":
        return (int(kwargs["widths"][0]),)
    defaults = {n: p.default for n, p in inspect.signature(fn).parameters.items()}
    channels = kwargs.get("in_channels", defaults["in_channels"])
    size = kwargs.get("image_size", defaults["image_size"])
    return (channels, size, size)


def load_model(
    spec: str, weights: str | os.PathLike[str] | None = None, seed: int = 0
) -> tuple[nn.Module, tuple[int, ...] | None]:
    """Build the model described by ``spec`` (eval mode) and optionally load ``weights``.

    Returns ``(model, input_shape)`` where ``input_shape`` excludes the batch dimension; it is
    known for zoo models and None for factories. ``seed`` is passed to zoo models (a ``seed=`` in
    the spec wins) and to factories that accept a ``seed`` argument; factories also run under
    ``torch.manual_seed(seed)`` in a forked RNG so the global RNG state is not disturbed.
    """
    factory, kwargs, name, is_zoo = _resolve(spec)
    _check_kwargs(factory, kwargs, name)
    params = inspect.signature(factory).parameters
    if "seed" in params and "seed" not in kwargs:
        kwargs["seed"] = seed
    if is_zoo:
        _check_size(factory, kwargs, spec, _zoo_input_shape(name, kwargs, factory))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(**kwargs)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot build model {spec!r} with {kwargs}: {exc}") from exc
    except Exception as exc:  # the factory is the user's code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"factory {name!r} of model spec {spec!r} failed: {type(exc).__name__}: {first}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise InputError(
            f"factory {name!r} returned {type(model).__name__}; expected a torch.nn.Module"
        )
    if weights is not None:
        load_weights(model, weights)
    check_module(model, f"model {spec!r}")
    model.eval()
    shape = _zoo_input_shape(name, kwargs, factory) if is_zoo else None
    return model, shape
