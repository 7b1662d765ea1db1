"""Build an embedded benchmark offline, once, into OpenOOD's image-list layout with a checksummed manifest.

An :class:`EmbeddedBenchmark` says what its sets are and how to make them in memory; this module
writes them under ``data_root`` and checks them::

    images_classic/<name>/<set>/<idx:05d>.png
    benchmark_imglist/<name>/<list file>     one "images_classic/<name>/<set>/<idx>.png <label>" per line
    benchmark_imglist/<name>/manifest.json   written last: counts, sha256 of every list and of every
                                             set's raw pixels, sources' sha256, package versions

List lines are relative to ``data_root`` (so the lists' ``data_dir`` is ``data_root`` itself, ``''`` in
:meth:`EmbeddedBenchmark.info`). The benchmarks: ``mnist6`` (:mod:`.embedded`) and ``fmnist6``
(:mod:`.fashion`); :func:`embedded_benchmark` looks one up by name.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

# name -> "module:attribute" of its EmbeddedBenchmark (imported on first use)
EMBEDDED_BENCHMARKS = {"mnist6": "openood_moon.data.embedded:MNIST6",
                       "fmnist6": "openood_moon.data.fashion:FMNIST6"}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EmbeddedBenchmark:
    """One embedded benchmark: its sets (``set name -> (list file, label)``; label None = the class
    label), its near / far OOD sets, and how to make the sets in memory:
    ``make_sets(data_root) -> {set: (uint8 images (N, S, S), int64 labels (N,))}`` and
    ``sources(data_root) -> {source: sha256}`` (recorded in the manifest)."""

    name: str
    num_classes: int
    seed: int
    builder_version: int          # bump when the content changes
    sets: Dict[str, Tuple[str, Optional[int]]]
    near: Tuple[str, ...]
    far: Tuple[str, ...]
    make_sets: Callable[[Path], Dict[str, Tuple[np.ndarray, np.ndarray]]]
    sources: Callable[[Path], Dict[str, str]]
    packages: Tuple[str, ...]
    image_size: int = 28

    @property
    def image_dir(self) -> str:
        return f"images_classic/{self.name}"

    @property
    def list_dir(self) -> str:
        return f"benchmark_imglist/{self.name}"

    def entry(self, set_name: str) -> Dict[str, str]:
        return {"data_dir": "", "imglist_path": f"{self.list_dir}/{self.sets[set_name][0]}"}

    def info(self) -> Dict:
        """OpenOOD's ``DATA_INFO`` form; every path relative to data_root."""
        return {
            "num_classes": self.num_classes,
            "id": {split: self.entry(split) for split in ("train", "val", "test")},
            "csid": {"datasets": []},
            "ood": {"val": self.entry("oodval"),
                    "near": {"datasets": list(self.near), **{n: self.entry(n) for n in self.near}},
                    "far": {"datasets": list(self.far), **{n: self.entry(n) for n in self.far}}},
        }


def embedded_benchmark(name: str) -> EmbeddedBenchmark:
    """The embedded benchmark called ``name``; KeyError for any other name."""
    module, attribute = EMBEDDED_BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


# ---------------------------------------------------------------- checksums, manifest

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixel_sha256(images: np.ndarray) -> str:
    """sha256 of the raw uint8 pixels (N, S, S) in list order: stable across PNG encoders."""
    return sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())


def versions(packages: Sequence[str]) -> Dict[str, str]:
    out = {}
    for pkg in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def manifest_path(spec: EmbeddedBenchmark, data_root="data") -> Path:
    return Path(data_root) / spec.list_dir / MANIFEST


def list_lines(spec: EmbeddedBenchmark, set_name: str, labels: np.ndarray) -> str:
    return "".join(f"{spec.image_dir}/{set_name}/{i:05d}.png {int(lab)}\n" for i, lab in enumerate(labels))


def read_list(path: Path) -> list:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if line.strip()]


def verify(spec: EmbeddedBenchmark, data_root="data", pixels: bool = False) -> bool:
    """True if the manifest exists, matches this builder, the lists hash right and every image exists.

    ``pixels=True`` also decodes every PNG and checks the per-set pixel sha256 (about a second)."""
    root = Path(data_root)
    try:
        manifest = json.loads(manifest_path(spec, root).read_text())
        if manifest.get("builder_version") != spec.builder_version or manifest.get("name") != spec.name:
            return False
        for set_name, (list_file, _) in spec.sets.items():
            path = root / spec.list_dir / list_file
            if sha256(path.read_bytes()) != manifest["lists"][list_file]:
                return False
            entries = read_list(path)
            if len(entries) != manifest["sets"][set_name]["count"]:
                return False
            if not all((root / rel).is_file() for rel, _ in entries):
                return False
            if pixels:
                from PIL import Image

                imgs = np.stack([np.asarray(Image.open(root / rel).convert("L")) for rel, _ in entries])
                if pixel_sha256(imgs) != manifest["sets"][set_name]["pixel_sha256"]:
                    return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


