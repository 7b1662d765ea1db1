"""MoonNet: any OpenOOD-contract backbone plus a one-logit "unknown" head (Lei et al., TMLR 2024).

The head is split: ``fc`` (the backbone's K-way layer) and ``fc_unknown`` (F -> 1). ``forward``
returns the K class logits, so every standard postprocessor sees an ordinary K-class model;
``forward(x, return_unknown=True)`` returns the K+1 logits, index K being "unknown".
"""
from typing import Dict

import torch
from torch import nn


class MoonNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int = None):
        super().__init__()
        fc = backbone.get_fc_layer() if hasattr(backbone, "get_fc_layer") else backbone.fc
        if num_classes is not None and fc.out_features != num_classes:
            raise ValueError(f"backbone has {fc.out_features} outputs, expected num_classes={num_classes}")
        self.backbone = backbone
        self.feature_size = int(getattr(backbone, "feature_size", fc.in_features))
        self.num_classes = fc.out_features
        self.fc_unknown = nn.Linear(self.feature_size, 1)

    @property
    def fc(self) -> nn.Linear:
        return self.backbone.fc

    def forward(self, x, return_feature: bool = False, return_feature_list: bool = False,
                return_unknown: bool = False):
        if return_feature_list and not return_feature:
            logits, feats = self.backbone(x, return_feature_list=True)
            feature = feats[-1].flatten(1)
        else:
            logits, feature = self.backbone(x, return_feature=True)
        if return_unknown:
            logits = torch.cat([logits, self.fc_unknown(feature)], dim=1)
        if return_feature:
            return logits, feature
        if return_feature_list:
            return logits, feats
        return logits

    def forward_threshold(self, x, threshold: float):
        return self.backbone.forward_threshold(x, threshold)

    def intermediate_forward(self, x, layer_index: int):
        return self.backbone.intermediate_forward(x, layer_index)

    def get_fc(self):
        return self.backbone.get_fc()

    def get_fc_layer(self) -> nn.Linear:
        return self.fc


def export_state_dict(net: nn.Module) -> Dict[str, torch.Tensor]:
    """Plain backbone state_dict: K-way fc, no unknown head, no masks (DDP/AveragedModel unwrapped)."""
    net = getattr(net, "module", net)
    if isinstance(net, MoonNet):
        net = net.backbone
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
