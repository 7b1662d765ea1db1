"""OpenOOD pipeline ``train_moon``: train with the core trainer inside OpenOOD, then evaluate OOD.

``TrainMoonPipeline(config).run()``, with ``config`` an OpenOOD ``Config`` whose ``output_dir`` is
the run folder (``<root>/s<seed>``, as ``setup_config`` makes it from ``output_dir/exp_name``):

1. data: the embedded benchmark ``mnist6`` is built (offline) under ``dataset.data_root`` and its
   paths are filled in; any other benchmark is used as its OpenOOD dataset configs say. A name
   OpenOOD's Evaluator does not know is registered into it (no downloads); OpenOOD's own benchmarks
   (cifar10, ...) need no ``*_ood.yml`` and fail early, with a hint, when their image lists are
   missing. ``dataset.subset: N`` keeps the first N lines of every image list and registers them
   as ``<name>_subset<N>`` (the name ``config.yml`` records; ``scripts/eval_ood.py`` finds it there).
2. OpenOOD's ``get_dataloader``, ``get_network`` (``network.name`` wrapped in ``moon`` when MOON's
   unknown loss is on), ``get_trainer`` (``moon``), ``get_evaluator`` and ``get_recorder``; per epoch
   the trainer's returned net is validated and handed to the recorder, as OpenOOD's TrainPipeline.
3. files in the run folder: ``checkpoint.pt`` (whole training state after every epoch, atomic;
   ``evaluation.resume`` continues from it), ``best.ckpt`` (the evaluated model — the vote's average
   when it ran — as a plain K-way backbone state_dict; OpenOOD's recorder writes its
   ``best_epoch*``/``last_epoch*`` files beside it), ``moon_net.ckpt`` (the evaluated model with its
   unknown head), ``config.yml``, ``log.txt``.
4. OOD evaluation through OpenOOD's Evaluator API for every ``evaluation.postprocessors`` entry:
   ``<run>/ood/<pp>.csv`` (numbers) and, as OpenOOD's ``scripts/eval_ood.py --save-csv`` does,
   ``<root>/ood/<pp>.csv`` with "mean ± std" over every ``<root>/s*`` run evaluated so far;
   ``<run>/ood.csv`` (all postprocessors) and ``<run>/metrics.json`` (ID ACC/ECE, density, ...).

Postprocessor settings: OpenOOD's ``postprocessor_args`` built from ``evaluation.postprocessor_args``
(our names ``knn.k`` and ``vim.d`` map to OpenOOD's ``K`` and ``dim``; other keys pass through), no
automatic parameter search. ``evaluation.config_root: <dir>`` makes the Evaluator read
``<dir>/postprocessors/<pp>.yml`` instead (e.g. OpenOOD's own ``configs/``, APS included).
"""
import glob
import json
import os
import re
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
import yaml

from ...checkpoint import load_checkpoint, save_checkpoint
from ...config import ConfigError
from ...data.imglist import info_from_configs
from ...moon.net import export_state_dict
from ...run_log import run_logger
from ...settings import TrainSettings
from . import compat
from .datasets import (openood_dataset_config, register_benchmark, register_embedded, registered_benchmarks,
                       resolve_info)
from .trainer import device_of, plain_dict

EMBEDDED = "mnist6"
ARG_ALIASES = {"knn": {"k": "K"}, "vim": {"d": "dim"}}  # standalone names -> OpenOOD's
DEFAULT_ARGS = {"knn": {"K": 50}, "react": {"percentile": 90}, "ebo": {"temperature": 1},
                "ash": {"percentile": 90}, "dice": {"p": 90}, "scale": {"percentile": 85}}
COLUMNS = ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]


def _cfg(value=None):
    from openood.utils import Config

    return Config(value or {})


def eval_root(run_dir: str) -> str:
    """``<root>`` of ``<root>/s<seed>`` (eval_ood.py's layout); the run folder itself otherwise."""
    run_dir = os.path.normpath(run_dir)
    return os.path.dirname(run_dir) if re.fullmatch(r"s\d+", os.path.basename(run_dir)) else run_dir