# ---------------------------------------------------------------- build

@contextlib.contextmanager
def _lock(root: Path, name: str):
    """Serialise concurrent builders (e.g. several torchrun ranks) on one data_root (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(spec: EmbeddedBenchmark, stage: Path, sets: dict, sources: Dict[str, str]) -> dict:
    from PIL import Image

    lists, set_info = {}, {}
    (stage / spec.list_dir).mkdir(parents=True)
    for set_name, (images, labels) in sets.items():
        img_dir = stage / spec.image_dir / set_name
        img_dir.mkdir(parents=True)
        for i, img in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            (img_dir / f"{i:05d}.png").write_bytes(buf.getvalue())
        list_file = spec.sets[set_name][0]
        text = list_lines(spec, set_name, labels)
        (stage / spec.list_dir / list_file).write_text(text)
        lists[list_file] = sha256(text.encode())
        set_info[set_name] = {"count": len(images), "list": list_file, "pixel_sha256": pixel_sha256(images)}
    return {"name": spec.name, "builder_version": spec.builder_version, "seed": spec.seed,
            "num_classes": spec.num_classes, "image_size": spec.image_size, "sets": set_info,
            "lists": lists, "sources": sources, "versions": versions(spec.packages)}


def build(spec: EmbeddedBenchmark, data_root="data", force: bool = False) -> Path:
    """Build ``spec`` under ``data_root`` (once) and return ``data_root`` as a Path.

    Idempotent: does nothing when the manifest verifies (:func:`verify`) unless ``force``. The images
    and lists are staged in a temporary folder, moved into place, and the manifest is written last
    (atomically), so an interrupted build is rebuilt on the next call."""
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root, spec.name):
        if not force and verify(spec, root):
            return root
        manifest_path(spec, root).unlink(missing_ok=True)
        stage = root / f".{spec.name}-build-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        try:
            sets = spec.make_sets(root)
            manifest = _write(spec, stage, {name: sets[name] for name in spec.sets}, spec.sources(root))
            for sub in (spec.image_dir, spec.list_dir):
                shutil.rmtree(root / sub, ignore_errors=True)
                (root / sub).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / sub, root / sub)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        tmp = manifest_path(spec, root).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, manifest_path(spec, root))
    return root


def save_montage(spec: EmbeddedBenchmark, data_root, out_path, per_set: int = 16) -> Path:
    """One row of ``per_set`` images per set (order of ``spec.sets``), 2x upscaled, as a PNG."""
    from PIL import Image

    root, size, gap = Path(data_root), spec.image_size * 2, 2
    sheet = Image.new("L", (per_set * (size + gap), len(spec.sets) * (size + gap)), 128)
    for r, (set_name, (list_file, _)) in enumerate(spec.sets.items()):
        for c, (rel, _) in enumerate(read_list(root / spec.list_dir / list_file)[:per_set]):
            img = Image.open(root / rel).convert("L").resize((size, size), Image.NEAREST)
            sheet.paste(img, (c * (size + gap), r * (size + gap)))
    sheet.save(out_path)
    return Path(out_path)


def main(spec: EmbeddedBenchmark, argv=None) -> int:
    """``python -m openood_moon.data.<module> [--data-root DIR] [--force] [--verify] [--montage PNG]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=f"Build the embedded offline OOD benchmark '{spec.name}'.")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--force", action="store_true", help="rebuild even if the manifest verifies")
    parser.add_argument("--verify", action="store_true", help="also check every image's pixels")
    parser.add_argument("--montage", metavar="PNG", help="save a montage of each set to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = build(spec, args.data_root, force=args.force)
    manifest = json.loads(manifest_path(spec, root).read_text())
    for set_name in spec.sets:
        entry = manifest["sets"][set_name]
        print(f"{set_name:10s} {entry['count']:5d}  {spec.list_dir}/{entry['list']}")
    print(f"manifest: {manifest_path(spec, root)}  ({time.perf_counter() - start:.1f} s)")
    if args.verify and not verify(spec, root, pixels=True):
        print("pixel verification FAILED", file=sys.stderr)
        return 1
    if args.montage:
        print(f"montage: {save_montage(spec, root, args.montage)}")
    return 0
