"""The OpenOOD engine's data for one run: the benchmark a config names, registered into the Evaluator API.

1. an embedded benchmark (``mnist6``, ``fmnist6``) is built (offline) under ``dataset.data_root`` and
   its paths are filled in; any other benchmark is used as its OpenOOD dataset configs say, after its
   lists, labels and images are checked (:mod:`openood_moon.data.check`: ConfigError naming
   file:line). A name OpenOOD's Evaluator does not know is registered into it (no downloads);
   OpenOOD's own benchmarks (cifar10, ...) need no ``*_ood.yml`` and fail early, with a hint, when
   their image lists are missing.
2. ``dataset.subset: N`` keeps the first N lines of every image list and registers them as
   ``<name>_subset<N>`` (the name ``config.yml`` records; ``scripts/eval_ood.py`` finds it there).
"""
import copy
import os
from typing import Dict, List

from ...config import ConfigError
from ...data.builder import EMBEDDED_BENCHMARKS
from ...data.check import check_benchmark, check_data_root
from ...data.imglist import info_from_configs
from .datasets import (openood_dataset_config, register_benchmark, register_embedded, registered_benchmarks,
                       resolve_info)

EMBEDDED = "mnist6"


def _cfg(value=None):
    from openood.utils import Config

    return Config(value or {})


def _subset_info(info: Dict, n: int, out_root: str, name: str) -> Dict:
    """A copy of DATA_INFO-form ``info`` (absolute paths) whose lists keep their first ``n`` lines."""
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



def prepare_data(config) -> str:
    """Register the run's benchmark into the Evaluator API and point the config's paths at it (absolute);
    return its data_root. See the module docstring."""
    import openood.evaluation_api.datasets as eds

    name, subset = config.dataset.name, config.dataset.subset
    if name in EMBEDDED_BENCHMARKS:
        data_root = register_embedded(config.dataset.data_root or "./data", name)
        info = eds.DATA_INFO[name]
        if config.ood_dataset is None:
            ood = openood_dataset_config(name)["ood_dataset"]
            ood.update({k: config[k] for k in ("num_workers", "num_gpus", "num_machines")})
            config.ood_dataset = _cfg(ood)
    elif name in eds.DATA_INFO and name not in registered_benchmarks():
        # one of OpenOOD's own benchmarks (cifar10, ...): OOD sets come from its Evaluator entry
        data_root = config.dataset.data_root or data_root_of(config.dataset.train.imglist_pth)
        own_info = _require_data(config.dataset, eds.DATA_INFO[name], data_root)
        if not subset:
            return data_root  # its Evaluator entry and the config's paths stay as they are
        info = (info_from_configs(config.dataset, config.ood_dataset) if config.ood_dataset is not None
                else own_info)
    else:  # a benchmark of the user's: lists, labels and images checked (file and line) before training
        info = info_from_configs(config.dataset, config.ood_dataset)
        check_data_root(config.dataset.data_root, info)
        check_benchmark(info, max_items=int(subset) if subset else None)
        data_root = data_root_of(info["id"]["train"]["imglist_path"])
    if subset:
        data_root = os.path.join(os.path.abspath(config.output_dir), "subset")
        info = _subset_info(info, int(subset), data_root, name)
        name = f"{name}_subset{int(subset)}"  # never overwrite the full benchmark's entry
    if subset or name not in EMBEDDED_BENCHMARKS:
        data_root = register_benchmark(name, info, data_root, int(config.dataset.num_classes),
                                       config.dataset.pre_size, config.dataset.image_size,
                                       normalization(config.dataset))
    config.dataset.name = name
    _apply_paths(config, eds.DATA_INFO[name])
    return data_root




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



def data_root_of(imglist_path: str) -> str:
    """The folder holding ``benchmark_imglist/`` (OpenOOD's layout), from an image-list path."""
    path = os.path.abspath(imglist_path)
    marker = os.sep + "benchmark_imglist" + os.sep
    if marker not in path:
        raise ConfigError(f"{imglist_path}: image lists must live under <data_root>/benchmark_imglist/ "
                          "(OpenOOD's layout) for the Evaluator API")
    return path.split(marker)[0]



def normalization(dataset) -> List[List[float]]:
    from openood.preprocessors.transform import normalization_dict

    return normalization_dict.get(dataset.normalization_type, [[0.5] * 3, [0.5] * 3])
