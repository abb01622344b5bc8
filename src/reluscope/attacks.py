"""Adversarial examples: FGSM and PGD with explicit input bounds, and accuracy under attack.

Both attacks ascend the classification loss of the model's outputs (``loss="ce"``: cross-entropy
of the logits; ``"mse"``: squared error to the one-hot target; see
:mod:`reluscope.losses`) with respect to the inputs. ``eps`` and ``step_size`` are in input
units (for normalised images, the pixel budget divided by the normalisation std). ``bounds =
(lo, hi)`` is the valid input range (numbers, or tensors broadcastable to one input): every
adversarial point is clipped to it, and the clean inputs must lie in it; ``None`` means no
clipping. Inputs are cast to the model's dtype and device. The model's mode (train/eval) is left
as it is, and no parameter gradient is accumulated.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.losses import check_targets, correct, point_losses
from reluscope.measures.results import MeasureResult
from reluscope.validation import check_choice, check_int, check_number, invalid

NORMS = ("linf", "l2")
ATTACKS = ("pgd", "fgsm")
Bounds = tuple[float | Tensor, float | Tensor] | None


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    bounds: Bounds = None,
    loss: str = "ce",
) -> Tensor:
    """The fast gradient sign attack: ``clip(x + eps * sign(grad_x loss), bounds)``.

    One step of size ``eps`` (L_inf) along the sign of the input gradient of each point's loss;
    returns the adversarial inputs (detached, the model's dtype and device)."""
    eps = check_number("eps", eps, minimum=0)
    x, y = _prepare(model, x, y, loss)
    limits = _check_bounds(bounds, x)
    return _clip(x + eps * _gradient(model, x, y, loss).sign(), limits).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    bounds: Bounds = None,
    random_start: bool = True,
    seed: int = 0,
    norm: str = "linf",
    loss: str = "ce",
) -> Tensor:
    """Projected gradient ascent on each point's loss within the ``norm`` ball of radius ``eps``
    around ``x`` (Madry et al.), clipped to ``bounds`` after every step.

    ``norm="linf"``: steps ``step_size * sign(grad)``, projection by clipping to [x - eps,
    x + eps]; the random start is uniform in that box. ``norm="l2"``: steps ``step_size *
    grad / ||grad||``, projection onto the Euclidean ball; the random start is uniform in the
    ball. The random start is drawn on the CPU from a generator seeded with ``seed`` (the same
    on every device). Returns the adversarial inputs after ``steps`` steps (detached)."""
    eps = check_number("eps", eps, minimum=0)
    step_size = check_number("step_size", step_size, minimum=0)
    steps = check_int("steps", steps, minimum=0)
    check_choice("norm", norm, NORMS)
    seed = check_int("seed", seed, minimum=0)
    x, y = _prepare(model, x, y, loss)
    limits = _check_bounds(bounds, x)
    adv = x
    if random_start and eps > 0:
        gen = torch.Generator().manual_seed(seed)
        adv = x + _random_start(x, eps, norm, gen)
        adv = _clip(_project(adv, x, eps, norm), limits)
    for _ in range(steps):
        grad = _gradient(model, adv, y, loss)
        if norm == "linf":
            adv = adv + step_size * grad.sign()
        else:
            adv = adv + step_size * grad / _norms(grad).clamp_min(torch.finfo(x.dtype).tiny)
        adv = _clip(_project(adv, x, eps, norm), limits)
    return adv.detach()


