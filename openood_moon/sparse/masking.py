"""Exact-count weight masks with RigL, SET or static topology updates.

RigL (Evci et al., ICML 2020): every ``interval`` steps until ``end_step``, each sparse layer drops the
``f(t)·nnz`` active weights of smallest magnitude and grows as many previously inactive weights with
the largest |dense gradient|. SET (Mocanu et al., Nat. Commun. 2018) grows at random instead.
``f(t) = f0 · (1 + cos(pi·t/end_step)) / 2`` (cosine decay). Grown weights and their momentum start at
zero; masked weights are re-zeroed after every optimizer step, so they stay exactly 0.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from .density import layer_counts, maskable_parameters

METHOD_CHOICES = ("dense", "static", "set", "rigl")


def cosine_drop_fraction(step: int, initial: float, end_step: int) -> float:
    """Drop fraction ``initial · (1 + cos(pi·step/end_step)) / 2``, 0 from ``end_step`` on."""
    if end_step <= 0 or step >= end_step:
        return 0.0
    return initial * 0.5 * (1.0 + math.cos(math.pi * step / end_step))


class Masking:
    """Owns one boolean mask per conv/linear weight of ``model`` and keeps the weights on it."""

    def __init__(self, model: nn.Module, method: str = "rigl", density: float = 0.1,
                 init: str = "erk", drop_fraction: float = 0.3, interval: int = 100,
                 end_step: int = 0, seed: int = 0):
        if method not in METHOD_CHOICES:
            raise ValueError(f"unknown sparse.method {method!r}; valid choices: "
                             f"{', '.join(METHOD_CHOICES)}")
        if not 0.0 <= drop_fraction < 1.0:
            raise ValueError(f"sparse.drop_fraction must be in [0, 1), got {drop_fraction!r}")
        if interval < 1:
            raise ValueError(f"sparse.interval must be a positive step count, got {interval!r}")
        self.method, self.drop_fraction = method, float(drop_fraction)
        self.interval, self.end_step = int(interval), int(end_step)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.params: Dict[str, nn.Parameter] = {}
        self.masks: Dict[str, torch.Tensor] = {}
        self.updates_done = 0
        if method == "dense":
            return
        counts = layer_counts(model, density, init)
        for name, weight in maskable_parameters(model):
            self.params[name] = weight
            n, k = weight.numel(), counts[name]
            flat = torch.zeros(n, dtype=torch.bool)
            flat[torch.randperm(n, generator=self.generator)[:k]] = True
            self.masks[name] = flat.view_as(weight).to(weight.device)
        self.apply()

    # ------------------------------------------------------------------ keeping weights on the mask
    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked weight in place."""
        for name, mask in self.masks.items():
            self.params[name].mul_(mask)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        for name, mask in self.masks.items():
            grad = self.params[name].grad
            if grad is not None:
                grad.mul_(mask)

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero optimizer buffers (momentum, …) at masked positions."""
        for name, mask in self.masks.items():
            for value in optimizer.state.get(self.params[name], {}).values():
                if torch.is_tensor(value) and value.shape == mask.shape:
                    value.mul_(mask)

    def is_update_step(self, step: int) -> bool:
        """True on steps ``interval, 2·interval, …`` strictly before ``end_step`` (RigL/SET only)."""
        return (self.method in ("rigl", "set") and step > 0 and step % self.interval == 0
                and step < self.end_step)

    def step(self, optimizer: torch.optim.Optimizer, step: int) -> bool:
        """Optimizer step that keeps the sparsity; updates the topology on update steps.

        ``step`` counts optimizer steps from 1. Returns whether the topology was updated.
        """
        update = self.is_update_step(step)
        scores = self._grow_scores() if update else None   # dense |grad| before it is masked
        self.mask_gradients()
        optimizer.step()
        self.apply()
        self.mask_optimizer_state(optimizer)
        if update:
            self.update_topology(step, optimizer, scores)
        return update

    # ------------------------------------------------------------------ topology updates
    def _grow_scores(self) -> Dict[str, torch.Tensor]:
        scores = {}
        for name, weight in self.params.items():
            if self.method == "rigl":
                if weight.grad is None:
                    raise RuntimeError(f"RigL needs the dense gradient of {name}; call backward() first")
                scores[name] = weight.grad.detach().abs().clone()
            else:
                scores[name] = torch.rand(weight.shape, generator=self.generator).to(weight.device)
        return scores

    @torch.no_grad()
    def update_topology(self, step: int, optimizer: Optional[torch.optim.Optimizer],
                        scores: Dict[str, torch.Tensor]) -> Dict[str, int]:
        """Drop the smallest-|w| active weights, grow the best-scoring previously inactive ones."""
        fraction = cosine_drop_fraction(step, self.drop_fraction, self.end_step)
        swapped = {}
        for name, mask in self.masks.items():
            weight, flat_mask = self.params[name], mask.view(-1)
            active = int(flat_mask.sum())
            n = min(int(round(fraction * active)), flat_mask.numel() - active)
            swapped[name] = n
            if n <= 0:
                continue
            magnitude = weight.detach().abs().view(-1).masked_fill(~flat_mask, float("inf"))
            drop = torch.topk(magnitude, n, largest=False).indices
            score = scores[name].view(-1).to(torch.float32).masked_fill(flat_mask, float("-inf"))
            grow = torch.topk(score, n, largest=True).indices
            flat_mask[drop] = False
            flat_mask[grow] = True
            weight.view(-1)[grow] = 0.0
        self.apply()
        if optimizer is not None:
            self.mask_optimizer_state(optimizer)
        self.updates_done += 1
        return swapped

    # ------------------------------------------------------------------ reporting and state
    def density(self) -> float:
        """Fraction of non-zero entries over all masked weights (1.0 when dense)."""
        if not self.masks:
            return 1.0
        nnz = sum(int(m.sum()) for m in self.masks.values())
        return nnz / sum(m.numel() for m in self.masks.values())

    def layer_density(self) -> Dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def state_dict(self) -> dict:
        return {"masks": {n: m.cpu().clone() for n, m in self.masks.items()},
                "generator": self.generator.get_state(), "updates_done": self.updates_done}

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.masks):
            raise ValueError("mask names in the checkpoint do not match the model's maskable layers")
        for name, mask in state["masks"].items():
            self.masks[name].copy_(mask.to(self.masks[name].device))
        self.generator.set_state(state["generator"])
        self.updates_done = int(state["updates_done"])
        self.apply()
