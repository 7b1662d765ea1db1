"""CIFAR-style ResNet-18 (He et al., CVPR 2016) for 32x32 inputs.

Module names match OpenOOD v1.5's ``ResNet18_32x32``, so a plain state_dict loads there with
``strict=True``.
"""
import torch.nn.functional as F
from torch import nn

from .contract import OODNetwork


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18_32x32(OODNetwork):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes, layers = width, []
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2 ** i
            layers.append(nn.Sequential(BasicBlock(planes, out, stride), BasicBlock(out, out, 1)))
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        self.feature_size = planes

    def feature_list(self, x):
        f1 = F.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(f1)
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        return [f1, f2, f3, f4, self.avgpool(f5)]

    def intermediate_forward(self, x, layer_index: int):
        if layer_index not in (1, 2, 3, 4):
            raise ValueError(f"layer_index must be in 1..4, got {layer_index}")
        return self.feature_list(x)[layer_index]
