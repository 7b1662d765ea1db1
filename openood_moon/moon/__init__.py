"""MOON (Lei et al., "Embracing Unknown Step by Step", TMLR 2024): head, loss, α tuner, vote, LR."""
from .loss import moon_loss, tuner_statistic
from .net import MoonNet, export_state_dict
from .schedule import moon_lr
from .tuner import AlphaTuner
from .vote import WeightVote, recalibrate_batchnorm

__all__ = ["AlphaTuner", "MoonNet", "WeightVote", "export_state_dict", "moon_loss", "moon_lr",
           "recalibrate_batchnorm", "tuner_statistic"]
