"""reluscope: look inside piecewise-linear (ReLU) networks."""

from reluscope.errors import InputError, ReluscopeError, UnsupportedLayerError
from reluscope.measures import (
    local_complexity,
    local_rank,
    neighborhood_complexity,
    neural_collapse,
    total_variation,
    weight_ranks,
)
from reluscope.nets import PWLNet, trace
from reluscope.regions import line, plane, plane_through

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "PWLNet",
    "ReluscopeError",
    "UnsupportedLayerError",
    "line",
    "local_complexity",
    "local_rank",
    "neighborhood_complexity",
    "neural_collapse",
    "plane",
    "plane_through",
    "total_variation",
    "trace",
    "weight_ranks",
]
