"""Auto-tuning of MOON's loss weight α (Lei et al., TMLR 2024; schedule of DAC, Thulasidasan 2019).

Every step: ``ewma ← a_t`` on the first step, else ``μ·a_t + (1-μ)·ewma`` with
``a_t = mean((1-p)·h)``. Epochs ``0..W-1`` are warm-up (α = None: plain K+1 CE). On the first step
of epoch ``W`` — after that step's statistic is folded into the EWMA, as the released
``extra_c_loss`` does — ``α0 = ewma / init_factor``; α then rises linearly per epoch to
``alpha_final`` at the last epoch ``E-1``: ``α(e) = α0 + (e-W)·(alpha_final-α0)/(E-1-W)``.

Per step: ``start_epoch(e)`` once per epoch, then ``alpha = observe(a_t)`` *before* the loss, and
``moon_loss(logits, y, alpha)``. ``observe`` returns the α of that step.
"""
from typing import Optional


class AlphaTuner:
    """Settings left out (``None``) take the defaults of :class:`openood_moon.settings.MoonSettings`
    (``total_epochs``: ``OptimizerSettings.num_epochs``), the one place defaults live."""

    def __init__(self, alpha_final: Optional[float] = None, init_factor: Optional[float] = None,
                 warmup_epochs: Optional[int] = None, total_epochs: Optional[int] = None,
                 ewma_mu: Optional[float] = None):
        from ..settings import MoonSettings, OptimizerSettings  # lazy: settings imports openood_moon.sparse

        moon, optimizer = MoonSettings(), OptimizerSettings()
        alpha_final = moon.alpha_final if alpha_final is None else alpha_final
        init_factor = moon.init_factor if init_factor is None else init_factor
        warmup_epochs = moon.warmup_epochs if warmup_epochs is None else warmup_epochs
        total_epochs = optimizer.num_epochs if total_epochs is None else total_epochs
        ewma_mu = moon.ewma_mu if ewma_mu is None else ewma_mu
        if warmup_epochs >= total_epochs:
            raise ValueError(f"moon.warmup_epochs ({warmup_epochs}) must be smaller than "
                             f"optimizer.num_epochs ({total_epochs})")
        if init_factor <= 0:
            raise ValueError(f"moon.init_factor must be positive, got {init_factor}")
        self.alpha_final, self.init_factor = float(alpha_final), float(init_factor)
        self.warmup_epochs, self.total_epochs = int(warmup_epochs), int(total_epochs)
        self.ewma_mu = float(ewma_mu)
        self.ewma: Optional[float] = None
        self.alpha0: Optional[float] = None
        self.alpha: Optional[float] = None
        self.epoch: Optional[int] = None

    def observe(self, statistic: float) -> Optional[float]:
        """Fold one step's ``mean((1-p)·h)`` into the EWMA; return the α for this step's loss."""
        if self.ewma is None:
            self.ewma = float(statistic)
        else:
            self.ewma = self.ewma_mu * float(statistic) + (1 - self.ewma_mu) * self.ewma
        if self.alpha0 is None and self.epoch is not None and self.epoch >= self.warmup_epochs:
            self.alpha0 = self.ewma / self.init_factor
            self.alpha = self._alpha_at(self.epoch)
        return self.alpha

    def start_epoch(self, epoch: int) -> Optional[float]:
        """Enter 0-based ``epoch``; return its α as known now (None during warm-up).

        In the first epoch after warm-up α0 waits for that epoch's first statistic, so this returns
        ``ewma / init_factor`` from the steps seen so far (None before any); the exact α is what
        ``observe`` returns.
        """
        self.epoch = int(epoch)
        if epoch < self.warmup_epochs:
            self.alpha = None
            return None
        if self.alpha0 is None:
            return None if self.ewma is None else self.ewma / self.init_factor
        self.alpha = self._alpha_at(epoch)
        return self.alpha

    def _alpha_at(self, epoch: int) -> float:
        ramp = self.total_epochs - 1 - self.warmup_epochs
        if ramp <= 0:
            return self.alpha_final
        step = (self.alpha_final - self.alpha0) / ramp
        return self.alpha0 + min(epoch - self.warmup_epochs, ramp) * step

    def state_dict(self) -> dict:
        return {"ewma": self.ewma, "alpha0": self.alpha0, "alpha": self.alpha, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.ewma, self.alpha0, self.alpha = state["ewma"], state["alpha0"], state["alpha"]
        self.epoch = state.get("epoch")
