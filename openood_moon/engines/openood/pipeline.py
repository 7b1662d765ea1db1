"""OpenOOD pipeline ``train_moon``: the run path (:mod:`openood_moon.run_path`) inside a real OpenOOD.

``TrainMoonPipeline(config).run()``, with ``config`` an OpenOOD ``Config`` whose ``output_dir`` is the
run folder (``<root>/s<seed>``, as ``setup_config`` makes it from ``output_dir/exp_name``). The engine
supplies OpenOOD's parts only:

* data: the config's benchmark registered into the Evaluator API (:mod:`.run_data`), then OpenOOD's
  ``get_dataloader``;
* network: OpenOOD's ``get_network`` (``network.name`` wrapped in ``moon`` when MOON's loss is on);
  trainer: the registered ``moon`` trainer (:class:`.trainer.OpenOODMoonTrainer`, built with the
  run's settings);
* per epoch, OpenOOD's evaluator validates the trainer's model and OpenOOD's recorder records it (its
  ``best_epoch*``/``last_epoch*`` files sit beside our ``best.ckpt``);
* evaluation: OpenOOD's Evaluator API, one per ``evaluation.postprocessors`` entry. Settings: our
  fixed ones (``evaluation.postprocessor_args``; ``knn.k`` and ``vim.d`` map to OpenOOD's ``K`` and
  ``dim``), no parameter search; ``evaluation.config_root: <dir>`` makes the Evaluator read
  ``<dir>/postprocessors/<pp>.yml`` instead (OpenOOD's own ``configs/``, APS included). Every row of
  the results states which (``postprocessor_settings``, ``searched``).
"""
import os
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import torch

from ...config import ConfigError
from ...evaluation.outputs import collect_outputs, id_metrics
from ...netutils import backbone_of, device_of, plain_dict, unwrap
from ...results import METRIC_COLUMNS
from ...run_path import Engine, Evaluation, run as run_path
from ...settings import TrainSettings
from . import compat
from .postprocessor import postprocessor_config, settings_of
from .run_data import prepare_data


def _cfg(value=None):
    from openood.utils import Config

    return Config(value or {})


