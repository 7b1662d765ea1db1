"""``--preset official``: the released MOON code's training behaviour, as it runs.

Lei et al., TMLR 2024; code github.com/StevenBoys/MOON (863f49a), whose sparse training is
rigl-reproducibility's ``sparselearning`` with CigL's random mask. Not the default (see DESIGN,
"MOON"): each quirk below is a small piece tested against a transcription of the released formula.

1. Prune-rate horizon: ``CosineDecay(prune_rate, T_max=end_when=70)`` is stepped with the step counter
   on every non-update step, so the drop fraction follows ``r0·(1+cos(pi·k/70))/2`` for 70 steps and
   then stays frozen (``OfficialPruneRate``; 0.3 → 1.5e-4 before the first update at step 80).
2. ``adjust_prune_rate``: a layer with sparsity < 0.2 holding more than 1/L of the non-zero weights
   drops at most ``sparsity`` of them (``official_layer_prune_rates``).
3. DropConnect (CigL's ``dpnum = 100``): every non-update step restores the weights dropped at the
   previous step, then drops each weight with probability 1/100, without rescaling, *before* the
   optimizer step — a dropped weight is 0 and then takes that step's SGD update, so magnitude pruning
   mostly removes just-dropped weights (``DropConnect``).
4. ERK masks are Bernoulli draws ``rand < density_l``, not exact counts (``bernoulli_mask``).
5. The update interval counts steps within each epoch (``train_step % interval == 0``, ``train_step``
   restarting at 1 every epoch), for epochs ``< end_epoch`` (``official_is_update_step``).
6. SET grows each candidate with probability ``n / #candidates``: a random number of weights
   (``bernoulli_growth``).
7. The vote averages the model at the end of the last non-vote epoch and the first
   ``floor(T/10)`` steps of every vote epoch (``official_is_snapshot_step``,
   ``official_snapshot_after_epoch``).

``OfficialMasking`` assembles 1–6 behind ``Masking``'s interface; 7 is for the trainer.
Known remaining differences, both ties at exact zeros: when more active weights than the drop count
are 0, the released ``torch.sort`` order decides which (and how many) are pruned, here exactly the drop
count is; RigL growth picks only inactive positions (see ``sparse/masking.py``). Random draws come from
seeded generators (the released code uses the global RNG).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from .config import ConfigError
from .sparse import Masking, drop_count, layer_densities, maskable_parameters, seeded_generator
from .sparse.density import BudgetLayer

PRESET_CHOICES = ("default", "official")
PRUNE_RATE_HORIZON = 70        # configs/specific/*.yml ``end_when``, read as steps by CosineDecay
DROPCONNECT_DPNUM = 100        # keep probability (dpnum - 1) / dpnum
SPARSE_PRUNE_CAP = 0.2         # adjust_prune_rate applies to layers with sparsity below this


def preset_name(cfg: Mapping[str, Any]) -> str:
    """``preset.name`` of a merged config (``default`` when absent); a bad value is a ConfigError."""
    section = cfg.get("preset") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"preset must be a section with a key 'name', got {section!r}; "
                          f"valid names: {', '.join(PRESET_CHOICES)}")
    name = section.get("name") or "default"
    if name not in PRESET_CHOICES:
        raise ConfigError(f"unknown preset.name {name!r}; valid choices: {', '.join(PRESET_CHOICES)}")
    return name


# ---------------------------------------------------------------------- 1, 2: how many weights to drop
class OfficialPruneRate:
    """The released ``CosineDecay`` as ``Masking.step`` drives it: ``step(k)`` with the mask-step
    counter ``k``; while fewer than ``horizon`` steps were taken the rate is the closed-form cosine
    ``r0·(1+cos(pi·k/horizon))/2``, afterwards it stays where it was."""

    def __init__(self, initial: float, horizon: int = PRUNE_RATE_HORIZON):
        self.initial, self.horizon = float(initial), int(horizon)
        self.value, self.taken = float(initial), 0

    def step(self, k: int) -> None:
        if self.taken < self.horizon:
            self.value = self.initial * (1 + math.cos(math.pi * k / self.horizon)) / 2
            self.taken = k + 1
        else:
            self.taken = self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.taken = float(state["value"]), int(state["taken"])


def official_layer_prune_rates(rate: float, mask_nonzeros: Dict[str, int], numels: Dict[str, int],
                               weight_nonzeros: Dict[str, int]) -> Dict[str, float]:
    """Per-layer prune rate (released ``adjust_prune_rate`` with ``redistribution: none``).

    A layer with sparsity ``s = 1 - nnz/numel < 0.2`` whose share of the non-zero *weights*
    (``weight != 0``) exceeds ``1/L`` (``L`` layers) prunes at rate ``min(s, rate)``; every other layer
    at ``rate``.
    """
    total = sum(weight_nonzeros.values())
    out = {}
    for name, numel in numels.items():
        out[name] = rate
        sparsity = (numel - mask_nonzeros[name]) / numel
        share = weight_nonzeros[name] / total if total else 0.0
        if sparsity < SPARSE_PRUNE_CAP and share > 0 and (1.0 / len(numels)) / share < 1.0:
            out[name] = min(sparsity, rate)
    return out


# ---------------------------------------------------------------------- 3: DropConnect
class DropConnect:
    """CigL's random mask in the released ``Masking`` (``apply_w_raw`` then ``apply_dropout``).

    State: ``raw`` (stored values; starts as the dense initial weights) and ``keep`` (last draw; all
    ones at first). ``restore_and_redraw`` with mask ``m``, ``k = keep·m``, ``d = dpnum``::

        raw  <- raw·(1-k) + w·k·(d-1)/d
        full  = w·k + raw·(1-k)·d/(d-1)          # weights dropped last step get their value back
        keep <- 1[randint(0, d) < d-1]           # drop with probability 1/d
        w    <- full·keep·m                      # no rescaling of the kept weights
    """

    def __init__(self, raw: Dict[str, torch.Tensor], dpnum: int = DROPCONNECT_DPNUM,
                 generator: Optional[torch.Generator] = None):
        if dpnum < 2:
            raise ValueError(f"DropConnect dpnum must be >= 2, got {dpnum}")
        self.dpnum = int(dpnum)
        self.raw = {n: r.detach().clone() for n, r in raw.items()}
        self.keep = {n: torch.ones_like(r) for n, r in self.raw.items()}
        self.generator = generator

    @torch.no_grad()
    def restore_and_redraw(self, params: Dict[str, torch.Tensor], masks: Dict[str, torch.Tensor]) -> None:
        d = self.dpnum
        for name, weight in params.items():
            kept = self.keep[name] * masks[name].to(weight.dtype)
            self.raw[name] = self.raw[name] * (1 - kept) + weight * kept * (d - 1) / d
            full = weight * kept + self.raw[name] * (1 - kept) * d / (d - 1)
            draw = torch.randint(0, d, weight.shape, generator=self.generator, device=weight.device)
            self.keep[name] = (draw < d - 1).to(weight.dtype)
            weight.copy_(full * self.keep[name] * masks[name].to(weight.dtype))

    def state_dict(self) -> dict:
        return {"raw": {n: t.cpu().clone() for n, t in self.raw.items()},
                "keep": {n: t.cpu().clone() for n, t in self.keep.items()},
                "generator": self.generator.get_state() if self.generator is not None else None}

    def load_state_dict(self, state: dict) -> None:
        for store, key in ((self.raw, "raw"), (self.keep, "keep")):
            for name, value in state[key].items():
                store[name].copy_(value.to(store[name].device))
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------- 4, 5, 6: masks and schedule
def bernoulli_mask(numel: int, density: float, generator: torch.Generator) -> torch.Tensor:
    """Released ``erdos_renyi_init``: each weight kept independently, ``rand < density``."""
    return torch.rand(numel, generator=generator) < density


def official_is_update_step(step: int, steps_per_epoch: int, interval: int, end_epoch: int) -> bool:
    """Released loop: update when ``train_step % interval == 0`` (``train_step`` = 1-based step
    within the epoch) and ``epoch < end_epoch`` (0-based). ``step`` is the 1-based global step."""
    epoch, within = divmod(step - 1, steps_per_epoch)
    return epoch < end_epoch and (within + 1) % interval == 0


def bernoulli_growth(candidates: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Released ``random_growth``: each candidate (flat bool) grows with probability
    ``n / #candidates``, drawn in flat order; returns the flat indices grown."""
    positions = candidates.nonzero().view(-1)
    if positions.numel() == 0:
        return positions
    draw = torch.rand(positions.numel(), generator=generator) < n / positions.numel()
    return positions[draw.to(positions.device)]


