"""Entry of the OpenOOD engine: ``run(cfg)`` for ``main.py --engine openood``.

Does what OpenOOD's ``main.py`` does with a merged config: ``output_dir = output_dir/exp_name``
(OpenOOD's ``setup_config``), then ``openood.utils.launch`` — in-process for one device, spawned
workers for ``num_gpus > 1`` — and in each process ``register()`` followed by
``get_pipeline(config).run()`` (OpenOOD's pipeline names and ours, ``train_moon`` by default).
``device: cpu`` forces ``num_gpus: 0``. Without CUDA the CPU shim (compat) is installed.
"""
import os
from typing import Any, Dict

import torch

from ...config import ConfigError


def worker(config) -> Any:
    """What every process runs (module level, so spawned workers can unpickle it)."""
    from openood.pipelines import get_pipeline

    from .register import register

    register(cpu_shim=not torch.cuda.is_available())
    return get_pipeline(config).run()


def to_openood_config(cfg: Dict[str, Any]):
    """The merged plain-dict config as an OpenOOD ``Config``, with ``output_dir`` joined to ``exp_name``."""
    from openood.utils import Config

    config = Config(cfg)
    device = str(cfg.get("device", "auto") or "auto")
    if device == "cpu":
        config.num_gpus = 0
        if config.network is not None:
            config.network.num_gpus = 0
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use auto or cpu")
    for key, default in (("num_gpus", 1), ("num_machines", 1), ("machine_rank", 0), ("num_workers", 0)):
        if key not in config or config[key] is None:
            config[key] = default
    config.output_dir = os.path.join(str(cfg.get("output_dir", "./results/")), str(cfg["exp_name"]))
    return config


def check_names(cfg: Dict[str, Any]) -> None:
    """Unknown pipeline, trainer or preprocessor names exit 2 with the valid choices, before any data
    is prepared (OpenOOD raises a KeyError, or falls back to its base preprocessor)."""
    from .register import choices

    for kind in ("pipeline", "trainer", "preprocessor"):
        name = (cfg.get(kind) or {}).get("name")
        if (kind == "pipeline" or name is not None) and name not in choices(kind):
            raise ConfigError(f"unknown {kind}.name {name!r}; valid choices (OpenOOD engine): "
                              f"{', '.join(choices(kind))}")


def run(cfg: Dict[str, Any]) -> Any:
    from .register import register

    register(cpu_shim=not torch.cuda.is_available())
    from openood.utils import launch

    check_names(cfg)
    config = to_openood_config(cfg)
    num_gpus = int(config.num_gpus or 0)
    if num_gpus * int(config.num_machines) > 1 and not torch.cuda.is_available():
        raise ConfigError(f"num_gpus={num_gpus} needs CUDA (OpenOOD's launch uses NCCL); use num_gpus 1 or 0")
    if num_gpus * int(config.num_machines) <= 1:
        return worker(config)
    launch(worker, num_gpus, num_machines=int(config.num_machines), machine_rank=int(config.machine_rank),
           dist_url="auto", args=(config,))
    return None
