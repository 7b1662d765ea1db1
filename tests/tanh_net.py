"""A contract backbone with tanh activations, for the sparse-topology tests: no unit is dead, so no
gradient is exactly zero (the released growth breaks zero-gradient ties among active and inactive
positions arbitrarily, so ties would make its choices untestable)."""
import torch
from torch import nn

from openood_moon.networks import OODNetwork


class TanhNet(OODNetwork):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, bias=False)
        self.fc1 = nn.Linear(4 * 6 * 6, 16)
        self.fc = nn.Linear(16, num_classes)
        self.feature_size = 16

    def feature_list(self, x):
        f1 = torch.tanh(self.conv1(x))
        return [f1, torch.tanh(self.fc1(f1.flatten(1)))]
