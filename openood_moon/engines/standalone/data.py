"""Loaders for the standalone engine from a merged config: the embedded benchmark ``mnist6`` (built
on first use) or any OpenOOD-format image-list benchmark named by ``dataset`` / ``ood_dataset``.

Inputs follow the config as in the OpenOOD engine: ``preprocessor.name`` (``base`` | ``shift``) and
``dataset.pre_size``, ``image_size``, ``interpolation``, ``normalization_type``
(:func:`openood_moon.data.transforms.build_transforms`), for every benchmark."""
from __future__ import annotations

import copy
from typing import Any, Dict

from torch.utils.data import DataLoader

from ...data.embedded import EMBEDDED_INFO, NAME as EMBEDDED_NAME, build_embedded
from ...data.imglist import benchmark_loaders, eval_transform, info_from_configs
from ...data.transforms import build_transforms


def build_loaders(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``benchmark_loaders`` plus ``id.train_eval``: the training images with test transforms
    (postprocessors such as KNN, ViM and Mahalanobis are fit on it)."""
    transforms = build_transforms(cfg)  # checks preprocessor.name and the dataset keys first
    ds = cfg["dataset"]
    if ds["name"] == EMBEDDED_NAME:
        data_root = ds.get("data_root", "./data")
        build_embedded(data_root)
        info = EMBEDDED_INFO
    else:
        data_root, info = "", info_from_configs(ds, cfg.get("ood_dataset"))
    train_bs = int(ds.get("train", {}).get("batch_size", 128))
    test_bs = int(ds.get("test", {}).get("batch_size", 256))
    loaders = benchmark_loaders(info, data_root, batch_size=train_bs, test_batch_size=test_bs,
                                num_workers=int(cfg.get("num_workers", 0) or 0),
                                seed=int(cfg.get("seed", 0)), subset=ds.get("subset"),
                                transforms=transforms)
    plain = copy.copy(loaders["id"]["train"].dataset)  # same cached images, test transform
    plain.transform = eval_transform(transforms)
    loaders["id"]["train_eval"] = DataLoader(plain, batch_size=test_bs, shuffle=False)
    return loaders
