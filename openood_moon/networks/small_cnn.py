"""A small CNN for 28x28 inputs: conv32-BN-ReLU-pool-conv64-BN-ReLU-pool-fc128-fc.

No BatchNorm on the penultimate fc: in our first trial it inverted far-OOD scores.
Max-pooling runs before the ReLU: the two commute (ReLU is monotone, max is exact), so values and
gradients are those of ReLU-then-pool, with the ReLU on a quarter of the entries. The adaptive pool
to 7x7 runs only on maps that are not 7x7 already (28x28 inputs give 7x7: it would be the identity).
"""
import torch.nn.functional as F
from torch import nn

from .contract import OODNetwork


class SmallCNN(OODNetwork):
    def __init__(self, num_classes: int = 6, in_channels: int = 3, width: int = 32,
                 feature_size: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.fc1 = nn.Linear(2 * width * 49, feature_size)
        self.fc = nn.Linear(feature_size, num_classes)
        self.feature_size = feature_size

    def feature_list(self, x):
        f1 = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        f2 = F.relu(F.max_pool2d(self.bn2(self.conv2(f1)), 2))
        if f2.shape[-2:] != (7, 7):
            f2 = self.pool(f2)
        return [f1, f2, F.relu(self.fc1(f2.flatten(1)))]

    def intermediate_forward(self, x, layer_index: int):
        if layer_index not in (1, 2):
            raise ValueError(f"layer_index must be 1 or 2 for SmallCNN, got {layer_index}")
        return self.feature_list(x)[layer_index - 1]
