"""MOON's unknown-aware loss over K+1 logits (Lei et al., TMLR 2024; official code extra_c_loss).

Per sample: ``h = -log softmax(z)[y]`` over all K+1 logits, ``p = softmax(z)[K]`` (unknown
probability, clamped to 1-1e-7), ``c = 1[argmax_{0..K} z == y]``,
``w = c + (1 - c)·(1 + α / (1 + α·p))``; ``L = mean(h·w)``. ``w`` is not detached, so the gradient
also flows through ``p`` and pushes misclassified samples' mass towards "unknown". With ``α=None``
(warm-up) the loss is plain cross-entropy over the K+1 logits.
"""
from typing import Optional

import torch
import torch.nn.functional as F


def moon_loss(logits: torch.Tensor, target: torch.Tensor, alpha: Optional[float]) -> torch.Tensor:
    log_prob = F.log_softmax(logits, dim=1)
    h = -log_prob.gather(1, target.view(-1, 1)).squeeze(1)
    if alpha is None:
        return h.mean()
    p = log_prob[:, -1].exp().clamp(max=1 - 1e-7)
    c = (logits.argmax(dim=1) == target).to(logits.dtype)
    w = c + (1 - c) * (1 + alpha / (1 + alpha * p))
    return (h * w).mean()


def tuner_statistic(logits: torch.Tensor, target: torch.Tensor) -> float:
    """``mean((1 - p)·h)``, the quantity the α auto-tuner averages (DAC, Thulasidasan et al. 2019)."""
    with torch.no_grad():
        log_prob = F.log_softmax(logits.float(), dim=1)
        h = -log_prob.gather(1, target.view(-1, 1)).squeeze(1)
        p = log_prob[:, -1].exp().clamp(max=1 - 1e-7)
        return float(((1 - p) * h).mean())
