"""Between ``nn.Sequential`` bias-free networks and the weight chains of the simulations.

A bias-free (leaky) ReLU network here is ``Sequential(Linear, act, Linear, act, ..., Linear)``
with every ``nn.Linear`` built with ``bias=False`` and every activation an ``nn.ReLU``
(alpha = 0), an ``nn.LeakyReLU`` with slope alpha in [0, 1], or an ``nn.Identity`` (alpha = 1),
all with the same alpha.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from reluscope.dynamics.checks import DTYPE, as_weights, check_alpha
from reluscope.errors import InputError, UnsupportedLayerError
from reluscope.nets.zoo import mlp

SUPPORTED = "nn.Linear(bias=False) alternating with nn.ReLU, nn.LeakyReLU or nn.Identity"


def _slope(path: str, module: nn.Module) -> float:
    """The slope alpha of an activation module."""
    if isinstance(module, nn.ReLU):
        return 0.0
    if isinstance(module, nn.Identity):
        return 1.0
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        if not 0.0 <= slope <= 1.0:
            raise InputError(
                f"activation '{path}' has negative slope {slope}; expected alpha in [0, 1]"
            )
        return float(slope)
    raise UnsupportedLayerError(path, type(module).__name__, SUPPORTED, "expected an activation.")


def bias_free_layers(model: nn.Module) -> tuple[tuple[Tensor, ...], float]:
    """The weights (W_1, ..., W_L) (float64 copies, ``nn.Linear`` layout) and the common slope
    alpha of a bias-free (leaky) ReLU ``nn.Sequential``; InputError for anything else, in
    particular for a layer with a bias."""
    if not isinstance(model, nn.Sequential):
        raise InputError(
            f"expected a bias-free network as nn.Sequential({SUPPORTED}); got {type(model).__name__}"
        )
    weights: list[torch.Tensor] = []
    slopes: set[float] = set()
    for i, (path, module) in enumerate(model.named_children()):
        if i % 2 == 0:
            if not isinstance(module, nn.Linear):
                raise UnsupportedLayerError(
                    path, type(module).__name__, SUPPORTED, "expected nn.Linear here."
                )
            if module.bias is not None:
                raise InputError(
                    f"layer '{path}' has a bias; this function is for bias-free networks only "
                    "(build every nn.Linear with bias=False)"
                )
            weights.append(module.weight.detach().to(DTYPE).clone())
        else:
            slopes.add(_slope(path, module))
    if len(model) % 2 == 0:
        raise InputError(
            f"a bias-free network must end with nn.Linear; got {type(model[-1]).__name__} last"
        )
    if len(slopes) > 1:
        raise InputError(f"all activations must share one slope alpha; got {sorted(slopes)}")
    return as_weights(weights), slopes.pop() if slopes else 1.0


def to_module(weights: Any, alpha: float) -> nn.Sequential:
    """A float64 bias-free ``nn.Sequential`` (built by :func:`reluscope.nets.zoo.mlp` with
    LeakyReLU(alpha)) holding copies of ``weights`` (W_1, ..., W_L)."""
    ws = as_weights(weights)
    widths = [ws[0].shape[1], *(w.shape[0] for w in ws)]
    model = mlp(widths, bias=False, activation="leaky_relu", slope=check_alpha(alpha))
    model = model.to(DTYPE)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, w in zip(linears, ws, strict=True):
            layer.weight.copy_(w)
    return model
