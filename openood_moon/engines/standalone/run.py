"""The standalone engine: train with the core trainer, evaluate with pytorch-ood, lay results out
like OpenOOD's (``<output_dir>/<exp_name>`` = ``results/<experiment>/s<seed>/``).

Writes ``config.yml`` (merged config), ``log.txt``, ``checkpoint.pt`` (whole training state, after
every epoch, atomically), ``best.ckpt`` (plain K-way backbone state_dict, loads into OpenOOD's
network), ``moon_net.ckpt`` (the evaluated model with its unknown head), ``ood.csv``, ``metrics.json``
and ``plots/``. A run whose ``ood.csv`` exists is skipped when ``evaluation.resume`` is true.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ...checkpoint import load_checkpoint, save_checkpoint
from ...config import ConfigError
from ...moon import MoonNet, export_state_dict
from ...networks import build_network
from ...run_log import run_logger
from ...settings import TrainSettings
from ...trainer import MoonTrainer
from .data import build_loaders
from .detectors import available_postprocessors
from .evaluate import evaluate_ood, format_table
from .plots import plot_roc_curves, plot_score_histograms


def resolve_device(name: str) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: Dict[str, Any]) -> torch.nn.Module:
    """The backbone from ``network``; wrapped in MoonNet when MOON's loss is on."""
    net_cfg = dict(cfg["network"])
    kwargs = {k: v for k, v in net_cfg.items()
              if k not in ("name", "num_classes", "pretrained", "checkpoint", "num_gpus")}
    try:
        backbone = build_network(net_cfg["name"], int(net_cfg["num_classes"]), **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    return MoonNet(backbone) if TrainSettings.from_config(cfg).uses_unknown else backbone


def run_dir_of(cfg: Dict[str, Any]) -> Path:
    return Path(cfg.get("output_dir", "./results/")) / str(cfg["exp_name"])


def run(cfg: Dict[str, Any], progress: bool = True) -> Dict[str, Any]:
    """Train (or resume) and evaluate one run; returns ``{'run_dir', 'table', 'id'}``."""
    settings = TrainSettings.from_config(cfg)
    evaluation = dict(cfg.get("evaluation") or {})
    device = resolve_device(cfg.get("device", "auto"))
    postprocessors = list(evaluation.get("postprocessors") or ["msp", "ebo", "moon"])
    unknown = [p for p in postprocessors if p not in available_postprocessors()]
    if unknown:
        raise ConfigError(f"unknown postprocessor {unknown[0]!r} in evaluation.postprocessors; valid "
                          f"choices: {', '.join(available_postprocessors())}")
    run_dir = run_dir_of(cfg)
    if evaluation.get("resume", True) and (run_dir / "ood.csv").exists():
        print(f"finished run found, skipped: {run_dir}")
        return {"run_dir": run_dir, "table": None, "id": None, "skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config.yml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log = run_logger(run_dir)

    seed_everything(settings.seed)
    net = build_model(cfg)
    loaders = build_loaders(cfg)
    trainer = MoonTrainer(net, loaders["id"]["train"], cfg, device)
    ckpt = run_dir / "checkpoint.pt"
    if evaluation.get("resume", True) and ckpt.exists():
        try:
            trainer.load_state_dict(load_checkpoint(str(ckpt)))
        except ValueError as err:
            raise ConfigError(f"{ckpt}: {err}; use another output_dir or --evaluation.resume false") from None
        log.info("resumed from %s at epoch %d", ckpt, trainer.epoch)
        print(f"resumed from {ckpt} at epoch {trainer.epoch}")
    log.info("device %s, %d train steps/epoch, settings %s", device, trainer.steps_per_epoch,
             json.dumps(settings.to_dict()))

    epochs = settings.optimizer.num_epochs
    bar = tqdm(total=epochs, initial=trainer.epoch, desc="train", unit="epoch", disable=not progress,
               file=sys.stdout)
    while trainer.epoch < epochs:
        metrics = trainer.train_epoch()
        save_checkpoint(trainer.state_dict(), str(ckpt))
        log.info("epoch %s", json.dumps(metrics))
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['train_acc']:.3f}",
                        density=f"{metrics['density']:.3f}")
        bar.update(1)
    bar.close()

    model = trainer.model_for_eval()
    save_checkpoint(export_state_dict(model), str(run_dir / "best.ckpt"))
    save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, str(run_dir / "moon_net.ckpt"))

    eval_loaders = {"id": {**loaders["id"], "train": loaders["id"]["train_eval"]}, "ood": loaders["ood"]}
    pp_args = {k: v for k, v in (evaluation.get("postprocessor_args") or {}).items() if k in postprocessors}
    table, scores = evaluate_ood(model, eval_loaders, postprocessors, pp_args=pp_args, device=device,
                                 progress=progress)
    table.to_csv(run_dir / "ood.csv")
    summary = {"id": table.attrs["id"], "density": trainer.masking.density(), "epochs": epochs,
               "skipped_postprocessors": table.attrs["skipped"], "seed": settings.seed}
    with open(run_dir / "metrics.json", "w") as f:
        json.dump(summary, f, indent=2)
    if evaluation.get("plots", True):
        plot_score_histograms(scores, run_dir / "plots")
        plot_roc_curves(scores, run_dir / "plots")
    text = format_table(table)
    log.info("results\n%s", text)
    print(text)
    print(f"results written to {run_dir}")
    return {"run_dir": run_dir, "table": table, "id": table.attrs["id"], "skipped": False}
