"""openood-moon: MOON (Lei et al., "Embracing Unknown Step by Step", TMLR 2024) for OpenOOD v1.5.

The public API is imported lazily, so ``import openood_moon`` stays cheap.
"""
import importlib

__version__ = "0.1.0"

_API = {
    "MoonNet": "openood_moon.moon", "export_state_dict": "openood_moon.moon",
    "moon_loss": "openood_moon.moon", "AlphaTuner": "openood_moon.moon",
    "WeightVote": "openood_moon.moon", "recalibrate_batchnorm": "openood_moon.moon",
    "moon_lr": "openood_moon.moon",
    "Masking": "openood_moon.sparse", "erk_densities": "openood_moon.sparse",
    "layer_counts": "openood_moon.sparse",
    "MoonTrainer": "openood_moon.trainer", "TrainSettings": "openood_moon.settings",
    "load_config": "openood_moon.config", "save_checkpoint": "openood_moon.checkpoint",
    "load_checkpoint": "openood_moon.checkpoint",
    "SmallCNN": "openood_moon.networks", "ResNet18_32x32": "openood_moon.networks",
    "build_network": "openood_moon.networks",
    "build_embedded": "openood_moon.data.embedded", "benchmark_loaders": "openood_moon.data.imglist",
    "digits_loaders": "openood_moon.data.digits",
    "evaluate_ood": "openood_moon.engines.standalone.evaluate",
    "moon_confidence": "openood_moon.moon.scores",
    "register": "openood_moon.engines.openood.register",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'openood_moon' has no attribute {name!r}")
