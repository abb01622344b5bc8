"""reluscope: look inside piecewise-linear (ReLU) networks."""

from reluscope.errors import InputError, ReluscopeError, UnsupportedLayerError
from reluscope.nets import PWLNet, trace
from reluscope.regions import line, plane, plane_through

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "PWLNet",
    "ReluscopeError",
    "UnsupportedLayerError",
    "line",
    "plane",
    "plane_through",
    "trace",
]
