"""Train and eval transforms from a config's ``preprocessor.name`` and its ``dataset`` keys.

Both engines build their inputs from the same keys: ``dataset.pre_size``, ``image_size``,
``interpolation`` (``nearest`` | ``bilinear``) and ``normalization_type``. Every transform is

    RGB -> Resize(pre_size, smaller edge) -> CenterCrop(image_size)   deterministic: ``prepare``
        -> [train only: the preprocessor's random part]               ``augment``
        -> uint8 / 255 -> (x - mean) / std                            ``normalise``

so the standalone engine caches ``prepare``'s uint8 output once and augments the cache, a whole batch
at a time (``augment_batch``: the same draws and pixels as ``augment`` image by image). Names:

* ``base`` — OpenOOD v1.5's ``BasePreprocessor`` (train) and ``TestStandardPreProcessor`` (eval)
  for 32x32-style data: random horizontal flip (p = 0.5), then a random ``image_size`` crop of the
  image zero-padded by 4 px. Random draws in torchvision's order: ``rand(1) < 0.5`` for the flip,
  then ``randint(0, H + 8 - image_size + 1)`` for the row and the same for the column offset, so the
  same seed gives OpenOOD's output exactly. (OpenOOD's branches for dataset names containing
  ``imagenet``, ``aircraft`` or ``cub`` — RandomResizedCrop, ColorJitter — are not reproduced.)
* ``shift`` — for digits, which must not be mirrored: a random shift of up to +-2 px (zero-pad by
  2, random crop back; row and column offsets drawn as one ``randint(0, 5, (2,))``), no flip.

``mean``/``std`` are OpenOOD's ``normalization_dict`` (``openood/preprocessors/transform.py`` at
3c35632); a name not in it gives ``mean = std = 0.5``, as OpenOOD does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..config import ConfigError

PREPROCESSORS = ("base", "shift")  # the names this module builds (both engines)
DEFAULT_PREPROCESSOR = "base"      # when a config has no preprocessor section (OpenOOD's usual choice)
BASE_PAD, SHIFT_PAD = 4, 2

# OpenOOD v1.5 normalization_dict: name -> (mean, std) per RGB channel.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet200": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "covid": ((0.4907, 0.4907, 0.4907), (0.2697, 0.2697, 0.2697)),
    "aircraft": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cub": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cars": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
DEFAULT_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}
_OPENOOD_OTHER_BRANCHES = ("imagenet", "aircraft", "cub")  # BasePreprocessor's name-based branches


def normalization(normalization_type: Optional[str]) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) of ``normalization_type``; unknown names (our own data) get 0.5 / 0.5."""
    return NORMALIZATION.get(normalization_type, DEFAULT_NORMALIZATION)


def preprocessor_name(cfg: Mapping[str, Any], valid=PREPROCESSORS, engine: str = "standalone") -> str:
    """``preprocessor.name`` of a merged config (``base`` when absent); ConfigError if not in ``valid``."""
    name = (cfg.get("preprocessor") or {}).get("name") or DEFAULT_PREPROCESSOR
    if name not in valid:
        raise ConfigError(f"unknown preprocessor.name {name!r}; valid choices ({engine} engine): "
                          f"{', '.join(valid)}")
    return name


def _positive_int(dataset: Mapping[str, Any], key: str) -> int:
    value = dataset.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"dataset.{key} must be a positive integer (pixels), got {value!r}")
    return value