# ---------------------------------------------------------------------- 7: the vote
def official_snapshots_per_epoch(steps_per_epoch: int) -> int:
    """``ave_num = int(T / 10)``: the vote averages the first ``ave_num`` steps of each vote epoch."""
    ave = int(steps_per_epoch / 10)
    if ave < 1:
        raise ValueError(f"the official vote averages the first int(T/10) steps of each epoch; "
                         f"T = {steps_per_epoch} steps per epoch gives none (need T >= 10)")
    return ave


def official_is_snapshot_step(step_in_epoch: int, steps_per_epoch: int) -> bool:
    """Released ``(train_step - 1) // ave_num == 0`` (``step_in_epoch`` 1-based), in vote epochs."""
    return (step_in_epoch - 1) // official_snapshots_per_epoch(steps_per_epoch) == 0


def official_snapshot_after_epoch(epoch: int, vote_start: int) -> bool:
    """The first snapshot is the model at the end of the last non-vote epoch (0-based)."""
    return epoch == vote_start - 1


# ---------------------------------------------------------------------- assembled
class OfficialMasking(Masking):
    """``Masking`` with the released code's behaviour (items 1–6 of the module docstring).

    ``end_epoch``: 0-based epochs ``< end_epoch`` update the topology (released ``end_when``);
    ``steps_per_epoch``: the loader length, for the within-epoch interval count.
    """

    def __init__(self, model: nn.Module, method: Optional[str] = None, density: Optional[float] = None,
                 init: Optional[str] = None, drop_fraction: Optional[float] = None,
                 interval: Optional[int] = None, steps_per_epoch: int = 1,
                 end_epoch: int = 0, seed: int = 0, horizon: int = PRUNE_RATE_HORIZON,
                 dpnum: int = DROPCONNECT_DPNUM):
        dense_init = {n: p.detach().clone() for n, p in maskable_parameters(model)}
        super().__init__(model, method, density, init, drop_fraction, interval, end_step=0, seed=seed)
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch, self.end_epoch = int(steps_per_epoch), int(end_epoch)
        self.prune_rate = OfficialPruneRate(self.drop_fraction, horizon)
        self.mask_step = 0
        device = next(iter(self.params.values())).device if self.params else torch.device("cpu")
        self.dropconnect = DropConnect({n: dense_init[n] for n in self.params}, dpnum,
                                       seeded_generator("dropconnect", seed, device))

    def _init_masks(self, model: nn.Module, density: float, init: str) -> None:
        densities = layer_densities(model, density, init)
        for layer in self.layers:
            self._scatter(layer, bernoulli_mask(layer.numel, densities[layer.name], self.generator),
                          self.masks)

    def is_update_step(self, step: int) -> bool:
        return (self.method in ("rigl", "set")
                and official_is_update_step(step, self.steps_per_epoch, self.interval, self.end_epoch))

    def before_optimizer_step(self) -> None:
        self.dropconnect.restore_and_redraw(self.params, self.masks)

    def step(self, optimizer: torch.optim.Optimizer, step: int) -> bool:
        updated = super().step(optimizer, step)
        if not updated:
            self.prune_rate.step(self.mask_step)
        self.mask_step += 1
        return updated

    def _grow_scores(self) -> Dict[str, torch.Tensor]:
        return super()._grow_scores() if self.method == "rigl" else {}

    def drop_counts(self, step: int) -> Dict[str, int]:
        nonzeros = {l.name: int(self._gather(l, self.masks).sum()) for l in self.layers}
        weight_nonzeros = {l.name: int(torch.count_nonzero(self._gather(l, self.params))) for l in self.layers}
        rates = official_layer_prune_rates(self.prune_rate.value, nonzeros,
                                           {l.name: l.numel for l in self.layers}, weight_nonzeros)
        return {name: drop_count(rates[name], nonzeros[name]) for name in nonzeros}

    def grow_positions(self, layer: BudgetLayer, score: Optional[torch.Tensor], candidates: torch.Tensor,
                       n: int) -> torch.Tensor:
        if self.method == "set":
            return bernoulli_growth(candidates, n, self.generator)
        return super().grow_positions(layer, score, candidates, n)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["official"] = {"prune_rate": self.prune_rate.state_dict(), "mask_step": self.mask_step,
                             "dropconnect": self.dropconnect.state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.prune_rate.load_state_dict(state["official"]["prune_rate"])
        self.mask_step = int(state["official"]["mask_step"])
        self.dropconnect.load_state_dict(state["official"]["dropconnect"])
