"""The piecewise-linear view of PyTorch models, and a small model zoo."""

from reluscope.nets.pwl import PWLNet, Site
from reluscope.nets.spec import load_model
from reluscope.nets.trace import SUPPORTED, as_pwlnet, trace
from reluscope.nets.vision import alexnet, mobilenet_v2, resnet18, vgg11_bn
from reluscope.nets.zoo import cnn, mlp, resnet

__all__ = [
    "PWLNet",
    "Site",
    "SUPPORTED",
    "alexnet",
    "as_pwlnet",
    "cnn",
    "load_model",
    "mlp",
    "mobilenet_v2",
    "resnet",
    "resnet18",
    "trace",
    "vgg11_bn",
]