@dataclass(frozen=True)
class Transforms:
    """The transforms of one config; ``name`` is ``base`` or ``shift``."""

    name: str
    pre_size: int
    image_size: int
    interpolation: InterpolationMode
    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    # ---------------------------------------------------------------- pieces
    def prepare(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> uint8 (3, image_size, image_size): RGB, resize (smaller edge), centre crop."""
        image = TF.center_crop(TF.resize(image.convert("RGB"), self.pre_size, self.interpolation),
                               self.image_size)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()

    def draws(self, h: int, w: int, generator: Optional[torch.Generator] = None) -> Tuple[bool, int, int]:
        """One image's random draws ``(flip, top, left)`` in the order of the module docstring."""
        if self.name == "base":
            flip = bool(torch.rand(1, generator=generator) < 0.5)
            top = int(torch.randint(0, h + 2 * BASE_PAD - self.image_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, w + 2 * BASE_PAD - self.image_size + 1, (1,), generator=generator))
            return flip, top, left
        top, left = torch.randint(0, 2 * SHIFT_PAD + 1, (2,), generator=generator).tolist()
        return False, top, left

    def _geometry(self, h: int, w: int) -> Tuple[int, int, int]:
        """(zero padding, output height, output width) of the random crop."""
        if self.name == "base":
            return BASE_PAD, self.image_size, self.image_size
        return SHIFT_PAD, h, w

    def augment(self, img: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The random part on a prepared uint8 image; draws from ``generator`` (global RNG if None)."""
        h, w = img.shape[-2:]
        flip, top, left = self.draws(h, w, generator)
        pad, out_h, out_w = self._geometry(h, w)
        if flip:
            img = TF.hflip(img)
        return TF.crop(TF.pad(img, [pad]), top, left, out_h, out_w)

    def augment_batch(self, imgs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """:meth:`augment` of every image of a uint8 batch ``(N, C, H, W)``, image ``i`` drawing from
        ``generators[i]``, as one gather: output ``i`` is ``padded_i[:, top_i + r, c_i(left_i + s)]`` with
        ``c(j) = W + 2 pad - 1 - j`` when flipped (flip-then-pad equals pad-then-flip: the padding is
        symmetric). Equal to :meth:`augment` item by item, bit for bit."""
        n, _, h, w = imgs.shape
        pad, out_h, out_w = self._geometry(h, w)
        flip, top, left = torch.tensor([self.draws(h, w, g) for g in generators],
                                       dtype=torch.long).reshape(n, 3).unbind(1)
        rows = top[:, None] + torch.arange(out_h)
        cols = left[:, None] + torch.arange(out_w)
        cols = torch.where(flip[:, None].bool(), w + 2 * pad - 1 - cols, cols)
        padded = torch.nn.functional.pad(imgs, (pad, pad, pad, pad)).flatten(2)     # (N, C, Hp * Wp)
        flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).flatten(1)     # (N, h * w)
        out = torch.gather(padded, 2, flat[:, None, :].expand(-1, imgs.shape[1], -1))
        return out.reshape(n, imgs.shape[1], out_h, out_w)

    def normalise(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 in [0, 1] (as ToTensor) -> (x - mean) / std; one image or a batch."""
        return TF.normalize(img.to(torch.float32).div(255), self.mean, self.std)

    # ---------------------------------------------------------------- whole transforms
    def train(self, img: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Prepared uint8 image -> augmented, normalised float tensor."""
        return self.normalise(self.augment(img, generator))

    def eval(self, img: torch.Tensor) -> torch.Tensor:
        """Prepared uint8 image -> normalised float tensor (no randomness)."""
        return self.normalise(img)


def build_transforms(cfg: Mapping[str, Any], name: Optional[str] = None) -> Transforms:
    """:class:`Transforms` from a merged config (a plain dict or an OpenOOD ``Config``).

    ``name`` defaults to :func:`preprocessor_name` (``base`` | ``shift``). ``dataset.image_size``
    and ``pre_size`` are required; ``interpolation`` defaults to ``bilinear``.
    """
    name = name or preprocessor_name(cfg)
    if name not in PREPROCESSORS:
        raise ConfigError(f"unknown preprocessor.name {name!r}; valid choices: {', '.join(PREPROCESSORS)}")
    dataset = cfg.get("dataset") or {}
    interpolation = dataset.get("interpolation") or "bilinear"
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown dataset.interpolation {interpolation!r}; valid choices: "
                          f"{', '.join(INTERPOLATIONS)}")
    if name == "base" and any(key in str(dataset.get("name", "")) for key in _OPENOOD_OTHER_BRANCHES):
        raise ConfigError(f"preprocessor 'base' for dataset {dataset.get('name')!r}: OpenOOD trains "
                          f"{'/'.join(_OPENOOD_OTHER_BRANCHES)} data with other augmentations "
                          "(RandomResizedCrop, ColorJitter) that the standalone engine does not have; "
                          "use --engine openood or preprocessor.name shift")
    mean, std = normalization(dataset.get("normalization_type"))
    return Transforms(name, _positive_int(dataset, "pre_size"), _positive_int(dataset, "image_size"),
                      INTERPOLATIONS[interpolation], tuple(mean), tuple(std))


class TrainTransform:
    """Callable for a cached dataset: ``(prepared uint8, generator=None) -> train tensor``."""

    takes_generator = True

    def __init__(self, transforms: Transforms):
        self.transforms = transforms

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return self.transforms.prepare(image)

    def __call__(self, img: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.transforms.train(img, generator)

    def batch(self, imgs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """``__call__`` of every image of a uint8 batch (image ``i`` draws from ``generators[i]``)."""
        return self.transforms.normalise(self.transforms.augment_batch(imgs, generators))

    def __repr__(self) -> str:
        return f"TrainTransform({self.transforms})"


class EvalTransform:
    """Callable for a cached dataset: ``prepared uint8 -> eval tensor``."""

    def __init__(self, transforms: Transforms):
        self.transforms = transforms

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return self.transforms.prepare(image)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.transforms.eval(img)

    def batch(self, imgs: torch.Tensor, generators=None) -> torch.Tensor:
        """``__call__`` of every image of a uint8 batch."""
        return self.transforms.eval(imgs)

    def __repr__(self) -> str:
        return f"EvalTransform({self.transforms})"


class ShiftPreprocessor:
    """OpenOOD preprocessor ``shift`` (train split): ``__call__(PIL image)`` like OpenOOD's
    ``BasePreprocessor``, random draws from the global torch RNG (as torchvision's transforms)."""

    def __init__(self, config):
        self.transforms = build_transforms(config, "shift")

    def setup(self, **kwargs) -> None:  # OpenOOD's ImglistDataset calls it before every item
        pass

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transforms.train(self.transforms.prepare(image))
