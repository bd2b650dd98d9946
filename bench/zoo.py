"""Model definitions of the zoo. Registered by name in `bench.models.MODELS`."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class EdgeCNN(nn.Module):
    """A small plain CNN for 28x28 inputs.

    Why this shape: on a 2-core CPU, training time is dominated by convolutions at full 28x28
    resolution, so only the cheap stem runs there and the first downsampling follows it; the
    wider layers run at 14x14 and 7x7. The head keeps the spatial layout of the last 7x7 map
    (position matters for garments: a collar is at the top) instead of global average pooling:
    measured here, +1.1 pt test top-1 over a GAP head at the same training budget.

    The head is a 7x7 convolution over the 7x7 map (the same function as flatten + Linear), and
    its 1x1 output is reduced with a mean over H and W rather than flattened: ONNX and onnx2tf then
    need no Transpose from NHWC back to NCHW order before a flatten, so the TFLite graph has none.
    Plain conv/BN/ReLU/max-pool layers map to every runtime and int8 kernel, and Torch-Pruning can
    remove channels from every layer but the head's outputs (the classes).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0,
                 channels: tuple[int, ...] = (24, 48, 48, 64), input_size: int = 28) -> None:
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
        self.classifier = nn.Conv2d(c4, num_classes, input_size // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean(dim=(2, 3))


def edgecnn(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    return EdgeCNN(in_channels, num_classes, width)


def tinycnn(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """A few-thousand-parameter CNN that trains in seconds; used by tests and smoke runs."""
    return EdgeCNN(in_channels, num_classes, width, channels=(8, 8, 16, 16))


def mobilenet_v2(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """torchvision MobileNetV2 with a stride-1 stem, so 28x28 inputs keep enough resolution.

    width 1.0 is torchvision's width_mult 0.5 (the full 1.0 network is far larger than 28x28
    inputs need); width scales it from there, so distill(width=0.5) gets width_mult 0.25.
    """
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    model = tv_mobilenet_v2(num_classes=num_classes, width_mult=0.5 * width)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, 1, 1, bias=False)
    return model


def resnet18(in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (CIFAR-style), for 28x28.

    width scales every layer's channels (64-128-256-512 at width 1.0).
    """
    from torchvision.models.resnet import BasicBlock, ResNet

    class _ScaledResNet(ResNet):
        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # noqa: ANN001, ANN202 - torchvision's signature
            if planes == 64:  # the first stage: it starts from the (scaled) stem's channels
                self.inplanes = _scaled(64, width)
            return super()._make_layer(block, _scaled(planes, width), blocks, stride, dilate)

    model = _ScaledResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    stem = _scaled(64, width)
    model.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision initialises convs
    model.bn1 = nn.BatchNorm2d(stem)
    model.maxpool = nn.Identity()
    model.fc = nn.Linear(_scaled(512, width), num_classes)
    return model