class OpenOODEngine(Engine):
    name = "openood"

    def __init__(self, config):
        self.config = config
        self.data_root = None
        self.loaders: Dict[str, Any] = {}
        self.evaluator = self.recorder = None

    # ------------------------------------------------------------------ run path hooks
    def resolve(self, settings: TrainSettings):
        from .register import choices

        config = self.config
        compat.install_cpu_shim()  # OpenOOD's evaluator/recorder paths call .cuda(); no-op with CUDA
        if config.trainer.name != "moon":
            raise ConfigError(f"pipeline train_moon needs trainer.name 'moon', got {config.trainer.name!r}")
        valid = choices("postprocessor")
        unknown = [p for p in settings.evaluation.postprocessors if p not in valid]
        if unknown:
            raise ConfigError(f"unknown postprocessor {unknown[0]!r} in evaluation.postprocessors; valid "
                              f"choices (OpenOOD engine): {', '.join(valid)}")
        root = settings.evaluation.config_root
        if root:
            missing = [p for p in settings.evaluation.postprocessors
                       if not os.path.isfile(os.path.join(root, "postprocessors", f"{p}.yml"))]
            if missing:
                raise ConfigError(f"evaluation.config_root {root!r} lacks postprocessors/{missing[0]}.yml "
                                  "(OpenOOD would try to download it)")
        networks = choices("network")
        for net_cfg in (config.network, config.network.backbone):
            if net_cfg is not None and net_cfg.name not in networks:
                raise ConfigError(f"unknown network.name {net_cfg.name!r}; valid choices (OpenOOD engine): "
                                  f"{', '.join(networks)}")
        config.output_dir = os.path.abspath(config.output_dir)
        self.data_root = prepare_data(config)
        return plain_dict(config), Path(config.output_dir)

    def build(self, settings: TrainSettings):
        from openood.datasets import get_dataloader
        from openood.evaluators import get_evaluator
        from openood.networks import get_network
        from openood.recorders import get_recorder

        config = self.config
        self.loaders = get_dataloader(config)
        net = get_network(self._network_config(settings))
        if (config.num_gpus or 0) * (config.num_machines or 1) > 1:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.evaluator, self.recorder = get_evaluator(config), get_recorder(config)
        return net, self.loaders["train"], device_of(net)

    def make_trainer(self, net, train_loader, settings: TrainSettings, device):
        from .trainer import OpenOODMoonTrainer

        return OpenOODMoonTrainer(net, train_loader, self.config, settings=settings).core

    def after_epoch(self, trainer, metrics: Dict[str, Any], is_main: bool) -> None:
        import openood.utils.comm as comm

        epoch_idx = metrics["epoch_idx"] + 1  # OpenOOD counts epochs from 1
        model = trainer.model_for_eval()
        val_metrics = self.evaluator.eval_acc(model, self.loaders["val"], None, epoch_idx)
        comm.synchronize()
        if is_main:
            self.recorder.save_model(backbone_of(model), val_metrics)
            self.recorder.report({**metrics, "epoch_idx": epoch_idx}, val_metrics)
        model.train(trainer.net.training)

    def after_training(self, model, is_main: bool) -> None:
        if is_main:
            self.recorder.summary()

    def evaluate(self, model, settings: TrainSettings, run_dir: Path) -> Evaluation:
        import openood.evaluation_api.postprocessor as epp
        from openood.evaluation_api import Evaluator

        config, ev = self.config, settings.evaluation
        device = device_of(model)
        id_name = config.dataset.name
        batch_size = int(ev.batch_size or config.dataset.test.batch_size or 200)
        feature_size = getattr(unwrap(model), "feature_size", None)
        ids = id_metrics(collect_outputs(model.eval(), self.loaders["test"], device))
        tables, pp_settings, searched, scores = {}, {}, {}, {}
        for pp in ev.postprocessors:
            instance = None
            if not ev.config_root:
                cfg = _cfg(postprocessor_config(pp, id_name, ev.postprocessor_args.get(pp), feature_size))
                instance = epp.postprocessors[pp](cfg)
                instance.APS_mode, instance.hyperparam_search_done = False, False
            try:
                evaluator = Evaluator(model, id_name=id_name, data_root=self.data_root,
                                      config_root=ev.config_root or None, postprocessor_name=pp,
                                      postprocessor=instance, batch_size=batch_size, shuffle=False,
                                      num_workers=int(config.num_workers or 0))
            except AttributeError as err:
                raise ConfigError(f"postprocessor {pp!r} needs settings ({err}); give them in "
                                  f"evaluation.postprocessor_args.{pp} (OpenOOD names) or use "
                                  "evaluation.config_root") from None
            tables[pp] = evaluator.eval_ood(progress=False)[METRIC_COLUMNS]
            pp_settings[pp], searched[pp] = settings_of(evaluator.postprocessor)
            scores[pp] = confidences(evaluator.scores)
        return Evaluation(tables, pp_settings, searched, ids, scores)

    # ------------------------------------------------------------------ pieces
    def _network_config(self, settings: TrainSettings):
        net_cfg = self.config.network
        if settings.uses_unknown and net_cfg.name != "moon":
            return _cfg({"name": "moon", "num_classes": net_cfg.num_classes, "pretrained": False,
                         "checkpoint": None, "num_gpus": net_cfg.num_gpus, "backbone": net_cfg})
        return net_cfg


def confidences(scores: Dict) -> Dict[str, Any]:
    """The Evaluator's ``scores`` (``[pred, conf, gt]`` triples) as the plots' ``{'id': conf, 'near':
    {set: conf}, 'far': {set: conf}}`` (higher = more ID)."""
    def conf(triple):
        return np.asarray(triple[1], dtype=float)

    out = {"id": conf(scores["id"]["test"]), "near": {}, "far": {}}
    for split in ("near", "far"):
        out[split] = {name: conf(t) for name, t in (scores["ood"].get(split) or {}).items() if t is not None}
    return out


class TrainMoonPipeline:
    """OpenOOD pipeline ``train_moon`` (registered by :func:`.register.register`)."""

    def __init__(self, config) -> None:
        self.config = config

    def run(self) -> Dict[str, Any]:
        settings = TrainSettings.from_config(plain_dict(self.config))
        result = run_path(OpenOODEngine(self.config), settings)
        if result.get("table") is not None:
            result["tables"] = tables_by_postprocessor(result["table"])
        return result


def tables_by_postprocessor(table: pd.DataFrame) -> Dict[str, pd.DataFrame]:
    return {pp: table.loc[pp] for pp in table.index.get_level_values(0).unique()}


__all__: List[str] = ["OpenOODEngine", "TrainMoonPipeline", "confidences"]
