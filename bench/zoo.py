"""Model definitions of the zoo. Registered by name in `bench.models.MODELS`."""

from __future__ import annotations

from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class EdgeCNN(nn.Module):
    """A small plain CNN for 28x28 inputs.

    Why this shape: on a 2-core CPU, training time is dominated by convolutions at full 28x28
    resolution, so only the cheap stem runs there; the first downsampling happens right after
    it, and the wide layers run at 14x14 and 7x7. Plain conv/BN/ReLU/max-pool layers map to
    every runtime (ORT, TFLite, int8 kernels) without exotic operators, and Torch-Pruning can
    remove channels from every layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0,
                 channels: tuple[int, ...] = (32, 48, 64, 96)) -> None:
        super().__init__()
        c1, c2, c3, c4 = (_scaled(c, width) for c in channels)
        self.features = nn.Sequential(
            _conv_bn(in_channels, c1),   # 28x28
            nn.MaxPool2d(2),             # -> 14x14
            _conv_bn(c1, c2),
            _conv_bn(c2, c3),
            nn.MaxPool2d(2),             # -> 7x7
            _conv_bn(c3, c4),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c4, num_classes)

    def forward(self, x):  # noqa: ANN001, ANN201 - torch convention
        return self.classifier(self.pool(self.features(x)).flatten(1))


def edgecnn(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    return EdgeCNN(in_channels, num_classes, width)


def tinycnn(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """A few-thousand-parameter CNN that trains in seconds; used by tests and smoke runs."""
    return EdgeCNN(in_channels, num_classes, width, channels=(8, 8, 16, 16))


def mobilenet_v2(in_channels: int = 1, num_classes: int = 10, width: float = 0.5) -> nn.Module:
    """torchvision MobileNetV2 with a stride-1 stem, so 28x28 inputs keep enough resolution."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    model = tv_mobilenet_v2(num_classes=num_classes, width_mult=width if width != 1.0 else 0.5)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, 1, 1, bias=False)
    return model


def resnet18(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (CIFAR-style), for 28x28."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model
