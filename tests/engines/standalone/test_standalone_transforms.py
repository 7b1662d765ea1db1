"""The standalone engine honours preprocessor.name and the dataset's pre_size / image_size /
interpolation / normalization_type for an image-list benchmark of the user's (not the embedded one),
and refuses an unknown preprocessor name like any bad input (exit 2 with the choices)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from openood_moon.engines.standalone.data import build_loaders

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # OpenOOD's normalization_dict['cifar10']
H, W = 24, 32


def _pixels(offset):
    """A 24x32 RGB image whose every pixel says where it is: R = 7r + 3c + offset, G = 10r, B = 8c (mod 256)."""
    r, c = np.mgrid[0:H, 0:W]
    return np.stack([(7 * r + 3 * c + offset) % 256, (10 * r) % 256, (8 * c) % 256], -1).astype(np.uint8)


@pytest.fixture
def tiny_benchmark(tmp_path):
    """OpenOOD layout: <root>/images_classic/tiny/*.png, <root>/benchmark_imglist/tiny/*.txt."""
    images, lists = tmp_path / "images_classic" / "tiny", tmp_path / "benchmark_imglist" / "tiny"
    images.mkdir(parents=True)
    lists.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(_pixels(40 * i)).save(images / f"{i}.png")
    for name, labels in {"train": [0, 1, 0, 1], "val": [0, 1], "test": [1, 0], "oodval": [-1], "near": [-1],
                         "far": [-1, -1]}.items():
        (lists / f"{name}.txt").write_text("".join(f"tiny/{i}.png {lab}\n" for i, lab in enumerate(labels)))

    def entry(name, **extra):
        return {"data_dir": str(tmp_path / "images_classic"), "imglist_pth": str(lists / f"{name}.txt"), **extra}

    dataset = {"name": "tiny", "num_classes": 2, "pre_size": 12, "image_size": 8, "interpolation": "nearest",
               "normalization_type": "cifar10", "subset": None,
               **{s: entry(s, batch_size=4) for s in ("train", "val", "test")}}
    ood = {"val": entry("oodval"), "nearood": {"datasets": ["near"], "near": entry("near")},
           "farood": {"datasets": ["far"], "far": entry("far")}}
    return {"dataset": dataset, "ood_dataset": ood, "preprocessor": {"name": "base"}, "seed": 0,
            "num_workers": 0}


def _expected(offset):
    """By hand: nearest resize 24x32 -> 12x16 samples source pixel (2i + 1, 2j + 1) (pixel centres);
    centre crop 8 of 12x16 starts at row 2, column 4; then (x / 255 - mean) / std per channel."""
    src = _pixels(offset)
    rows, cols = 2 * (np.arange(8) + 2) + 1, 2 * (np.arange(8) + 4) + 1
    x = src[rows][:, cols].astype(np.float64).transpose(2, 0, 1) / 255
    mean, std = (np.array(v).reshape(3, 1, 1) for v in CIFAR10)
    return torch.from_numpy((x - mean) / std).float()


def test_dataset_keys_shape_every_split(tiny_benchmark):
    loaders = build_loaders(tiny_benchmark)
    test = next(iter(loaders["id"]["test"]))
    assert test["data"].shape == (2, 3, 8, 8)
    for k in range(2):
        assert torch.allclose(test["data"][k], _expected(40 * k), atol=1e-6)
    far = next(iter(loaders["ood"]["far"]["far"]))["data"]
    assert torch.allclose(far[1], _expected(40), atol=1e-6)
    fit = next(iter(loaders["id"]["train_eval"]))["data"]  # training images, eval transform
    assert torch.allclose(fit[3], _expected(120), atol=1e-6)
    train = next(iter(loaders["id"]["train"]))["data"]
    assert train.shape == (4, 3, 8, 8)


def test_base_trains_with_flips_and_shift_without(tiny_benchmark):
    """Over a few epochs, base mirrors some training images; shift never does."""
    def mirrored_items(name):
        cfg = {**tiny_benchmark, "preprocessor": {"name": name}}
        loader = build_loaders(cfg)["id"]["train"]
        count = 0
        for epoch in range(6):
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                # R increases by 3 per column: mirrored rows decrease left to right (away from the padding)
                red = batch["data"][:, 0, 4, 3:6]
                count += int((red[:, 1] < red[:, 0]).logical_and(red[:, 2] < red[:, 1]).sum())
        return count

    assert mirrored_items("base") > 0
    assert mirrored_items("shift") == 0


def test_unknown_preprocessor_exits_2_with_the_choices(tmp_path, mnist6_root):
    out = subprocess.run([sys.executable, "main.py", "--engine", "standalone", "--preprocessor.name", "nope",
                          "--dataset.data_root", str(mnist6_root), "--output_dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "unknown preprocessor.name 'nope'; valid choices (standalone engine): base, shift" in out.stderr
    assert "Traceback" not in out.stderr
