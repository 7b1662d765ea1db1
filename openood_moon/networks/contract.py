"""OpenOOD's network contract, shared by every backbone written here.

A subclass defines ``fc`` (the K-way ``nn.Linear``), ``feature_size`` and ``feature_list(x)``: the
list of intermediate feature maps whose last entry is the pooled penultimate feature.
"""
from typing import List

import torch
from torch import nn


class OODNetwork(nn.Module):
    fc: nn.Linear
    feature_size: int

    def feature_list(self, x: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x, return_feature: bool = False, return_feature_list: bool = False):
        feats = self.feature_list(x)
        feature = feats[-1].flatten(1)
        logits = self.fc(feature)
        if return_feature:
            return logits, feature
        if return_feature_list:
            return logits, feats
        return logits

    def forward_threshold(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        """ReAct (Sun et al., NeurIPS 2021): clip the penultimate feature at ``threshold``."""
        feature = self.feature_list(x)[-1].flatten(1).clip(max=threshold)
        return self.fc(feature)

    def get_fc(self):
        return (self.fc.weight.detach().cpu().numpy(), self.fc.bias.detach().cpu().numpy())

    def get_fc_layer(self) -> nn.Linear:
        return self.fc
