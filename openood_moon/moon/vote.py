"""MOON's vote: an equal-weight average of weight snapshots, then BatchNorm recalibration.

Lei et al., TMLR 2024 ("epoch-wise weight averaging"), as SWA (Izmailov et al., UAI 2018):
``θ̄ = (1/n) Σ_i θ_i`` over the snapshots; BN statistics are not averaged but recomputed with one
pass over the training data. The recalibration here sets each BN layer's running mean and
(unbiased) variance to the exact statistics of all its inputs in that pass, not a mean of batch
statistics.
"""
import copy
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..netutils import model_input


class WeightVote:
    """Running equal-weight mean of a model's parameters (buffers are left to BN recalibration)."""

    def __init__(self):
        self.mean = None
        self.count = 0

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        params = [p.detach() for p in model.parameters()]
        if self.mean is None:
            self.mean = [p.clone() for p in params]
        else:
            for m, p in zip(self.mean, params):
                m.add_(p - m, alpha=1.0 / (self.count + 1))
        self.count += 1

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the averaged parameters."""
        if self.mean is None:
            raise RuntimeError("the vote holds no snapshot yet")
        out = copy.deepcopy(model)
        for p, m in zip(out.parameters(), self.mean):
            p.copy_(m)
        return out

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": None if self.mean is None else [m.clone() for m in self.mean]}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.mean = None if state["mean"] is None else [m.clone() for m in state["mean"]]


def _reduced(bns, sums, samples: int, reduce):
    """``reduce`` applied once to every layer's ``[Σx, Σx², n]`` laid end to end and the sample count."""
    parts = [torch.cat([s, sq, s.new_tensor([n])]) for s, sq, n in (sums[bn] for bn in bns)]
    packed = reduce(torch.cat(parts + [parts[0].new_tensor([samples])]))
    out, offset = {}, 0
    for bn, part in zip(bns, parts):
        c = (part.numel() - 1) // 2
        out[bn] = (packed[offset:offset + c], packed[offset + c:offset + 2 * c], packed[offset + 2 * c].item())
        offset += part.numel()
    return out, int(packed[-1].item())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[torch.Tensor], device="cpu",
                          reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> int:
    """Set every BN layer's running stats to the exact mean / unbiased variance of its inputs.

    One forward pass in train mode, without autograd, over ``inputs`` (batches of input tensors), as in SWA's
    ``update_bn``; per channel, sums of x and x² are accumulated in float64. Returns the number
    of samples seen.

    ``reduce`` (several processes: :func:`openood_moon.distributed.sum_over_ranks`) sums the per-channel
    sums, sums of squares and counts over all ranks before the statistics are formed, so every rank
    gets the statistics of all ranks' inputs; the returned count is then all ranks' too.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    sums = {}

    def hook(module, args):
        x = args[0].detach()
        x = x.movedim(1, -1).reshape(-1, x.shape[1]).double()   # (samples, C): a view when channels-last
        s, sq, n = sums.get(module, (0.0, 0.0, 0))
        sums[module] = (s + x.sum(0), sq + (x * x).sum(0), n + x.shape[0])

    was_training = model.training
    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    model.train()
    samples = 0
    try:
        with torch.no_grad():
            for x in inputs:
                model(model_input(x, device))       # channels-last where training is
                samples += x.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if reduce is not None:
        sums, samples = _reduced(bns, sums, samples, reduce)
    for bn in bns:
        s, sq, n = sums[bn]
        mean = s / n
        var = (sq - n * mean * mean) / max(n - 1, 1)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.clamp(min=0).to(bn.running_var.dtype))
        bn.num_batches_tracked.zero_()
    return samples
