"""A tiny image-list benchmark in OpenOOD v1.5's layout, and its dataset configs written from the
README's template (configs/datasets/template/), for the "use your own data" tests.

    <root>/data/images_classic/tinybench/<split>/<class>/<i>.png
    <root>/data/benchmark_imglist/tinybench/{train,val,test}_tinybench.txt   "tinybench/train/3/0.png 3"
    <root>/data/benchmark_imglist/tinybench/{val_oodval,test_near1,test_far1,test_far2}.txt   label -1
    <root>/tinybench.yml, <root>/tinybench_ood.yml
"""
import os

import numpy as np
from PIL import Image

from openood_moon.config import CONFIGS_ROOT

NAME = "tinybench"
K = 10
ID_SPLITS = {"train": 4, "val": 1, "test": 2}            # images per class
OOD_SETS = {"val_oodval": 4, "test_near1": 6, "test_far1": 6, "test_far2": 6}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO, "main.py")
EVAL_OOD = os.path.join(REPO, "scripts", "eval_ood.py")


def _image(rng, colour):
    """32x32 RGB: a class colour plus noise (so classes are learnable)."""
    noise = rng.integers(-40, 40, size=(32, 32, 3))
    return np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)


def make_benchmark(root):
    """Write the benchmark under ``<root>/data`` and the two configs into ``root``; return the list dir."""
    rng = np.random.default_rng(0)
    data = os.path.join(root, "data")
    lists = os.path.join(data, "benchmark_imglist", NAME)
    os.makedirs(lists)
    colours = [((37 * c) % 256, (91 * c) % 256, (153 * c) % 256) for c in range(K)]
    for split, per_class in ID_SPLITS.items():
        lines = []
        for i in range(per_class):
            for c in range(K):
                rel = f"{NAME}/{split}/{c}/{i}.png"
                path = os.path.join(data, "images_classic", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(_image(rng, colours[c])).save(path)
                lines.append(f"{rel} {c}\n")
        with open(os.path.join(lists, f"{split}_{NAME}.txt"), "w") as f:
            f.writelines(lines)
    for list_name, count in OOD_SETS.items():
        lines = []
        for i in range(count):
            rel = f"{NAME}/ood/{list_name}/{i}.png"
            path = os.path.join(data, "images_classic", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)).save(path)
            lines.append(f"{rel} -1\n")
        with open(os.path.join(lists, f"{list_name}.txt"), "w") as f:
            f.writelines(lines)
    for name in ("mybench.yml", "mybench_ood.yml"):
        with open(os.path.join(CONFIGS_ROOT, "datasets", "template", name)) as f:
            text = f.read().replace("mybench", NAME)
        with open(os.path.join(root, name.replace("mybench", NAME)), "w") as f:
            f.write(text)
    return lists


TINY_JOB = ["configs/pipelines/train/moon.yml", "--engine", "standalone", "--optimizer.num_epochs", "2",
            "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1", "--moon.snapshots_per_epoch", "2",
            "--sparse.updates_per_epoch", "1", "--evaluation.postprocessors", "[msp, ebo, moon]"]
RUN_DIR = os.path.join("results", f"{NAME}_small_cnn_rigl_d0.1_e2_moon")
