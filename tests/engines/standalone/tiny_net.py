"""A tiny network with OpenOOD's contract on R^4, shared by the standalone-engine tests.

feature = relu([x, -x]) (F = 8); fc reads class c off x_c with weight ``scale``. With
``unknown=True`` it is a MOON net whose unknown logit (weight ``unknown_weight`` on x_0..x_2, bias
``unknown_bias``) is high near the origin. Counts its forward calls.
"""
import torch
from torch import nn

K, D, F = 3, 4, 8


class TinyNet(nn.Module):
    feature_size = F

    def __init__(self, unknown=False, scale=3.0, unknown_weight=-3.0, unknown_bias=6.0):
        super().__init__()
        self.body = nn.Linear(D, F, bias=False)
        self.fc = nn.Linear(F, K)
        with torch.no_grad():
            self.body.weight.copy_(torch.cat([torch.eye(D), -torch.eye(D)]))
            self.fc.weight.copy_(0.05 * torch.randn(K, F, generator=torch.Generator().manual_seed(0)))
            self.fc.weight[:, :K] += scale * torch.eye(K)
            self.fc.bias.zero_()
        if unknown:
            self.fc_unknown = nn.Linear(F, 1)
            with torch.no_grad():
                self.fc_unknown.weight.zero_()
                self.fc_unknown.weight[0, :K] = unknown_weight
                self.fc_unknown.bias.fill_(unknown_bias)
        self.calls = 0

    def forward(self, x, return_feature=False, return_unknown=False):
        self.calls += 1
        feat = torch.relu(self.body(x))
        logits = self.fc(feat)
        if return_unknown:
            logits = torch.cat([logits, self.fc_unknown(feat)], dim=1)
        return (logits, feat) if return_feature else logits

    def forward_threshold(self, x, threshold):
        return self.fc(torch.relu(self.body(x)).clip(max=threshold))

    def get_fc(self):
        return self.fc.weight.detach().numpy(), self.fc.bias.detach().numpy()

    def get_fc_layer(self):
        return self.fc
