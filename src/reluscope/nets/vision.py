"""The torchvision classics, rebuilt without torchvision: ResNet-18, VGG-11-BN, AlexNet and
MobileNetV2 with exactly torchvision's layer structure and module names (so a torchvision state
dict loads into them), plus ``num_classes``, ``image_size`` (recorded for the zoo's input shape)
and ``width_mult`` (every channel and hidden width times it; 1 gives torchvision's sizes).

Every model is returned in eval mode, seeded inside a forked RNG, with random BatchNorm
statistics so that BatchNorm folding is not trivial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reluscope.errors import InputError
from reluscope.nets.zoo import _randomize_batchnorm
from reluscope.validation import check_int


def _check_mult(width_mult: object) -> float:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise InputError(f"width_mult must be a number > 0; got {width_mult!r}")
    return float(width_mult)


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


def _check_common(num_classes, image_size, in_channels, seed, minimum_size: int) -> None:
    check_int("num_classes", num_classes, minimum=1)
    check_int("in_channels", in_channels, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("image_size", image_size, minimum=1)
    if image_size < minimum_size:
        raise InputError(f"image_size must be >= {minimum_size} for this model; got {image_size}")


def _seeded(seed: int, build) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        _randomize_batchnorm(model)
    return model.eval()


# ------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet with BasicBlocks."""

    def __init__(self, layers: list[int], num_classes: int, width_mult: float, in_channels: int):
        super().__init__()
        widths = [_scaled(c, width_mult) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet18(
    num_classes: int = 1000,
    image_size: int = 224,
    width_mult: float = 1.0,
    in_channels: int = 3,
    seed: int = 0,
) -> ResNet:
    """ResNet-18 (torchvision's structure: 7x7 stride-2 stem, BN, ReLU(inplace), MaxPool 3x3/2
    pad 1, four stages of two BasicBlocks with 1x1 downsampling, AdaptiveAvgPool2d, fc)."""
    _check_common(num_classes, image_size, in_channels, seed, 1)
    mult = _check_mult(width_mult)
    return _seeded(seed, lambda: ResNet([2, 2, 2, 2], num_classes, mult, in_channels))


# ------------------------------------------------------------------------------- VGG-11-BN
class VGG(nn.Module):
    """torchvision.models.vgg.VGG."""

    def __init__(self, features: nn.Sequential, num_classes: int, hidden: int, channels: int):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


_VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def vgg11_bn(
    num_classes: int = 1000,
    image_size: int = 224,
    width_mult: float = 1.0,
    in_channels: int = 3,
    seed: int = 0,
) -> VGG:
    """VGG-11 with BatchNorm (torchvision's ``features``/``avgpool``/``classifier`` layout)."""
    _check_common(num_classes, image_size, in_channels, seed, 32)
    mult = _check_mult(width_mult)

    def build() -> VGG:
        layers: list[nn.Module] = []
        c = in_channels
        for v in _VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = _scaled(int(v), mult)
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(True)]
                c = out
        return VGG(nn.Sequential(*layers), num_classes, _scaled(4096, mult), c)

    return _seeded(seed, build)


# ------------------------------------------------------------------------------- AlexNet
class AlexNet(nn.Module):
    """torchvision.models.alexnet.AlexNet."""

    def __init__(self, num_classes: int, width_mult: float, in_channels: int) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (_scaled(c, width_mult) for c in (64, 192, 384, 256, 256))
        hidden = _scaled(4096, width_mult)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(c5 * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def alexnet(
    num_classes: int = 1000,
    image_size: int = 224,
    width_mult: float = 1.0,
    in_channels: int = 3,
    seed: int = 0,
) -> AlexNet:
    """AlexNet (torchvision's layout); image_size >= 63 so that the last max pool has input."""
    _check_common(num_classes, image_size, in_channels, seed, 63)
    mult = _check_mult(width_mult)
    return _seeded(seed, lambda: AlexNet(num_classes, mult, in_channels))


# ------------------------------------------------------------------------------- MobileNetV2
def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: to a multiple of ``divisor``, never below 90% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation with BatchNorm2d and ReLU6."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


_MOBILENET_V2 = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                 [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]  # fmt: skip


class MobileNetV2(nn.Module):
    """torchvision.models.mobilenetv2.MobileNetV2."""

    def __init__(self, num_classes: int, width_mult: float, in_channels: int) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [Conv2dNormActivation(in_channels, input_channel, stride=2)]
        for t, c, n, s in _MOBILENET_V2:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.2), nn.Linear(self.last_channel, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def mobilenet_v2(
    num_classes: int = 1000,
    image_size: int = 224,
    width_mult: float = 1.0,
    in_channels: int = 3,
    seed: int = 0,
) -> MobileNetV2:
    """MobileNetV2 (torchvision's layout: ReLU6, depthwise convolutions, inverted residuals)."""
    _check_common(num_classes, image_size, in_channels, seed, 1)
    mult = _check_mult(width_mult)
    return _seeded(seed, lambda: MobileNetV2(num_classes, mult, in_channels))


VISION_MODELS = {
    "resnet18": resnet18,
    "vgg11_bn": vgg11_bn,
    "alexnet": alexnet,
    "mobilenet_v2": mobilenet_v2,
}
