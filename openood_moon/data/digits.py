"""A tiny unit-test benchmark: scikit-learn's 8x8 digits (1,797 images, values 0-16).

ID = digits 0-5 split per class (fixed ``split_seed``) into train / val / test; near-OOD = digits 6-9;
far-OOD = uniform noise; OOD val = uniform noise from another seed. Items are ``(x, y)`` tuples,
x a (1, 8, 8) float tensor normalised as ``(v / 16 - 0.5) / 0.5`` (range [-1, 1]), y the class
(-1 for OOD). The loaders mirror :func:`openood_moon.data.imglist.benchmark_loaders`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .imglist import EpochSampler

NUM_CLASSES = 6
MEAN, STD = 0.5, 0.5


def load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as float (N, 8, 8) in [0, 16] and int64 labels, read from the bundled
    ``digits.csv.gz`` (the file ``load_digits`` reads) without importing ``sklearn.datasets``."""
    sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    path = sklearn_dir / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        rows = np.loadtxt(path, delimiter=",")
        return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # pragma: no cover - other sklearn layouts

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


def _tensor(x16: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((x16 / 16.0 - MEAN) / STD).astype(np.float32)).unsqueeze(1)


def _dataset(x16: np.ndarray, y) -> TensorDataset:
    labels = torch.full((len(x16),), -1, dtype=torch.long) if y is None else torch.as_tensor(y)
    return TensorDataset(_tensor(x16), labels)


def digits_benchmark(split_seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.3,
                     n_noise: int = 300, n_noise_val: int = 100) -> dict:
    """``{'id': {'train','val','test'}, 'ood': {'val': ds, 'near': {'digits6789': ds},
    'far': {'noise': ds}}}`` of TensorDatasets; stratified seeded split of the ID classes."""
    x, y = load_digits_raw()
    rng = np.random.default_rng([split_seed, 8])
    parts = {"train": [], "val": [], "test": []}
    for c in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = round(test_fraction * len(members)), round(val_fraction * len(members))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    ident = {}
    for split, chunks in parts.items():
        idx = rng.permutation(np.concatenate(chunks))
        ident[split] = _dataset(x[idx], y[idx])
    near = np.flatnonzero(y >= NUM_CLASSES)
    return {
        "id": ident,
        "ood": {
            "val": _dataset(rng.uniform(0, 16, (n_noise_val, 8, 8)), None),
            "near": {"digits6789": _dataset(x[near], None)},
            "far": {"noise": _dataset(rng.uniform(0, 16, (n_noise, 8, 8)), None)},
        },
    }


def digits_loaders(batch_size: int = 64, test_batch_size: int = 256, seed: int = 0,
                   split_seed: int = 0, subset: Optional[int] = None) -> dict:
    """Loaders shaped like ``benchmark_loaders``; ``id.train`` shuffles with an
    :class:`EpochSampler` (``loader.sampler.set_epoch(epoch)`` reseeds; order depends on ``seed``)."""
    bench = digits_benchmark(split_seed)

    def cut(ds: TensorDataset) -> TensorDataset:
        return ds if subset is None else TensorDataset(*(t[:subset] for t in ds.tensors))

    def eval_loader(ds):
        return DataLoader(cut(ds), batch_size=test_batch_size, shuffle=False)

    train = cut(bench["id"]["train"])
    sampler = EpochSampler(len(train), seed=seed, aug_seeds=False)
    ood = bench["ood"]
    return {
        "id": {"train": DataLoader(train, batch_size=batch_size, sampler=sampler,
                                   generator=sampler.generator),
               "val": eval_loader(bench["id"]["val"]),
               "test": eval_loader(bench["id"]["test"])},
        "ood": {"val": eval_loader(ood["val"]),
                "near": {k: eval_loader(v) for k, v in ood["near"].items()},
                "far": {k: eval_loader(v) for k, v in ood["far"].items()}},
    }
