"""Exact-count weight masks with RigL, SET or static topology updates.

RigL (Evci et al., ICML 2020): every ``interval`` steps until ``end_step``, each budget layer (see
``density.py``; MoonNet's ``fc`` + ``fc_unknown`` are one K+1-row layer) drops the
``ceil(f(t)·nnz)`` active weights of smallest magnitude (``ceil`` as the released MOON code's
``magnitude_prune``; RigL's TF code floors) and grows as many weights with the largest |dense
gradient| among all inactive positions *after* the drop, so a weight just dropped may come straight
back (RigL's ``_get_update_op``, the released ``abs_grad_growth``). SET (Mocanu et al., Nat. Commun.
2018) grows a uniformly random set of the same size instead.
``f(t) = f0 · (1 + cos(pi·t/end_step)) / 2`` (cosine decay).

As in the released code (``truncate_weights``): every grown weight starts at 0, a weight dropped and
regrown in the same update included; momentum is masked with the new mask, so a dropped weight loses
its momentum, a regrown one keeps it and a new connection starts with none. On an update step the
topology update *replaces* the gradient step (RigL's ``SparseRigLOptimizer``, the released training
loop): no optimizer step, so the momentum is neither decayed nor fed that step's gradient.
Masked weights are re-zeroed after every optimizer step, so they stay exactly 0.
Growth picks only inactive positions, as RigL (which lifts active scores below the minimum); the
released ``abs_grad_growth`` sorts ``|grad|·(mask == 0)``, so when fewer candidates than the drop count
have a non-zero gradient it may "grow" an active position (zeroing that weight) and lose density.

Subclasses (``openood_moon.official``) override the hooks ``_init_masks``, ``drop_counts``,
``grow_positions``, ``is_update_step`` and ``before_optimizer_step``.
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

from .density import BudgetLayer, budget_layers, layer_counts, maskable_parameters

METHOD_CHOICES = ("dense", "static", "set", "rigl")


def cosine_drop_fraction(step: int, initial: float, end_step: int) -> float:
    """Drop fraction ``initial · (1 + cos(pi·step/end_step)) / 2``, 0 from ``end_step`` on."""
    if end_step <= 0 or step >= end_step:
        return 0.0
    return initial * 0.5 * (1.0 + math.cos(math.pi * step / end_step))


def seeded_generator(purpose: str, seed: int, device="cpu") -> torch.Generator:
    """A generator for ``purpose`` whose seed is SHA-256 of ``purpose`` and ``seed``: its stream is not the
    one ``torch.manual_seed(seed)`` gave the weight init (a mask drawn as ``rand < density`` from that
    stream would keep exactly the most negative weights of a uniform init)."""
    digest = hashlib.sha256(f"openood_moon.{purpose}.{int(seed)}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def drop_count(fraction: float, active: int) -> int:
    """Weights a layer drops: ``ceil(fraction · active)`` (the released code's ``magnitude_prune``)."""
    return min(active, math.ceil(fraction * active))


class Masking:
    """Owns one boolean mask per conv/linear weight of ``model`` and keeps the weights on it.

    Settings left out (``None``) take the defaults of :class:`openood_moon.settings.SparseSettings`,
    the one place defaults live."""

    def __init__(self, model: nn.Module, method: Optional[str] = None, density: Optional[float] = None,
                 init: Optional[str] = None, drop_fraction: Optional[float] = None,
                 interval: Optional[int] = None, end_step: int = 0, seed: int = 0):
        from ..settings import SparseSettings  # lazy: settings imports this package

        defaults = SparseSettings()
        method = defaults.method if method is None else method
        density = defaults.density if density is None else density
        init = defaults.init if init is None else init
        drop_fraction = defaults.drop_fraction if drop_fraction is None else drop_fraction
        interval = defaults.interval if interval is None else interval
        if method not in METHOD_CHOICES:
            raise ValueError(f"unknown sparse.method {method!r}; valid choices: "
                             f"{', '.join(METHOD_CHOICES)}")
        if not 0.0 <= drop_fraction < 1.0:
            raise ValueError(f"sparse.drop_fraction must be in [0, 1), got {drop_fraction!r}")
        if interval < 1:
            raise ValueError(f"sparse.interval must be a positive step count, got {interval!r}")
        self.method, self.drop_fraction = method, float(drop_fraction)
        self.interval, self.end_step = int(interval), int(end_step)
        self.generator = seeded_generator("masks", seed)
        self.layers: List[BudgetLayer] = []
        self.params: Dict[str, nn.Parameter] = {}
        self.masks: Dict[str, torch.Tensor] = {}
        self.updates_done = 0
        if method == "dense":
            return
        self.layers = budget_layers(model)
        weights = dict(maskable_parameters(model))
        for name, weight in weights.items():
            if any(name in layer.members for layer in self.layers):
                self.params[name] = weight
                self.masks[name] = torch.zeros_like(weight, dtype=torch.bool)
        self._init_masks(model, density, init)
        self.apply()

    def _init_masks(self, model: nn.Module, density: float, init: str) -> None:
        """Exact counts: each budget layer keeps a uniformly random set of ``layer_counts`` weights.

        Layers are drawn in ``self.layers`` order (classifier last) from ``self.generator``, so the
        backbone masks of a baseline and a MOON net from the same seed are identical.
        """
        counts = layer_counts(model, density, init)
        for layer in self.layers:
            flat = torch.zeros(layer.numel, dtype=torch.bool)
            flat[torch.randperm(layer.numel, generator=self.generator)[:counts[layer.name]]] = True
            self._scatter(layer, flat, self.masks)

    # ------------------------------------------------------------------ one budget layer as a flat tensor
    def _gather(self, layer: BudgetLayer, tensors: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The members' tensors of ``layer``, flattened and stacked (fc rows, then the unknown row)."""
        return torch.cat([tensors[name].detach().reshape(-1) for name in layer.members])

    @torch.no_grad()
    def _scatter(self, layer: BudgetLayer, flat: torch.Tensor, tensors: Dict[str, torch.Tensor]) -> None:
        """Write ``flat`` back into the members' tensors of ``layer`` (in place)."""
        offset = 0
        for name in layer.members:
            target = tensors[name]
            n = target.numel()
            target.data.view(-1).copy_(flat[offset:offset + n].to(target.device))
            offset += n

    # ------------------------------------------------------------------ keeping weights on the mask
    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked weight in place (``+0.0``: ``add_(0.0)`` turns the ``-0.0`` of a negative
        weight times False into all-zero bits, so pruned weights pack into a bitmask)."""
        for name, mask in self.masks.items():
            self.params[name].mul_(mask).add_(0.0)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        for name, mask in self.masks.items():
            grad = self.params[name].grad
            if grad is not None:
                grad.mul_(mask)

    def _state_tensors(self, optimizer: Optional[torch.optim.Optimizer], name: str) -> Iterator[torch.Tensor]:
        """Optimizer buffers (momentum, …) of parameter ``name`` that have its shape."""
        if optimizer is None:
            return
        weight = self.params[name]
        for value in optimizer.state.get(weight, {}).values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                yield value

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero optimizer buffers (momentum, …) at masked positions."""
        for name, mask in self.masks.items():
            for value in self._state_tensors(optimizer, name):
                value.mul_(mask).add_(0.0)                  # +0.0, as apply()

    def is_update_step(self, step: int) -> bool:
        """True on steps ``interval, 2·interval, …`` strictly before ``end_step`` (RigL/SET only)."""
        return (self.method in ("rigl", "set") and step > 0 and step % self.interval == 0
                and step < self.end_step)

    def before_optimizer_step(self) -> None:
        """Hook run right before every optimizer step (the official preset's DropConnect)."""

    def step(self, optimizer: torch.optim.Optimizer, step: int) -> bool:
        """One training step's parameter change that keeps the sparsity.

        ``step`` counts optimizer steps from 1. On an update step the topology update replaces the
        optimizer step; otherwise: masked gradient, optimizer step, re-mask weights and momentum.
        Returns whether the topology was updated.
        """
        if self.is_update_step(step):
            self.update_topology(step, optimizer, self._grow_scores())
            self.mask_gradients()
            return True
        self.mask_gradients()
        self.before_optimizer_step()
        optimizer.step()
        self.apply()
        self.mask_optimizer_state(optimizer)
        return False

    # ------------------------------------------------------------------ topology updates
    def _grow_scores(self) -> Dict[str, torch.Tensor]:
        """RigL: the dense |gradient| (read before it is masked); SET: uniform random scores."""
        scores = {}
        for name, weight in self.params.items():
            if self.method == "rigl":
                if weight.grad is None:
                    raise RuntimeError(f"RigL needs the dense gradient of {name}; call backward() first")
                scores[name] = weight.grad.detach().abs().clone()
            else:
                scores[name] = torch.rand(weight.shape, generator=self.generator).to(weight.device)
        return scores

    def drop_counts(self, step: int) -> Dict[str, int]:
        """Weights each budget layer drops at update ``step``: ``ceil(f(step) · active)``."""
        fraction = cosine_drop_fraction(step, self.drop_fraction, self.end_step)
        return {layer.name: drop_count(fraction, int(self._gather(layer, self.masks).sum()))
                for layer in self.layers}

    def grow_positions(self, layer: BudgetLayer, score: Optional[torch.Tensor], candidates: torch.Tensor,
                       n: int) -> torch.Tensor:
        """Flat indices to grow: the ``n`` best-scoring ``candidates`` (inactive after the drop)."""
        return torch.topk(score.to(torch.float32).masked_fill(~candidates, float("-inf")), n).indices

    @torch.no_grad()
    def update_topology(self, step: int, optimizer: Optional[torch.optim.Optimizer],
                        scores: Dict[str, torch.Tensor]) -> Dict[str, int]:
        """Drop the smallest-|w| active weights, grow the best-scoring inactive ones (just-dropped
        included). Returns the number of weights dropped per budget layer."""
        counts = self.drop_counts(step)
        for layer in self.layers:
            n = counts[layer.name]
            if n <= 0:
                continue
            mask = self._gather(layer, self.masks).clone()
            before = mask.clone()
            weight = self._gather(layer, self.params).clone()
            magnitude = weight.abs().masked_fill(~mask, float("inf"))
            mask[torch.topk(magnitude, n, largest=False).indices] = False
            score = self._gather(layer, scores) if scores else None
            grow = self.grow_positions(layer, score, ~mask, n)
            mask[grow] = True
            weight[grow] = 0.0                       # every grown weight restarts at 0
            self._scatter(layer, mask, self.masks)
            self._scatter(layer, weight, self.params)
            new = torch.zeros_like(mask)
            new[grow] = True
            new &= ~before                           # new connections: no momentum (regrown keep theirs)
            offset = 0
            for name in layer.members:
                size = self.params[name].numel()
                for value in self._state_tensors(optimizer, name):
                    value.view(-1)[new[offset:offset + size].to(value.device)] = 0
                offset += size
        self.apply()
        if optimizer is not None:
            self.mask_optimizer_state(optimizer)
        self.updates_done += 1
        return counts

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
