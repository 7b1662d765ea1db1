"""Data for the standalone engine from a merged config: an embedded benchmark (``mnist6``, ``fmnist6``;
built on first use under ``dataset.data_root``) or any OpenOOD-format image-list benchmark named by
``dataset`` / ``ood_dataset``.

Every dataset key the engine reads is honoured or refused (:func:`check_data`, before anything is
written): ``name``, ``num_classes`` (ID labels in ``[0, K)``), ``pre_size``, ``image_size``,
``interpolation``, ``normalization_type`` and ``preprocessor.name``
(:func:`openood_moon.data.transforms.build_transforms`), ``data_root`` (embedded: where the benchmark
is built; otherwise, when set, the folder holding the lists), ``subset``, each split's
``data_dir``, ``imglist_pth``, ``batch_size``, ``dataset_class`` (``ImglistDataset`` only) and
``shuffle`` (train true, evaluation false); ``ood_dataset``'s ``nearood`` / ``farood`` sets,
``num_classes`` (= the dataset's), ``dataset_class``, ``shuffle`` and ``separate_groups``. Every
evaluation set is batched by ``evaluation.batch_size`` or else ``dataset.test.batch_size``, as the
OpenOOD engine's Evaluator does (``dataset.val.batch_size`` and ``ood_dataset.batch_size`` are
OpenOOD's own test pipelines'; no result depends on an evaluation batch size). ``ood_dataset.val``
is optional: this engine never loads it (no parameter search); when given it is checked like the
others, since the OpenOOD engine and ``eval_ood.py`` read it.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, Optional

from ...config import ConfigError
from ...data.builder import EMBEDDED_BENCHMARKS, build, embedded_benchmark
from ...data.check import check_benchmark, check_data_root
from ...data.imglist import benchmark_loaders, eval_transform, info_from_configs, loader
from ...data.transforms import build_transforms
from ...distributed import per_rank_batch, rank, world_size
from ...evaluation.groups import separate_groups

IMGLIST_CLASS = "ImglistDataset"


def _flag(node: Dict[str, Any], key: str, where: str, expected: bool, why: str) -> None:
    value = node.get(key)
    if value is not None and value is not expected:
        raise ConfigError(f"{where}.{key} must be {str(expected).lower()} (or absent) in the standalone engine, "
                          f"got {value!r}: {why}")


def _batch_size(node: Dict[str, Any], where: str, default: int) -> int:
    size = node.get("batch_size")
    if size is None:
        return default
    if type(size) is not int or size < 1:
        raise ConfigError(f"{where}.batch_size must be an integer >= 1, got {size!r}")
    return size


def _check_keys(ds: Any, ood: Any) -> None:
    """The keys of ``dataset`` / ``ood_dataset`` this engine reads: present, typed, supported."""
    if not isinstance(ds, dict):
        raise ConfigError(f"dataset must be a mapping (an OpenOOD dataset yml), got {ds!r}")
    if not isinstance(ds.get("name"), str) or not ds["name"]:
        raise ConfigError(f"dataset.name must be a non-empty string, got {ds.get('name')!r}")
    k = ds.get("num_classes")
    if type(k) is not int or k < 1:
        raise ConfigError(f"dataset.num_classes must be an integer >= 1, got {k!r}")
    for split in ("train", "val", "test"):
        node = ds.get(split)
        if not isinstance(node, dict):
            raise ConfigError(f"dataset.{split} must be a mapping with data_dir and imglist_pth, got {node!r}")
        if node.get("dataset_class", IMGLIST_CLASS) != IMGLIST_CLASS:
            raise ConfigError(f"dataset.{split}.dataset_class {node['dataset_class']!r}: the standalone engine "
                              f"reads image lists only (valid choice: {IMGLIST_CLASS}); others need --engine openood")
        _flag(node, "shuffle", f"dataset.{split}", split == "train",
              "the training set is always shuffled (seeded per epoch), evaluation sets never")
    if ood is None:
        return
    if not isinstance(ood, dict):
        raise ConfigError(f"ood_dataset must be a mapping (an OpenOOD *_ood.yml), got {ood!r}")
    if ood.get("num_classes") not in (None, k):
        raise ConfigError(f"ood_dataset.num_classes ({ood['num_classes']!r}) must equal dataset.num_classes ({k})")
    if ood.get("dataset_class", IMGLIST_CLASS) != IMGLIST_CLASS:
        raise ConfigError(f"ood_dataset.dataset_class {ood['dataset_class']!r}: valid choice (standalone "
                          f"engine): {IMGLIST_CLASS}")
    _flag(ood, "shuffle", "ood_dataset", False, "evaluation sets are never shuffled")


def _embedded_name(ds: Dict[str, Any]) -> Optional[str]:
    """The embedded benchmark a config names (its lists must be that benchmark's), else None."""
    name = ds["name"]
    if name not in EMBEDDED_BENCHMARKS:
        return None
    spec = embedded_benchmark(name)
    for split in ("train", "val", "test"):
        path = (ds.get(split) or {}).get("imglist_pth")
        expected = f"{spec.list_dir}/{spec.sets[split][0]}"
        if isinstance(path, str) and not os.path.normpath(path).endswith(os.path.normpath(expected)):
            raise ConfigError(f"dataset.name {name!r} is an embedded benchmark, built and read under "
                              f"dataset.data_root ({expected} there), but dataset.{split}.imglist_pth is "
                              f"{path!r}: give your own benchmark another name")
    return name


def check_data(cfg: Dict[str, Any], open_images: bool = True) -> Optional[Dict[str, Any]]:
    """Check a config's data before anything is written (ConfigError naming the key, or the file and
    line): the dataset keys (module docstring) and, for a benchmark of the user's, every list, label and
    image (``open_images``: each image is opened and verified). Returns the benchmark's DATA_INFO
    (absolute paths), or None for an embedded benchmark (checked by its manifest when it is built)."""
    build_transforms(cfg)  # preprocessor.name and the image keys first
    ds, ood = cfg.get("dataset"), cfg.get("ood_dataset")
    _check_keys(ds, ood)
    separate_groups(ood)
    if _embedded_name(ds):
        return None
    info = info_from_configs(ds, ood, ood_val=False)
    check_data_root(ds.get("data_root"), info)
    check_benchmark(info, max_items=ds.get("subset"), open_images=open_images)
    return info


def build_loaders(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``benchmark_loaders`` plus ``id.train_eval``: the training images with test transforms
    (postprocessors such as KNN, ViM and Mahalanobis are fit on it). ``ood.val`` is None (never loaded).

    Under ``torchrun`` the train loader is this rank's shard: ``dataset.train.batch_size`` stays the global
    batch and each of the W ranks loads ``batch_size / W`` items of it (:mod:`openood_moon.distributed`);
    the evaluation loaders are whole (rank 0 evaluates)."""
    transforms = build_transforms(cfg)
    info = check_data(cfg, open_images=False)   # images are decoded below: a bad one names its list line
    ds = cfg["dataset"]
    if info is None:
        data_root = ds.get("data_root") or "./data"
        spec = embedded_benchmark(ds["name"])
        build(spec, data_root)
        info = spec.info()
    else:
        data_root = ""
    train_bs = per_rank_batch(_batch_size(ds["train"], "dataset.train", 128))  # global batch / processes
    test_bs = (cfg.get("evaluation") or {}).get("batch_size") or _batch_size(ds["test"], "dataset.test", 256)
    loaders = benchmark_loaders(info, data_root, batch_size=train_bs, test_batch_size=test_bs,
                                num_workers=int(cfg.get("num_workers", 0) or 0),
                                seed=int(cfg.get("seed", 0)), subset=ds.get("subset"),
                                num_replicas=world_size(), rank=rank(),
                                transforms=transforms, ood_val=False)
    plain = copy.copy(loaders["id"]["train"].dataset)  # same cached images, test transform
    plain.transform = eval_transform(transforms)
    loaders["id"]["train_eval"] = loader(plain, test_bs)
    return loaders
