"""The standalone engine: the run path (:mod:`openood_moon.run_path`) with our image-list loaders, our
networks and pytorch-ood detectors. Runs without OpenOOD: on a fresh machine, on CPU, offline.

The run folder is ``<output_dir>/<exp_name>`` (``results/<experiment>/s<seed>/``), as OpenOOD's.

Under ``torchrun`` (several processes, one or more nodes) every process joins the process group, trains
its shard of each global batch in DistributedDataParallel, and rank 0 writes and evaluates
(:mod:`openood_moon.distributed`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ... import distributed
from ...config import ConfigError
from ...moon import MoonNet
from ...networks import NETWORKS, build_network
from ...run_path import Engine, Evaluation, run as run_path
from ...settings import TrainSettings
from .data import build_loaders, check_data
from .detectors import available_postprocessors
from .evaluate import evaluate_ood


def resolve_device(name: Optional[str]) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use auto or cpu")
    return device


def build_model(cfg: Dict[str, Any], settings: TrainSettings) -> torch.nn.Module:
    """The backbone from ``network``; wrapped in MoonNet when MOON's loss is on."""
    net_cfg = dict(cfg["network"])
    kwargs = {k: v for k, v in net_cfg.items()
              if k not in ("name", "num_classes", "pretrained", "checkpoint", "num_gpus")}
    try:
        backbone = build_network(net_cfg["name"], int(net_cfg["num_classes"]), **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    return MoonNet(backbone) if settings.uses_unknown else backbone


def run_dir_of(cfg: Dict[str, Any]) -> Path:
    return Path(cfg.get("output_dir", "./results/")) / str(cfg["exp_name"])


class StandaloneEngine(Engine):
    name = "standalone"

    def __init__(self, cfg: Dict[str, Any]):
        self.cfg = cfg
        self.loaders = None
        self.device = None

    def resolve(self, settings: TrainSettings):
        cfg = self.cfg
        unknown = [p for p in settings.evaluation.postprocessors if p not in available_postprocessors()]
        if unknown:
            raise ConfigError(f"unknown postprocessor {unknown[0]!r} in evaluation.postprocessors; valid "
                              f"choices: {', '.join(available_postprocessors())}")
        name = (cfg.get("network") or {}).get("name")
        if name not in NETWORKS:
            raise ConfigError(f"unknown network.name {name!r}; valid choices (standalone engine): "
                              f"{', '.join(sorted(NETWORKS))}")
        if settings.evaluation.config_root:
            raise ConfigError("evaluation.config_root (OpenOOD's postprocessor ymls) needs the OpenOOD engine; "
                              "the standalone engine uses evaluation.postprocessor_args")
        check_data(cfg)  # dataset keys, image lists, labels and images: before anything is written
        self.device = distributed.init_from_env(resolve_device(cfg.get("device", "auto")))
        return cfg, run_dir_of(cfg)

    def build(self, settings: TrainSettings):
        net = build_model(self.cfg, settings)
        self.loaders = build_loaders(self.cfg)
        return distributed.wrap(net, self.device), self.loaders["id"]["train"], self.device

    def evaluate(self, model, settings: TrainSettings, run_dir: Path) -> Evaluation:
        ev = settings.evaluation
        loaders = {"id": {**self.loaders["id"], "train": self.loaders["id"]["train_eval"]},
                   "ood": self.loaders["ood"]}
        pp_args = {k: v for k, v in ev.postprocessor_args.items() if k in ev.postprocessors}
        table, scores = evaluate_ood(model, loaders, ev.postprocessors, pp_args=pp_args, device=self.device,
                                     progress=False)
        names = [pp for pp in ev.postprocessors if pp not in table.attrs["skipped"]]
        return Evaluation(tables={pp: table.loc[pp] for pp in names},
                          settings={pp: table.attrs["settings"][pp] for pp in names},
                          searched={pp: False for pp in names}, id_metrics=table.attrs["id"],
                          scores=scores, skipped=table.attrs["skipped"])


def run(cfg: Dict[str, Any], progress: bool = True, settings: Optional[TrainSettings] = None) -> Dict[str, Any]:
    """Train (or resume) and evaluate one run with the standalone engine."""
    settings = settings or TrainSettings.from_config(cfg)
    try:
        return run_path(StandaloneEngine(cfg), settings, progress=progress)
    finally:
        distributed.shutdown()
