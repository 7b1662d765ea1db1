"""Both engines see the same augmentation: our ``base`` equals OpenOOD's own BasePreprocessor /
TestStandardPreProcessor, and ``shift``, built by OpenOOD's get_dataloader after register(), equals
the standalone engine's item for the same image and seed. Unknown names exit 2 with the choices."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from openood_moon.data.imglist import ImglistDataset, train_transform
from openood_moon.data.transforms import NORMALIZATION, build_transforms

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _config(name, **dataset):
    from openood.utils import Config

    ds = {"name": "toy", "pre_size": 32, "image_size": 28, "interpolation": "bilinear",
          "normalization_type": "cifar10", **dataset}
    return Config({"dataset": ds, "preprocessor": {"name": name}})


def _image(h=30, w=37, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_normalization_is_openoods():
    from openood.preprocessors.transform import normalization_dict

    from openood_moon.engines.openood.datasets import registered_benchmarks

    own = {k: v for k, v in normalization_dict.items() if k not in registered_benchmarks()}  # not our test sets
    assert {k: [list(v[0]), list(v[1])] for k, v in NORMALIZATION.items()} == own


@pytest.mark.parametrize("dataset", [{}, {"interpolation": "nearest", "normalization_type": "cifar100"},
                                     {"pre_size": 28, "image_size": 28, "normalization_type": "mnist6"}])
def test_base_is_openoods_base_preprocessor(dataset):
    from openood.preprocessors import BasePreprocessor, TestStandardPreProcessor

    config = _config("base", **dataset)
    ours = build_transforms(config)
    img = _image()
    for seed in range(10):
        torch.manual_seed(seed)
        expected = BasePreprocessor(config)(img)
        assert torch.equal(ours.train(ours.prepare(img), torch.Generator().manual_seed(seed)), expected), seed
    assert torch.equal(ours.eval(ours.prepare(img)), TestStandardPreProcessor(config)(img))


@pytest.fixture
def tiny_list(tmp_path):
    for i in range(3):
        _image(28, 28, seed=i).save(tmp_path / f"{i}.png")
    (tmp_path / "train.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(3)))
    return tmp_path


@pytest.mark.parametrize("name", ["shift", "base"])
def test_openood_dataloader_item_equals_the_standalone_item(name, tiny_list):
    """OpenOOD's get_dataloader (its ImglistDataset, our registered preprocessor) vs the standalone
    dataset: same image, same seed (global RNG there, the item's generator here) -> same tensor."""
    import openood.datasets.utils as dataset_utils

    config = _config(name, pre_size=28, image_size=28, normalization_type="mnist6", num_classes=2,
                     num_workers=0, num_gpus=1, num_machines=1, split_names=["train"],
                     train={"dataset_class": "ImglistDataset", "data_dir": str(tiny_list),
                            "imglist_pth": str(tiny_list / "train.txt"), "batch_size": 2, "shuffle": True})
    openood_ds = dataset_utils.get_dataloader(config)["train"].dataset
    ours = ImglistDataset(tiny_list / "train.txt", tiny_list, transform=train_transform(build_transforms(config)))
    for index in range(3):
        for seed in (0, 1, 5):
            torch.manual_seed(seed)
            theirs = openood_ds[index]["data"]
            assert torch.equal(ours[(index, seed)]["data"], theirs), (index, seed)


def test_shift_resolves_for_train_only_and_missing_section_is_base():
    import openood.datasets.utils as dataset_utils
    from openood.preprocessors import BasePreprocessor, TestStandardPreProcessor

    from openood_moon.data.transforms import ShiftPreprocessor

    assert type(dataset_utils.get_preprocessor(_config("shift"), "train")) is ShiftPreprocessor
    assert type(dataset_utils.get_preprocessor(_config("shift"), "test")) is TestStandardPreProcessor
    assert type(dataset_utils.get_preprocessor(_config("base"), "train")) is BasePreprocessor
    config = _config("base")
    del config["preprocessor"]
    assert type(dataset_utils.get_preprocessor(config, "train")) is BasePreprocessor


def test_unknown_preprocessor_exits_2_with_the_choices(tmp_path, mnist6_data):
    out = subprocess.run([sys.executable, "main.py", "--engine", "openood", "--preprocessor.name", "nope",
                          "--dataset.data_root", str(mnist6_data), "--output_dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "unknown preprocessor.name 'nope'; valid choices (OpenOOD engine): " in out.stderr
    choices = out.stderr.split("valid choices (OpenOOD engine): ")[1].split("\n")[0].split(", ")
    assert {"base", "shift", "cutout", "randaugment"} <= set(choices)
    assert "Traceback" not in out.stderr
