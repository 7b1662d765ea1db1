"""Loaders for the standalone engine from a merged config: the embedded benchmark ``mnist6`` (built
on first use) or any OpenOOD-format image-list benchmark named by ``dataset`` / ``ood_dataset``."""
from __future__ import annotations

import os
from typing import Any, Dict

from torch.utils.data import DataLoader

from ...data.embedded import EMBEDDED_INFO, NAME as EMBEDDED_NAME, build_embedded
from ...data.imglist import ImglistDataset, benchmark_loaders, eval_transform, info_from_configs


def build_loaders(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``benchmark_loaders`` plus ``id.train_eval``: the training images with test transforms
    (postprocessors such as KNN, ViM and Mahalanobis are fit on it)."""
    ds = cfg["dataset"]
    if ds["name"] == EMBEDDED_NAME:
        data_root = ds.get("data_root", "./data")
        build_embedded(data_root)
        info = EMBEDDED_INFO
    else:
        data_root, info = "", info_from_configs(ds, cfg.get("ood_dataset"))
    train_bs = int(ds.get("train", {}).get("batch_size", 128))
    test_bs = int(ds.get("test", {}).get("batch_size", 256))
    subset = ds.get("subset")
    loaders = benchmark_loaders(info, data_root, batch_size=train_bs, test_batch_size=test_bs,
                                num_workers=int(cfg.get("num_workers", 0) or 0),
                                seed=int(cfg.get("seed", 0)), subset=subset)
    train = info["id"]["train"]
    plain = ImglistDataset(os.path.join(data_root, train["imglist_path"]),
                           os.path.join(data_root, train["data_dir"]), transform=eval_transform(),
                           max_items=subset)
    loaders["id"]["train_eval"] = DataLoader(plain, batch_size=test_bs, shuffle=False)
    return loaders
