"""Transforms from preprocessor.name + dataset keys: base against torchvision's own transforms composed
as OpenOOD v1.5's BasePreprocessor / TestStandardPreProcessor (second implementation), shift as a
translation of at most 2 px, and the config errors."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from openood_moon.config import ConfigError
from openood_moon.data.transforms import build_transforms, preprocessor_name

CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # OpenOOD's normalization_dict['cifar10']


def _cfg(name="base", **dataset):
    ds = {"name": "toy", "pre_size": 32, "image_size": 28, "interpolation": "bilinear",
          "normalization_type": "cifar10", **dataset}
    return {"preprocessor": {"name": name}, "dataset": ds}


def _image(h=30, w=37, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _openood_like(pre, size, interpolation, mean, std, train):
    """OpenOOD's base transforms (non-imagenet branch), composed from torchvision."""
    head = [T.Resize(pre, interpolation=interpolation), T.CenterCrop(size)]
    aug = [T.RandomHorizontalFlip(), T.RandomCrop(size, padding=4)] if train else []
    return T.Compose([*head, *aug, T.ToTensor(), T.Normalize(mean, std)])


@pytest.mark.parametrize("interp,mode", [("bilinear", T.InterpolationMode.BILINEAR),
                                         ("nearest", T.InterpolationMode.NEAREST)])
def test_base_equals_torchvision_composition_for_the_same_seed(interp, mode):
    cfg = _cfg(interpolation=interp)
    ours = build_transforms(cfg)
    theirs = _openood_like(32, 28, mode, *CIFAR, train=True)
    img = _image()
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        expected = theirs(img)
        got = ours.train(ours.prepare(img), torch.Generator().manual_seed(seed))
        assert got.shape == (3, 28, 28) and torch.equal(got, expected), seed
        flips.add(bool(torch.rand(1, generator=torch.Generator().manual_seed(seed)) < 0.5))
    assert flips == {True, False}  # both branches of the flip were compared
    assert torch.equal(ours.eval(ours.prepare(img)), _openood_like(32, 28, mode, *CIFAR, train=False)(img))


def test_global_rng_and_generator_give_the_same_augmentation():
    """The OpenOOD engine draws from the global RNG, the standalone engine from a per-item generator."""
    for name in ("base", "shift"):
        t = build_transforms(_cfg(name))
        x = t.prepare(_image())
        torch.manual_seed(7)
        assert torch.equal(t.train(x), t.train(x, torch.Generator().manual_seed(7)))


def _translate(x, dy, dx):
    """x shifted by (dy, dx) pixels with zero fill: out[i, j] = x[i - dy, j - dx]."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_shift_is_a_translation_of_at_most_two_pixels_never_a_flip():
    t = build_transforms(_cfg("shift", pre_size=28, image_size=28, normalization_type="mnist6"))
    x = t.prepare(_image(28, 28)) // 2 + 1  # no zeros inside: a translation is unambiguous
    seen = set()
    for seed in range(300):
        y = t.augment(x, torch.Generator().manual_seed(seed))
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(y, _translate(x, dy, dx))]
        assert len(matches) == 1, seed
        seen.add(matches[0])
    assert len(seen) == 25  # every shift in [-2, 2]^2 occurs
    assert torch.equal(t.train(x, torch.Generator().manual_seed(3)),
                       (t.augment(x, torch.Generator().manual_seed(3)).float() / 255 - 0.5) / 0.5)


def test_normalisation_and_sizes_follow_the_dataset_keys():
    img = _image(40, 50)
    t = build_transforms(_cfg(pre_size=20, image_size=16, normalization_type="not_in_openood"))
    x = t.prepare(img)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    assert torch.allclose(t.eval(x), (x.float() / 255 - 0.5) / 0.5, atol=1e-6)  # unknown name: 0.5 / 0.5
    c = build_transforms(_cfg(pre_size=20, image_size=16))
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in CIFAR)
    assert torch.allclose(c.eval(x), (x.float() / 255 - mean) / std, atol=1e-6)


def test_preprocessor_name_default_and_errors():
    assert preprocessor_name({}) == "base" and build_transforms(_cfg(None)).name == "base"
    assert build_transforms(_cfg("shift")).name == "shift"
    with pytest.raises(ConfigError, match=r"unknown preprocessor.name 'nope'; valid choices .*: base, shift"):
        build_transforms(_cfg("nope"))
    with pytest.raises(ConfigError, match=r"dataset.interpolation 'bicubic'; valid choices: nearest, bilinear"):
        build_transforms(_cfg(interpolation="bicubic"))
    with pytest.raises(ConfigError, match=r"dataset.image_size must be a positive integer"):
        build_transforms(_cfg(image_size=None))
    with pytest.raises(ConfigError, match=r"dataset.pre_size must be a positive integer"):
        build_transforms(_cfg(pre_size="32"))
    with pytest.raises(ConfigError, match="imagenet"):  # OpenOOD trains these with other augmentations
        cfg = _cfg("base")
        cfg["dataset"]["name"] = "imagenet200"
        build_transforms(cfg)
