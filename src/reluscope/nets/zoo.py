"""A small seeded model zoo: MLP, CNN and a small ResNet, all piecewise linear.

Every model is built only from ``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``,
``nn.LeakyReLU``, ``nn.AvgPool2d``, ``nn.Flatten`` and residual ``+``, is returned in eval mode,
and depends only on its arguments: the seed is applied inside a forked RNG, so the global torch
RNG state is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from reluscope.errors import InputError
from reluscope.validation import check_bool, check_int, check_number, invalid

ACTIVATIONS = ("relu", "leaky_relu")


def _activation(activation: str, slope: float) -> nn.Module:
    """Return a fresh activation module for ``activation`` ('relu' or 'leaky_relu')."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "leaky_relu":
        return nn.LeakyReLU(negative_slope=slope)
    raise invalid("activation", f"one of {list(ACTIVATIONS)}", activation)


def _randomize_batchnorm(model: nn.Module) -> None:
    """Give every BatchNorm2d random (seeded by the caller) affine parameters and running stats."""
    with torch.no_grad():
        for module in model.modules():
            if (
                isinstance(module, nn.BatchNorm2d)
                and module.running_mean is not None
                and module.running_var is not None
            ):
                n = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(n))
                module.running_var.copy_(0.5 + torch.rand(n))
                if module.affine:
                    module.weight.copy_(0.75 + 0.5 * torch.rand(n))
                    module.bias.copy_(0.2 * torch.randn(n))


def mlp(
    widths: Sequence[int],
    bias: bool = True,
    activation: str = "relu",
    slope: float = 0.01,
    init_multiplier: float = 1.0,
    seed: int = 0,
) -> nn.Sequential:
    """Build ``Sequential(Linear, act, Linear, act, ..., Linear)`` with layer sizes ``widths``.

    Weights use PyTorch's default initialisation under ``seed``; every weight and bias is then
    multiplied by ``init_multiplier``. ``activation`` is 'relu' or 'leaky_relu' (negative slope
    ``slope``). There is no activation after the last layer.
    """
    if not isinstance(widths, Sequence) or isinstance(widths, str) or len(widths) < 2:
        raise InputError(f"mlp needs at least 2 widths (input and output); got {widths!r}")
    widths = tuple(widths)
    for i, w in enumerate(widths):
        check_int(f"widths[{i}]", w, minimum=1)
    check_bool("bias", bias)
    if activation not in ACTIVATIONS:
        raise invalid("activation", f"one of {list(ACTIVATIONS)}", activation)
    check_number("slope", slope)
    check_number("init_multiplier", init_multiplier, minimum=0, strict=True)
    check_int("seed", seed, minimum=0)

    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
            if i < len(widths) - 2:
                layers.append(_activation(activation, float(slope)))
    model = nn.Sequential(*layers)
    if init_multiplier != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(init_multiplier)
    return model.eval()


def cnn(
    in_channels: int = 1,
    image_size: int = 28,
    channels: Sequence[int] = (8, 16),
    num_classes: int = 10,
    bias: bool = True,
    batchnorm: bool = False,
    seed: int = 0,
) -> nn.Sequential:
    """Build a plain CNN: per stage conv3x3 (stride 1, padding 1) -> [BN] -> ReLU -> AvgPool2d(2),
    then Flatten -> Linear(num_classes). Inputs are ``(N, in_channels, image_size, image_size)``.

    With ``batchnorm`` the BN layers get random seeded affine parameters and running statistics.
    """
    check_int("in_channels", in_channels, minimum=1)
    check_int("image_size", image_size, minimum=1)
    check_int("num_classes", num_classes, minimum=1)
    check_bool("bias", bias)
    check_bool("batchnorm", batchnorm)
    check_int("seed", seed, minimum=0)
    if isinstance(channels, int) and not isinstance(channels, bool):
        channels = (channels,)
    if not isinstance(channels, Sequence) or isinstance(channels, str) or len(channels) == 0:
        raise invalid("channels", "a non-empty sequence of integers", channels)
    for i, c in enumerate(channels):
        check_int(f"channels[{i}]", c, minimum=1)
    size = image_size
    for _ in channels:
        size //= 2
    if size < 1:
        raise InputError(
            f"image_size {image_size} is too small for {len(channels)} pooling stages; "
            f"expected at least {2 ** len(channels)}"
        )

    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prev = in_channels
        for c in channels:
            layers.append(nn.Conv2d(prev, c, kernel_size=3, stride=1, padding=1, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.ReLU(), nn.AvgPool2d(2)]
            prev = c
        layers += [nn.Flatten(), nn.Linear(prev * size * size, num_classes, bias=bias)]
        model = nn.Sequential(*layers)
        _randomize_batchnorm(model)
    return model.eval()


class BasicBlock(nn.Module):
    """Residual block computing ``relu(x + F(x))`` with ``F = conv-[BN]-ReLU-conv-[BN]``."""

    def __init__(self, width: int, bias: bool = True, batchnorm: bool = True) -> None:
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(width, width, 3, padding=1, bias=bias)]
        if batchnorm:
            body.append(nn.BatchNorm2d(width))
        body += [nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=bias)]
        if batchnorm:
            body.append(nn.BatchNorm2d(width))
        self.body = nn.Sequential(*body)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(x + body(x))``."""
        return self.relu(x + self.body(x))


def resnet(
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 16,
    blocks: int = 2,
    num_classes: int = 10,
    batchnorm: bool = True,
    bias: bool = True,
    seed: int = 0,
) -> nn.Sequential:
    """Build a small ResNet: stem conv3x3-[BN]-ReLU, ``blocks`` BasicBlocks of ``width`` channels,
    global average pooling (AvgPool2d(image_size)), Flatten, Linear(num_classes).

    With ``batchnorm`` the BN layers get random seeded affine parameters and running statistics,
    so that BatchNorm folding is non-trivial.
    """
    check_int("in_channels", in_channels, minimum=1)
    check_int("image_size", image_size, minimum=1)
    check_int("width", width, minimum=1)
    check_int("blocks", blocks, minimum=0)
    check_int("num_classes", num_classes, minimum=1)
    check_bool("batchnorm", batchnorm)
    check_bool("bias", bias)
    check_int("seed", seed, minimum=0)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=bias),
        ]
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        layers += [BasicBlock(width, bias=bias, batchnorm=batchnorm) for _ in range(blocks)]
        layers += [
            nn.AvgPool2d(image_size),
            nn.Flatten(),
            nn.Linear(width, num_classes, bias=bias),
        ]
        model = nn.Sequential(*layers)
        _randomize_batchnorm(model)
    return model.eval()


ZOO: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "resnet": resnet}
