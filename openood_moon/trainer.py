"""The engine-agnostic trainer: dense, dense+MOON, sparse (RigL/SET/static) and sparse+MOON.

One step: forward (K+1 logits when MOON's loss is on) → loss (MOON's or CE) → backward →
``Masking.step`` (SGD-Nesterov step that keeps the masks; topology update every ``interval`` steps
until ``end``) → a vote snapshot during the last ``vote_epochs``. The LR follows ``moon_lr``; masks
freeze before the vote starts so the averaged model is exactly as sparse. Batches are OpenOOD dicts
``{'data', 'label'}`` or ``(x, y)`` tuples.

The LR schedule is the same for every variant (dense, sparse, sparse+MOON): a cosine over the epochs
before the last ``moon.vote_epochs`` and constant over those, whether or not the vote runs.

Several processes (``torchrun``; :mod:`openood_moon.distributed`): ``net`` may be a DDP wrapper (masks,
optimizer and vote use the unwrapped module); α's statistic is averaged over the global batch, the masks
are compared across ranks after every topology update, and the vote's BatchNorm pass sums all ranks'
statistics. In one process these calls change nothing.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError
from .distributed import check_masks_agree, global_mean, sum_over_ranks, sums_over_ranks
from .moon import AlphaTuner, WeightVote, moon_loss, moon_lr, recalibrate_batchnorm, tuner_statistic
from .netutils import fc_layer, has_unknown_head, model_input, unpack_batch, unwrap
from .settings import TrainSettings
from .sparse import Masking


FINITE_CHECK_STEPS = 50                               # steps between two checks of the loss for NaN/inf


def check_finite(recent: List[Tuple[int, float, torch.Tensor]], epoch: int) -> None:
    """Raise for the first non-finite loss among ``recent`` ``(step, lr, loss)`` (one host sync for all
    of them), then forget them."""
    if recent:
        finite = torch.isfinite(torch.stack([loss for _, _, loss in recent]))
        if not bool(finite.all()):
            step, lr, loss = recent[int((~finite).nonzero()[0, 0])]
            raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch}, step {step}"
                                     f" (lr {lr:.4g}); lower optimizer.lr")
        recent.clear()


class MoonTrainer:
    """``MoonTrainer(net, train_loader, settings, device)``; ``settings`` is a :class:`TrainSettings`
    (a config dict is parsed into one, for API users)."""

    def __init__(self, net: nn.Module, train_loader, settings: TrainSettings, device="cpu",
                 bn_loader=None):
        if not isinstance(settings, TrainSettings):
            settings = TrainSettings.from_config(settings)
        self.settings = s = settings
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.module = unwrap(net)                        # unwrapped (DDP) model: masks and vote
        if s.uses_unknown and not has_unknown_head(self.module):
            raise ValueError("moon.unknown_loss needs a MoonNet (a backbone with an fc_unknown head)")
        self.train_loader, self.bn_loader = train_loader, bn_loader or train_loader
        self.steps_per_epoch = len(train_loader)
        epochs = s.optimizer.num_epochs
        self.vote_start = epochs - s.vote_epochs          # first vote epoch (== epochs: no vote)
        self.total_steps = epochs * self.steps_per_epoch
        self.cosine_steps = s.cosine_epochs * self.steps_per_epoch
        self.end_step = min(int(s.sparse.end * self.total_steps), self.cosine_steps)
        self.update_interval = s.sparse.interval_for(self.steps_per_epoch)  # sparse.interval or updates_per_epoch
        o = s.optimizer
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=o.lr * o.lr_ini, momentum=o.momentum,
                                         weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.official = s.preset.name == "official"
        if self.official:  # the released code's quirks (openood_moon/official.py)
            from .official import OfficialMasking, official_snapshots_per_epoch

            self.masking = OfficialMasking(
                self.module, s.sparse.method, s.sparse.density, s.sparse.init, s.sparse.drop_fraction,
                self.update_interval, steps_per_epoch=self.steps_per_epoch,
                end_epoch=min(round(s.sparse.end * epochs), s.cosine_epochs), seed=s.seed)
            if s.vote_epochs:
                try:
                    self.official_snapshots = official_snapshots_per_epoch(self.steps_per_epoch)
                except ValueError as err:
                    raise ConfigError(f"preset official: {err}") from None
        else:
            self.masking = Masking(self.module, s.sparse.method, s.sparse.density, s.sparse.init,
                                   s.sparse.drop_fraction, self.update_interval, self.end_step, seed=s.seed)
        self.planned_updates = sum(map(self.masking.is_update_step, range(1, self.total_steps + 1)))
        self.tuner = (AlphaTuner(s.moon.alpha_final, s.moon.init_factor, s.moon.warmup_epochs, epochs,
                                 s.moon.ewma_mu) if s.uses_unknown else None)
        self.vote = WeightVote() if s.vote_epochs else None
        self.voted: Optional[nn.Module] = None
        self.epoch, self.step = 0, 0

    # ------------------------------------------------------------------ training
    def train_epoch(self, epoch: Optional[int] = None) -> Dict[str, Any]:
        """Train one epoch (0-based); returns its metrics."""
        epoch = self.epoch if epoch is None else epoch
        if epoch != self.epoch:
            raise ValueError(f"expected epoch {self.epoch}, got {epoch} (resume from a checkpoint instead)")
        if epoch >= self.settings.optimizer.num_epochs:
            raise ValueError(f"training already finished after {self.settings.optimizer.num_epochs} epochs")
        self._seed_data_order(epoch)
        if self.tuner:
            self.tuner.start_epoch(epoch)
        self.net.train()
        start, seen, updates = time.time(), 0, 0
        # metrics summed on the device (float64: the same sums as Python floats), read once per epoch;
        # the loss is checked for NaN/inf every FINITE_CHECK_STEPS steps: no host sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        recent = []                                       # (step, lr, loss) since the last check
        for i, batch in enumerate(self.train_loader):
            x, y = unpack_batch(batch)
            x, y = model_input(x, self.device), y.to(self.device)
            lr = self._set_lr()
            self.step += 1
            if self.tuner:
                logits = self.net(x, return_unknown=True)
                statistic = global_mean(tuner_statistic(logits, y), len(y))  # over the global batch
                alpha = self.tuner.observe(statistic)  # α0 after the first post-warm-up fold
                loss = moon_loss(logits, y, alpha)
            else:
                logits = self.net(x)
                loss = F.cross_entropy(logits, y)
            recent.append((self.step, lr, loss.detach()))
            if len(recent) >= FINITE_CHECK_STEPS:
                check_finite(recent, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.masking.step(self.optimizer, self.step):
                updates += 1
                check_masks_agree(self.masking.masks, self.step)  # lock-step guard (several processes)
            if self.vote and epoch >= self.vote_start and self._is_snapshot_step(i):
                self.vote.add(self.module)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits[:, : self.module_classes].argmax(1) == y).sum()
            seen += len(y)
        check_finite(recent, epoch)
        loss_sum, correct = float(loss_sum), int(correct)
        if self.vote and self.official:
            from .official import official_snapshot_after_epoch

            if official_snapshot_after_epoch(epoch, self.vote_start):  # the released vote's first model
                self.vote.add(self.module)
        loss_sum, correct, seen = sums_over_ranks([loss_sum, correct, seen])  # metrics of the global batches
        self.epoch += 1
        if self.vote and self.epoch == self.settings.optimizer.num_epochs:
            self.finalize_vote()
        return {"epoch_idx": epoch, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                "lr": lr, "alpha": self.tuner.alpha if self.tuner else None,
                "density": self.masking.density(), "mask_updates": updates, "update_interval": self.update_interval,
                "topology_updates_done": self.masking.updates_done, "topology_updates_planned": self.planned_updates,
                "snapshots": self.vote.count if self.vote else 0, "seconds": time.time() - start}

    def fit(self, callback: Optional[Callable[[Dict[str, Any]], None]] = None) -> nn.Module:
        """Train the remaining epochs; ``callback(metrics)`` after each; returns the model to evaluate."""
        while self.epoch < self.settings.optimizer.num_epochs:
            metrics = self.train_epoch()
            if callback:
                callback(metrics)
        return self.model_for_eval()

    def finalize_vote(self) -> nn.Module:
        """Average the snapshots into a copy of the model and recalibrate its BatchNorm."""
        self.voted = self.vote.averaged_model(self.module)
        inputs = (unpack_batch(b)[0] for b in self.bn_loader)
        recalibrate_batchnorm(self.voted, inputs, self.device, reduce=sum_over_ranks)  # all ranks' data
        self.voted.eval()
        return self.voted

    def model_for_eval(self) -> nn.Module:
        """The vote's averaged model once the vote has run, else the trained network."""
        model = self.voted if self.voted is not None else self.module
        return model.eval()

    def _seed_data_order(self, epoch: int) -> None:
        """Make the data order a function of (seed, epoch), so resuming reproduces it exactly."""
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):                # our EpochSampler, DistributedSampler
            sampler.set_epoch(epoch)
        elif getattr(self.train_loader, "generator", None) is not None:
            self.train_loader.generator.manual_seed(self.settings.seed * 100_003 + epoch)

    def _is_snapshot_step(self, i: int) -> bool:
        """True on ``snapshots_per_epoch`` steps spread evenly over an epoch (its last step included);
        under the official preset on the first floor(T/10) steps of the epoch (the released vote)."""
        if self.official:
            from .official import official_is_snapshot_step

            return official_is_snapshot_step(i + 1, self.steps_per_epoch)
        n, steps = self.settings.moon.snapshots_per_epoch, self.steps_per_epoch
        return (i + 1) * n // steps > i * n // steps

    @property
    def module_classes(self) -> int:
        return fc_layer(self.module).out_features

    def _set_lr(self) -> float:
        o = self.settings.optimizer
        lr = moon_lr(self.step, o.lr, o.lr_ini, o.lr_end, self.cosine_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> Dict[str, Any]:
        """The whole training state, as tensors and plain Python values only."""
        return {"net": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "masking": self.masking.state_dict(),
                "tuner": self.tuner.state_dict() if self.tuner else None,
                "vote": self.vote.state_dict() if self.vote else None,
                "voted": self.voted.state_dict() if self.voted is not None else None,
                "epoch": self.epoch, "step": self.step, "torch_rng": torch.get_rng_state(),
                "settings": self.settings.training_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved = state["settings"]
        saved = {k: v for k, v in saved.items() if k != "evaluation"}
        if saved != self.settings.training_dict():
            raise ValueError("checkpoint was trained with different settings; refusing to resume")
        self.module.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.masking.load_state_dict(state["masking"])
        if self.tuner:
            self.tuner.load_state_dict(state["tuner"])
        if self.vote:
            self.vote.load_state_dict(state["vote"])
        if state["voted"] is not None:
            self.voted = self.vote.averaged_model(self.module)
            self.voted.load_state_dict(state["voted"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        torch.set_rng_state(state["torch_rng"])
