"""Model factories used by tests/test_spec.py through 'factories:NAME' specs."""

from __future__ import annotations

from torch import nn


def tiny(width: int = 4) -> nn.Sequential:
    """A 2 -> width -> 1 ReLU MLP built from the global RNG."""
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 1))


def seeded(width: int = 4, seed: int = 0) -> nn.Sequential:
    """Like tiny, but records the seed it was given in the returned module."""
    model = tiny(width)
    model.given_seed = seed
    return model


def not_a_module() -> int:
    """Returns something that is not an nn.Module."""
    return 3


NOT_CALLABLE = 5
