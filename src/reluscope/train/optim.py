"""The optimiser of a TrainConfig and its learning rate at every step."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from reluscope.errors import InputError
from reluscope.train.config import TrainConfig


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of the update from step ``step`` to ``step + 1`` (step 0 = the first).

    With W = ``warmup_steps``, T = ``steps`` and s = ``warmup_start``: ``lr * (s + (1 - s) *
    step / W)`` for step < W (linear warm-up, torch's ``LinearLR``), then ``lr`` (constant) or
    ``min_lr + (lr - min_lr) * (1 + cos(pi * (step - W) / (T - W))) / 2`` (cosine annealing to
    ``min_lr`` at step T, torch's ``CosineAnnealingLR``). A pure function of the step, so a
    resumed run follows the same schedule."""
    c = config
    if step < c.warmup_steps:
        return c.lr * (c.warmup_start + (1 - c.warmup_start) * step / c.warmup_steps)
    if c.schedule == "constant":
        return c.lr
    progress = (step - c.warmup_steps) / (c.steps - c.warmup_steps)
    return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The trainable parameters in two groups: weights (2-d and more) with ``weight_decay``,
    and biases and other 1-d parameters (norm scales) without it unless ``decay_biases``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters (requires_grad=True)")
    decayed = [p for p in params if p.dim() >= 2 or config.decay_biases]
    plain = [p for p in params if not (p.dim() >= 2 or config.decay_biases)]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with ``momentum``; weight decay added to the gradient), Adam (weight decay added to
    the gradient, i.e. L2) or AdamW (decoupled weight decay: each step multiplies the decayed
    weights by ``1 - lr * weight_decay``), over :func:`param_groups`, at learning rate
    ``config.lr`` (the trainer sets each step's rate from :func:`learning_rate`)."""
    groups = param_groups(model, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)
