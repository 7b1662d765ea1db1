"""OpenOOD trainer ``moon``: the core :class:`~openood_moon.trainer.MoonTrainer` behind OpenOOD's
trainer interface.

OpenOOD's pipelines call ``trainer.train_epoch(epoch_idx)`` with a 1-based epoch and expect
``(net, metrics)``: ``net`` is what gets validated and saved (here the vote's averaged model once the
vote has run, else the trained network), ``metrics`` holds at least ``epoch_idx`` and ``loss``.
This module imports no OpenOOD: an OpenOOD ``Config`` is a dict and is converted to a plain one.
"""
from typing import Any, Dict, Optional, Tuple

from torch import nn

from ...netutils import device_of, plain_dict
from ...settings import TrainSettings
from ...trainer import MoonTrainer


class OpenOODMoonTrainer:
    """``OpenOODMoonTrainer(net, train_loader, config)`` — OpenOOD's trainer signature.

    The device is the one ``get_network`` put the net on. ``core`` is the wrapped MoonTrainer.
    ``settings``: the run's already parsed :class:`TrainSettings` (else parsed from ``config``, as
    OpenOOD's own ``train`` pipeline builds trainers).
    """

    def __init__(self, net: nn.Module, train_loader, config, device=None,
                 settings: Optional[TrainSettings] = None):
        self.net = net
        self.train_loader = train_loader
        self.config = config
        settings = settings or TrainSettings.from_config(plain_dict(config))
        self.core = MoonTrainer(net, train_loader, settings, device if device is not None else device_of(net))

    @property
    def epoch(self) -> int:
        """Epochs finished so far (after a resume, too)."""
        return self.core.epoch

    def train_epoch(self, epoch_idx: int) -> Tuple[nn.Module, Dict[str, Any]]:
        """Train OpenOOD epoch ``epoch_idx`` (1-based); returns (model to validate, metrics)."""
        metrics = self.core.train_epoch(epoch_idx - 1)
        metrics["epoch_idx"] = epoch_idx
        return self.core.model_for_eval(), metrics

    def model_for_eval(self) -> nn.Module:
        return self.core.model_for_eval()

    def state_dict(self) -> Dict[str, Any]:
        return self.core.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.core.load_state_dict(state)