def adversarial_accuracy(
    model: nn.Module,
    data: Tensor,
    *,
    labels: Tensor,
    attack: str | Callable[[nn.Module, Tensor, Tensor], Tensor] = "pgd",
    eps: float | None = None,
    step_size: float | None = None,
    steps: int = 10,
    bounds: Bounds = None,
    random_start: bool = True,
    seed: int = 0,
    norm: str = "linf",
    loss: str = "ce",
    batch_size: int = 256,
) -> MeasureResult:
    """The fraction of the points ``data`` (batch first) classified as ``labels`` both at the
    point and at the attacked input (so it is at most the clean accuracy), with its standard
    error over points: the call shape of every measure, ``measure(model, data, *, options)``.

    ``attack`` is ``"pgd"`` (``step_size`` defaults to ``eps / 4``), ``"fgsm"``, or a function
    ``attack(model, x, y) -> x_adv`` (then ``eps`` and the attack options are not used). Points
    are attacked ``batch_size`` at a time; the PGD random starts of batch i use seed
    ``seed + i``. Returns a MeasureResult named "adv_accuracy" with
    ``extra["clean_accuracy"]``."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if callable(attack):
        params = {"attack": getattr(attack, "__name__", repr(attack))}

        def run(m: nn.Module, xb: Tensor, yb: Tensor, i: int) -> Tensor:
            return attack(m, xb, yb)
    elif attack in ATTACKS:
        if eps is None:
            raise InputError(f"attack={attack!r} needs eps (the perturbation budget)")
        step_size = eps / 4 if step_size is None else step_size
        params = dict(attack=attack, eps=float(eps), bounds=_describe(bounds), loss=loss)
        if attack == "pgd":
            params |= dict(step_size=step_size, steps=steps, random_start=random_start)
            params |= dict(seed=seed, norm=norm)

        def run(m: nn.Module, xb: Tensor, yb: Tensor, i: int) -> Tensor:
            if attack == "fgsm":
                return fgsm(m, xb, yb, eps, bounds, loss)
            return pgd(m, xb, yb, eps, step_size, steps, bounds, random_start, seed + i, norm, loss)
    else:
        raise invalid("attack", f"one of {list(ATTACKS)} or a function", attack)
    x, y = _prepare(model, data, labels, loss)
    if len(x) == 0:
        raise InputError("no points to attack: expected at least one")
    robust, clean = [], []
    for i, start in enumerate(range(0, len(x), batch_size)):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        adv = run(model, xb, yb, i)
        with torch.no_grad():
            ok = correct(model(xb), yb)
            clean.append(ok)
            robust.append(ok & correct(model(adv), yb))
    robust_t, clean_t = torch.cat(robust).double().cpu(), torch.cat(clean).double().cpu()
    n = len(robust_t)
    stderr = (robust_t.std() / math.sqrt(n)).item() if n > 1 else math.nan
    return MeasureResult(
        name="adv_accuracy",
        value=robust_t.mean().item(),
        stderr=stderr,
        params=params | {"batch_size": batch_size},
        extra={"clean_accuracy": clean_t.mean().item()},
        num_points=n,
    )


# ---------------------------------------------------------------------------- helpers
def _prepare(model: nn.Module, x: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """x in the model's dtype and device, y on that device; checks labels against the outputs."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise invalid(
            "x and y",
            "tensors (inputs, integer labels)",
            f"{type(x).__name__} and {type(y).__name__}",
            raw=True,
        )
    if len(y) != len(x):
        raise InputError(f"{len(x)} inputs but {len(y)} labels; expected one label per input")
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    elif not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not torch.isfinite(x).all():
        raise InputError("inputs contain NaN or inf; expected finite values")
    y = y.to(x.device)
    if len(x):
        with torch.no_grad():
            check_targets(model(x[:1]), y, loss)
    return x, y


def _gradient(model: nn.Module, x: Tensor, y: Tensor, loss: str) -> Tensor:
    """The input gradient of each point's loss (the sum's gradient: points are independent)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        total = point_losses(model(x), y, loss).sum()
        return torch.autograd.grad(total, x)[0]


def _norms(v: Tensor) -> Tensor:
    """Euclidean norm of each point, shaped to broadcast against ``v``."""
    return v.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (v.dim() - 1))


def _project(adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    delta = adv - x
    if norm == "linf":
        return x + delta.clamp(-eps, eps)
    scale = (eps / _norms(delta).clamp_min(torch.finfo(x.dtype).tiny)).clamp_max(1.0)
    return x + delta * scale


def _random_start(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    if norm == "linf":
        u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
        return ((2 * u - 1) * eps).to(x)
    d = x[0].numel()
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    radius = torch.rand(len(x), generator=gen, dtype=torch.float64) ** (1.0 / d)
    radius = radius.reshape((-1,) + (1,) * (x.dim() - 1))
    return (eps * radius * g / _norms(g).clamp_min(1e-300)).to(x)


def _check_bounds(bounds: Bounds, x: Tensor) -> tuple[Tensor, Tensor] | None:
    """(lo, hi) as tensors on x's device, after checking lo < hi and lo <= x <= hi; None for
    no bounds."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise InputError(f"bounds must be (lo, hi) or None; got {bounds!r}")
    lo, hi = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
    if not (lo < hi).all():
        raise InputError(f"bounds must have lo < hi; got {_describe(bounds)}")
    slack = 1e-6 * max(1.0, float(hi.abs().max()), float(lo.abs().max()))
    if len(x) and ((x < lo - slack).any() or (x > hi + slack).any()):
        raise InputError(
            f"the inputs range over [{float(x.min()):.4g}, {float(x.max()):.4g}], outside "
            f"bounds {_describe(bounds)}: give the valid range of the inputs as they enter the "
            "model (e.g. normalised pixel space), or bounds=None for no clipping"
        )
    return lo, hi


def _clip(x: Tensor, limits: tuple[Tensor, Tensor] | None) -> Tensor:
    """``x`` clipped to ``limits`` = (lo, hi), elementwise; ``x`` itself for no limits."""
    if limits is None:
        return x
    lo, hi = limits
    return torch.minimum(torch.maximum(x, lo), hi)


def _describe(bounds: Bounds) -> object:
    if bounds is None:
        return None
    return [b.tolist() if isinstance(b, Tensor) else float(b) for b in bounds]