def postprocessor_config(name: str, id_name: str, user_args: Optional[Dict] = None,
                         feature_size: Optional[int] = None) -> Dict:
    """OpenOOD postprocessor config (yml form) with APS off; ``user_args`` may use our names."""
    args = dict(DEFAULT_ARGS.get(name, {}))
    if name == "vim" and feature_size:
        args["dim"] = max(1, feature_size // 2)
    aliases = ARG_ALIASES.get(name, {})
    args.update({aliases.get(k, k): v for k, v in (user_args or {}).items()})
    return {"postprocessor": {"name": name, "APS_mode": False, "postprocessor_args": args},
            "dataset": {"name": id_name}}


def mean_std_table(tables: List[pd.DataFrame]) -> pd.DataFrame:
    """eval_ood.py's cells: "mean ± std" (2 decimals, population std) over equally shaped tables."""
    stack = np.stack([t.to_numpy(dtype=float) for t in tables])
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    cells = [[f"{m:.2f} \u00B1 {s:.2f}" for m, s in zip(mr, sr)] for mr, sr in zip(mean, std)]
    return pd.DataFrame(cells, index=tables[0].index, columns=tables[0].columns)


def aggregate_seeds(root: str, pp: str) -> Optional[pd.DataFrame]:
    """eval_ood.py's table: "mean ± std" (2 decimals) over ``<root>/s*/ood/<pp>.csv``."""
    tables = [pd.read_csv(path, index_col=0) for path in sorted(glob.glob(os.path.join(root, "s*", "ood",
                                                                                        f"{pp}.csv")))]
    return mean_std_table(tables) if tables else None


def _subset_info(info: Dict, n: int, out_root: str, name: str) -> Dict:
    """A copy of DATA_INFO-form ``info`` (absolute paths) whose lists keep their first ``n`` lines."""
    import copy

    info = copy.deepcopy(info)
    list_dir = os.path.join(out_root, "benchmark_imglist", name)
    os.makedirs(list_dir, exist_ok=True)

    def cut(entry):
        with open(entry["imglist_path"]) as f:
            lines = f.readlines()[:n]
        path = os.path.join(list_dir, os.path.basename(entry["imglist_path"]))
        with open(path, "w") as f:
            f.writelines(lines)
        entry["imglist_path"] = path

    for split in ("train", "val", "test"):
        cut(info["id"][split])
    cut(info["ood"]["val"])
    for group in ("near", "far"):
        for ds in info["ood"][group]["datasets"]:
            cut(info["ood"][group][ds])
    return info


def _apply_paths(config, info: Dict) -> None:
    """Point ``config.dataset``/``config.ood_dataset`` at the lists of ``info`` (absolute paths)."""
    for split in ("train", "val", "test"):
        config.dataset[split].data_dir = info["id"][split]["data_dir"]
        config.dataset[split].imglist_pth = info["id"][split]["imglist_path"]
    ood = config.ood_dataset
    if ood is None:  # OpenOOD's own benchmark without an *_ood.yml: the Evaluator needs none
        return
    ood.val.data_dir, ood.val.imglist_pth = info["ood"]["val"]["data_dir"], info["ood"]["val"]["imglist_path"]
    for level, key in (("near", "nearood"), ("far", "farood")):
        ood[key].datasets = list(info["ood"][level]["datasets"])
        for ds in info["ood"][level]["datasets"]:
            ood[key][ds] = _cfg({"data_dir": info["ood"][level][ds]["data_dir"],
                                 "imglist_pth": info["ood"][level][ds]["imglist_path"]})


class TrainMoonPipeline:
    def __init__(self, config) -> None:
        self.config = config

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> str:
        """Register the benchmark into the Evaluator API and fix the config's paths; return data_root."""
        import openood.evaluation_api.datasets as eds

        config = self.config
        name, subset = config.dataset.name, config.dataset.subset
        if name == EMBEDDED:
            data_root = register_embedded(config.dataset.data_root or "./data")
            info = eds.DATA_INFO[name]
            if config.ood_dataset is None:
                ood = openood_dataset_config(name)["ood_dataset"]
                ood.update({k: config[k] for k in ("num_workers", "num_gpus", "num_machines")})
                config.ood_dataset = _cfg(ood)
        elif name in eds.DATA_INFO and name not in registered_benchmarks():
            # one of OpenOOD's own benchmarks (cifar10, ...): OOD sets come from its Evaluator entry
            data_root = config.dataset.data_root or _data_root_of(config.dataset.train.imglist_pth)
            own_info = _require_data(config.dataset, eds.DATA_INFO[name], data_root)
            if not subset:
                return data_root  # its Evaluator entry and the config's paths stay as they are
            info = (info_from_configs(config.dataset, config.ood_dataset) if config.ood_dataset is not None
                    else own_info)
        else:
            info = info_from_configs(config.dataset, config.ood_dataset)
            data_root = _data_root_of(info["id"]["train"]["imglist_path"])
        if subset:
            data_root = os.path.join(os.path.abspath(config.output_dir), "subset")
            info = _subset_info(info, int(subset), data_root, name)
            name = f"{name}_subset{int(subset)}"  # never overwrite the full benchmark's entry
        if subset or name != EMBEDDED:
            data_root = register_benchmark(name, info, data_root, int(config.dataset.num_classes),
                                           config.dataset.pre_size, config.dataset.image_size,
                                           _normalization(config.dataset))
        config.dataset.name = name
        _apply_paths(config, eds.DATA_INFO[name])
        return data_root

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        import openood.utils.comm as comm
        from openood.datasets import get_dataloader
        from openood.evaluators import get_evaluator
        from openood.networks import get_network
        from openood.recorders import get_recorder
        from openood.trainers import get_trainer

        config = self.config
        compat.install_cpu_shim()  # OpenOOD's evaluator/recorder paths call .cuda(); no-op with CUDA
        settings = TrainSettings.from_config(plain_dict(config))
        evaluation = plain_dict(config.evaluation or {})
        run_dir = os.path.abspath(config.output_dir)
        config.output_dir = run_dir
        if evaluation.get("resume", True) and os.path.isfile(os.path.join(run_dir, "ood.csv")):
            print(f"finished run found, skipped: {run_dir}", flush=True)
            return {"run_dir": run_dir, "skipped": True}
        if config.trainer.name != "moon":
            raise ConfigError(f"pipeline train_moon needs trainer.name 'moon', got {config.trainer.name!r}")
        pps = list(evaluation.get("postprocessors") or ["msp", "ebo", "knn", "react", "moon"])
        self._check_postprocessors(pps, evaluation)
        os.makedirs(run_dir, exist_ok=True)
        data_root = self.prepare_data()
        log = run_logger(run_dir)
        with open(os.path.join(run_dir, "config.yml"), "w") as f:
            yaml.safe_dump(plain_dict(config), f, sort_keys=False)

        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed)
        loaders = get_dataloader(config)
        train_loader, val_loader, test_loader = loaders["train"], loaders["val"], loaders["test"]
        net = get_network(self._network_config(settings))
        if (config.num_gpus or 0) * (config.num_machines or 1) > 1:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        trainer = get_trainer(net, train_loader, val_loader, config)
        evaluator, recorder = get_evaluator(config), get_recorder(config)
        ckpt = os.path.join(run_dir, "checkpoint.pt")
        if evaluation.get("resume", True) and os.path.isfile(ckpt):
            try:
                trainer.load_state_dict(load_checkpoint(ckpt))
            except ValueError as err:
                raise ConfigError(f"{ckpt}: {err}; use another output_dir or --evaluation.resume false") from None
            print(f"resumed from {ckpt} at epoch {trainer.epoch}", flush=True)
        device = device_of(net)
        log.info("device %s, settings %s", device, json.dumps(settings.to_dict()))

        epochs = settings.optimizer.num_epochs
        for epoch_idx in range(trainer.epoch + 1, epochs + 1):
            model, train_metrics = trainer.train_epoch(epoch_idx)
            val_metrics = evaluator.eval_acc(model, val_loader, None, epoch_idx)
            comm.synchronize()
            if comm.is_main_process():
                save_checkpoint(trainer.state_dict(), ckpt)
                recorder.save_model(_backbone(model), val_metrics)
                recorder.report(train_metrics, val_metrics)
                log.info("epoch %s", json.dumps({k: v for k, v in train_metrics.items()
                                                 if isinstance(v, (int, float, str, type(None)))}))
        model = trainer.model_for_eval()
        if not comm.is_main_process():
            return {"run_dir": run_dir, "skipped": False}
        recorder.summary()
        save_checkpoint(export_state_dict(model), os.path.join(run_dir, "best.ckpt"))
        save_checkpoint({k: v.detach().cpu() for k, v in model.state_dict().items()},
                        os.path.join(run_dir, "moon_net.ckpt"))
        test_acc = evaluator.eval_acc(model, test_loader)["acc"]
        print(f"\nComplete Evaluation, Last accuracy {100.0 * test_acc:.2f}", flush=True)

        summary = {"seed": settings.seed, "epochs": epochs, "test_acc": 100.0 * test_acc,
                   "density": trainer.core.masking.density(), "id": self.id_metrics(model, test_loader, device)}
        tables = self.evaluate_ood(model, pps, evaluation, data_root, run_dir)
        combined = pd.concat(tables, names=["postprocessor", "dataset"])
        combined.to_csv(os.path.join(run_dir, "ood.csv"))
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
        text = combined.round(2).to_string()
        log.info("id %s\nresults\n%s", json.dumps(summary["id"]), text)
        print(f"ID: {json.dumps(summary['id'])}\n{text}\nresults written to {run_dir}", flush=True)
        return {"run_dir": run_dir, "skipped": False, "tables": tables, "id": summary["id"]}

    # ------------------------------------------------------------------ pieces
    def _network_config(self, settings: TrainSettings):
        net_cfg = self.config.network
        if settings.uses_unknown and net_cfg.name != "moon":
            return _cfg({"name": "moon", "num_classes": net_cfg.num_classes, "pretrained": False,
                         "checkpoint": None, "num_gpus": net_cfg.num_gpus, "backbone": net_cfg})
        return net_cfg

    def _check_postprocessors(self, pps: List[str], evaluation: Dict) -> None:
        import openood.evaluation_api.postprocessor as epp

        unknown = [p for p in pps if p not in epp.postprocessors]
        if unknown:
            raise ConfigError(f"unknown postprocessor {unknown[0]!r} in evaluation.postprocessors; valid "
                              f"choices (OpenOOD engine): {', '.join(sorted(epp.postprocessors))}")
        # settings of postprocessors that are not evaluated are ignored (as the standalone engine)
        root = evaluation.get("config_root")
        if root:
            missing = [p for p in pps if not os.path.isfile(os.path.join(root, "postprocessors", f"{p}.yml"))]
            if missing:
                raise ConfigError(f"evaluation.config_root {root!r} lacks postprocessors/{missing[0]}.yml "
                                  "(OpenOOD would try to download it)")

    @torch.no_grad()
    def id_metrics(self, model, loader, device) -> Dict[str, float]:
        """ID ACC and ECE (10 bins) in percent, and for a MOON net the K+1 view (ACC_K1, ECE_K1)."""
        from ..standalone.evaluate import collect_outputs, id_metrics

        return id_metrics(collect_outputs(model.eval(), loader, device))

    def evaluate_ood(self, model, pps: List[str], evaluation: Dict, data_root: str,
                     run_dir: str) -> Dict[str, pd.DataFrame]:
        """One Evaluator per postprocessor; writes ``<run>/ood/<pp>.csv`` and ``<root>/ood/<pp>.csv``."""
        import openood.evaluation_api.postprocessor as epp
        from openood.evaluation_api import Evaluator
        from openood.utils import Config

        id_name = self.config.dataset.name
        user_args = evaluation.get("postprocessor_args") or {}
        config_root = evaluation.get("config_root")
        batch_size = int(evaluation.get("batch_size") or self.config.dataset.test.batch_size or 200)
        feature_size = getattr(getattr(model, "module", model), "feature_size", None)
        root = eval_root(run_dir)
        tables = {}
        for pp in pps:
            instance = None
            if not config_root:
                cfg = Config(postprocessor_config(pp, id_name, user_args.get(pp), feature_size))
                instance = epp.postprocessors[pp](cfg)
                instance.APS_mode, instance.hyperparam_search_done = False, False
            try:
                evaluator = Evaluator(model, id_name=id_name, data_root=data_root, config_root=config_root,
                                      postprocessor_name=pp, postprocessor=instance, batch_size=batch_size,
                                      shuffle=False, num_workers=int(self.config.num_workers or 0))
            except AttributeError as err:
                raise ConfigError(f"postprocessor {pp!r} needs settings ({err}); give them in "
                                  f"evaluation.postprocessor_args.{pp} (OpenOOD names) or use "
                                  "evaluation.config_root") from None
            table = evaluator.eval_ood(progress=False)[COLUMNS]
            os.makedirs(os.path.join(run_dir, "ood"), exist_ok=True)
            table.to_csv(os.path.join(run_dir, "ood", f"{pp}.csv"))
            if root != run_dir:
                os.makedirs(os.path.join(root, "ood"), exist_ok=True)
                aggregate_seeds(root, pp).to_csv(os.path.join(root, "ood", f"{pp}.csv"))
            tables[pp] = table
        return tables


