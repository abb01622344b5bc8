"""The piecewise-linear view of PyTorch models, and a small model zoo."""

from reluscope.nets.pwl import PWLNet, Site
from reluscope.nets.spec import load_model
from reluscope.nets.trace import SUPPORTED, as_pwlnet, trace
from reluscope.nets.zoo import cnn, mlp, resnet

__all__ = [
    "PWLNet",
    "Site",
    "SUPPORTED",
    "as_pwlnet",
    "cnn",
    "load_model",
    "mlp",
    "resnet",
    "trace",
]
