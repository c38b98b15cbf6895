"""The networks of the paper's experiments, plus a small CNN for fast 28×28 runs.

- CIFAR ResNets (He et al. 2016, §4.2): 6n+2 layers, three stages of 16/32/64 channels,
  identity shortcuts with zero padding where the shape changes (option A).
  resnet20 has 269,722 parameters and 40.55M multiply-accumulates per 32×32 image.
- resnet18: the ImageNet ResNet-18 adapted to CIFAR (3×3 stem, no max-pool, 1×1
  projection shortcuts), as commonly used for CIFAR experiments.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch.nn.functional as F
from torch import nn


def _init(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by the stride and zero-pad the new channels (no parameters)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(stride, planes - in_planes)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs: a 3×3 stem, stages of BasicBlocks, global pooling, a linear head."""

    def __init__(self, blocks_per_stage, widths, num_classes=10, shortcut="A", in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for i, (n, planes) in enumerate(zip(blocks_per_stage, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stage_names = [f"layer{i + 1}" for i in range(len(stages))]
        for name, stage in zip(self.stage_names, stages):
            setattr(self, name, stage)
        self.fc = nn.Linear(in_planes, num_classes)
        _init(self)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _widths(base, width: float) -> list[int]:
    """Channels per stage scaled by `width` (a thin network below 1; parameters scale about as width²)."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return [max(1, round(c * width)) for c in base]


def _cifar_resnet(depth: int, num_classes: int, width: float = 1.0) -> CifarResNet:
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return CifarResNet([n] * 3, _widths([16, 32, 64], width), num_classes)


def resnet20(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    return _cifar_resnet(20, num_classes, width)


def resnet32(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    return _cifar_resnet(32, num_classes, width)


def resnet56(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    return _cifar_resnet(56, num_classes, width)


def resnet110(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    return _cifar_resnet(110, num_classes, width)


def resnet18(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-18 for CIFAR: 64/128/256/512 channels, two blocks a stage, projection shortcuts."""
    return CifarResNet([2, 2, 2, 2], _widths([64, 128, 256, 512], width), num_classes, shortcut="B")


class SmallCNN(nn.Module):
    """A four-layer CNN for 28×28 single-channel images (Fashion-MNIST): quick CPU experiments."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        w = _widths([32], width)[0]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(2 * w * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)
        _init(self)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, width)


MODELS = {"resnet20": resnet20, "resnet32": resnet32, "resnet56": resnet56,
          "resnet110": resnet110, "resnet18": resnet18, "small_cnn": small_cnn}
ModelName = Literal["resnet20", "resnet32", "resnet56", "resnet110", "resnet18", "small_cnn"]  # TrainConfig.model
assert tuple(MODELS) == get_args(ModelName), "ModelName must list MODELS"


def build_model(name: str, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """A model by name (one of MODELS), its channels scaled by `width`."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](num_classes=num_classes, width=width)