def _backbone(model):
    """What OpenOOD's recorder saves: the plain K-way backbone of a MoonNet (no unknown head)."""
    model = getattr(model, "module", model)
    return getattr(model, "backbone", model) if hasattr(model, "fc_unknown") else model


def _require_data(dataset, info: Dict, data_root: str) -> Dict:
    """Fail early, with a hint, when an OpenOOD benchmark's image lists are missing; its info, absolute."""
    missing = [dataset[s].imglist_pth for s in ("train", "val", "test")
               if dataset[s] is not None and not os.path.isfile(dataset[s].imglist_pth)]
    try:
        resolved = resolve_info(info, data_root, int(info["num_classes"]))
    except FileNotFoundError as err:
        missing.append(str(err).split(": ", 1)[-1])
        resolved = None
    if missing:
        raise ConfigError(
            f"{dataset.name} data not found: {missing[0]} is missing. The OpenOOD engine reads OpenOOD "
            f"v1.5's image lists and images under {os.path.abspath(data_root)} (benchmark_imglist/"
            f"{dataset.name}/*.txt, images_classic/...). Fetch them with OpenOOD's "
            "scripts/download/download.py --contents datasets --datasets ood_v1.5 --save_dir ./data "
            "(in an OpenOOD checkout), or set dataset.data_root and the dataset paths.")
    return resolved


def _data_root_of(imglist_path: str) -> str:
    """The folder holding ``benchmark_imglist/`` (OpenOOD's layout), from an image-list path."""
    path = os.path.abspath(imglist_path)
    marker = os.sep + "benchmark_imglist" + os.sep
    if marker not in path:
        raise ConfigError(f"{imglist_path}: image lists must live under <data_root>/benchmark_imglist/ "
                          "(OpenOOD's layout) for the Evaluator API")
    return path.split(marker)[0]


def _normalization(dataset) -> List[List[float]]:
    from openood.preprocessors.transform import normalization_dict

    return normalization_dict.get(dataset.normalization_type, [[0.5] * 3, [0.5] * 3])
