"""OpenOOD image lists as cached PyTorch datasets, and the loaders of a DATA_INFO-style benchmark.

An image list holds one ``relative/path.png <label>`` per line (split on the first space; OOD sets
use label -1), paths joined to ``data_dir``; images are read with PIL and converted to RGB, as in
OpenOOD's ``ImglistDataset``. All images are decoded once into a uint8 cache, so epochs are cheap;
a transform with a ``prepare`` method (:mod:`openood_moon.data.transforms`: RGB, resize to
``pre_size``, centre crop to ``image_size``) is applied while caching, the rest a batch at a time
(``ImglistDataset.__getitems__``: one gather and one normalisation per batch, equal bit for bit to
item-by-item transforms).

Reproducible data order: the train loader's :class:`EpochSampler` and the loader share one
``torch.Generator`` (``loader.generator``). The sampler draws the permutation *and* one
augmentation seed per item from it, so order and random augmentation depend only on that generator (not
on the global torch RNG nor on ``num_workers``). A trainer calls ``loader.sampler.set_epoch(epoch)``
(equivalently ``loader.generator.manual_seed(epoch_seed(seed, epoch))``) at the start of each
epoch; then epoch ``e`` of seed ``s`` always sees the same batches, also after a resume.
"""

from __future__ import annotations

import ast
import os
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..config import ConfigError
from .transforms import EvalTransform, TrainTransform, Transforms, build_transforms


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the train generator at the start of ``epoch`` (0-based)."""
    return seed * 1000 + epoch


def default_transforms() -> Transforms:
    """The embedded benchmark's transforms (configs/datasets/mnist6/mnist6.yml): ``shift``, 28 px,
    mean = std = 0.5."""
    return build_transforms({"preprocessor": {"name": "shift"},
                             "dataset": {"pre_size": 28, "image_size": 28, "interpolation": "bilinear",
                                         "normalization_type": "mnist6"}})


def eval_transform(transforms: Optional[Transforms] = None) -> EvalTransform:
    """Eval transform of ``transforms`` (default: :func:`default_transforms`)."""
    return EvalTransform(transforms or default_transforms())


def train_transform(transforms: Optional[Transforms] = None) -> TrainTransform:
    """Train transform of ``transforms`` (default: :func:`default_transforms`)."""
    return TrainTransform(transforms or default_transforms())


def _parse_label(extra: str) -> int:
    """An integer label (``3``, ``-1``); OpenOOD's dict-valued extras (MOS groups) are not supported."""
    try:
        return int(extra)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(extra)
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"label {extra!r} is not an integer")


def imglist_lines(imglist_path, max_items: Optional[int] = None) -> list[tuple[int, str, int]]:
    """[(line number, relative image path, label)] of an OpenOOD image list (its first ``max_items``
    non-empty lines). Each line is ``<path> <label>``, split on the first space (OpenOOD's
    ``ImglistDataset``). A missing list or a line without an integer label is a
    :class:`~openood_moon.config.ConfigError` naming the file (and ``file:line``)."""
    entries = []
    try:
        fh = open(imglist_path)
    except FileNotFoundError:
        raise ConfigError(f"image list not found: {os.path.abspath(imglist_path)} (relative paths are read "
                          f"from the working directory, {os.getcwd()})") from None
    except OSError as err:
        raise ConfigError(f"image list {imglist_path} cannot be read: {err.strerror or err}") from None
    with fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if max_items is not None and len(entries) >= max_items:
                break
            name, _, extra = line.partition(" ")
            if not extra.strip():
                raise ConfigError(f"{imglist_path}:{number}: expected '<image path> <label>', got {line!r}")
            try:
                label = _parse_label(extra.strip())
            except ValueError as err:
                raise ConfigError(f"{imglist_path}:{number}: {err} (line {line!r})") from None
            entries.append((number, name, label))
    return entries


def read_imglist(imglist_path, max_items: Optional[int] = None) -> list[tuple[str, int]]:
    """[(relative image path, label)] of an OpenOOD image list (first ``max_items`` lines); see
    :func:`imglist_lines`."""
    return [(name, label) for _, name, label in imglist_lines(imglist_path, max_items)]


class ImglistDataset(Dataset):
    """Items ``{'data': tensor, 'label': int, 'image_name': str, 'index': int}`` of an OpenOOD list.

    ``transform`` maps the cached uint8 (3, H, W) tensor to the model input (None: return it as
    is); its ``prepare(PIL image)``, when it has one, makes the cached tensor. An index may also be ``(index, aug_seed)`` (see :class:`EpochSampler`): a transform with
    ``takes_generator`` then draws its randomness from a generator seeded with ``aug_seed``.
    """

    def __init__(self, imglist_path, data_dir, transform: Optional[Callable] = None,
                 max_items: Optional[int] = None):
        self.imglist_path = str(imglist_path)
        self.data_dir = str(data_dir)
        self.transform = transform
        lines = imglist_lines(imglist_path, max_items)
        self.entries = [(name, label) for _, name, label in lines]
        self.line_numbers = [number for number, _, _ in lines]
        self.labels = torch.tensor([label for _, label in self.entries], dtype=torch.long)
        images = [self._decode(name, number) for number, name, _ in lines]
        same_size = len({img.shape for img in images}) <= 1
        self.images = torch.stack(images) if images and same_size else images

    def _decode(self, name: str, number: int = 0) -> torch.Tensor:
        """The cached tensor of one line's image; a missing or unreadable image is a ConfigError
        naming ``list:line`` and the image file."""
        from .check import image_path

        path = image_path(self.data_dir, name, f"{self.imglist_path}:{number}")
        prepare = getattr(self.transform, "prepare", None)
        try:
            with Image.open(path) as img:
                if prepare is not None:
                    return prepare(img)
                rgb = np.array(img.convert("RGB"))
        except FileNotFoundError:
            raise ConfigError(f"{self.imglist_path}:{number}: image not found: {path}") from None
        except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated files
            raise ConfigError(f"{self.imglist_path}:{number}: image {path} cannot be read: {err}") from None
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index) -> dict:
        aug_seed = None
        if isinstance(index, (tuple, list)):
            index, aug_seed = index
        img = self.images[index]
        if self.transform is None:
            data = img
        elif aug_seed is not None and getattr(self.transform, "takes_generator", False):
            data = self.transform(img, generator=torch.Generator().manual_seed(int(aug_seed)))
        else:
            data = self.transform(img)
        return {"data": data, "label": int(self.labels[index]),
                "image_name": self.entries[index][0], "index": int(index)}

    def __getitems__(self, indices) -> object:
        """A whole batch as one dict (``data`` stacked, ``label`` and ``index`` tensors, ``image_name`` a
        list), transformed by the transform's ``batch`` method: what ``default_collate`` of the items
        gives, at a fraction of the cost. Falls back to the list of items (collated by
        :func:`collate`) for images of different sizes or a transform without ``batch``."""
        pairs = [tuple(i) if isinstance(i, (tuple, list)) else (i, None) for i in indices]
        batched = getattr(self.transform, "batch", None)
        if not isinstance(self.images, torch.Tensor) or batched is None \
                or (getattr(self.transform, "takes_generator", False) and any(s is None for _, s in pairs)):
            return [self[i] for i in indices]
        index = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        generators = [torch.Generator().manual_seed(int(s)) for _, s in pairs] if pairs[0][1] is not None else None
        return {"data": batched(self.images[index], generators), "label": self.labels[index],
                "image_name": [self.entries[i][0] for i, _ in pairs], "index": index}


def collate(batch):
    """Collate for :class:`ImglistDataset` loaders: a batch ``__getitems__`` already built passes
    through; a list of items goes to ``default_collate``."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class EpochSampler(Sampler):
    """Shuffling sampler yielding ``(index, aug_seed)`` pairs (plain indices if ``aug_seeds=False``,
    for datasets such as ``TensorDataset``), all drawn from ``self.generator``.

    ``set_epoch(e)`` reseeds the generator with :func:`epoch_seed` ``(seed, e)``; construction does
    ``set_epoch(0)``. With ``num_replicas > 1`` each rank takes every ``num_replicas``-th item of the
    shared permutation (padded by wrap-around to equal length, as ``DistributedSampler``).
    """

    def __init__(self, num_items: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 aug_seeds: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.num_items, self.seed = num_items, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.aug_seeds = aug_seeds
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(epoch_seed(self.seed, epoch))

    def __len__(self) -> int:
        return -(-self.num_items // self.num_replicas)

    def __iter__(self) -> Iterator:
        order = torch.randperm(self.num_items, generator=self.generator)
        aug_seeds = torch.randint(0, 2**62, (self.num_items,), generator=self.generator)
        total = len(self) * self.num_replicas
        if total > self.num_items:
            pad = torch.arange(total - self.num_items) % self.num_items
            order = torch.cat([order, order[pad]])
        mine = order[self.rank::self.num_replicas]
        if not self.aug_seeds:
            return iter(mine.tolist())
        return iter(zip(mine.tolist(), aug_seeds[mine].tolist()))


def loader(dataset, batch_size, num_workers=0, sampler=None) -> DataLoader:
    """An unshuffled (or ``sampler``-ordered) DataLoader of an :class:`ImglistDataset`, batches built by
    its ``__getitems__`` (:func:`collate`)."""
    generator = sampler.generator if sampler is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, generator=generator, drop_last=False, collate_fn=collate)


def benchmark_loaders(info: dict, data_root, batch_size: int = 128, test_batch_size: int = 256,
                      num_workers: int = 0, seed: int = 0, subset: Optional[int] = None,
                      num_replicas: int = 1, rank: int = 0,
                      transforms: Optional[Transforms] = None, ood_val: bool = True,
                      ood_batch_size: Optional[int] = None) -> dict:
    """DataLoaders of a DATA_INFO-style benchmark (e.g. ``EMBEDDED_INFO``), paths under ``data_root``.

    Returns ``{'id': {'train', 'val', 'test'}, 'ood': {'val': loader, 'near': {name: loader},
    'far': {name: loader}}}``. Only ``id.train`` is augmented and shuffled (by an
    :class:`EpochSampler`, see the module docstring); ``subset`` keeps the first N items of every
    list; ``num_replicas``/``rank`` shard the train loader only. ``transforms``
    (:func:`~openood_moon.data.transforms.build_transforms` of a config) default to the embedded
    benchmark's (:func:`default_transforms`). ``ood_val=False`` (or an info without ``ood.val``)
    leaves ``ood.val`` None, unread; OOD sets are batched by ``ood_batch_size`` (default
    ``test_batch_size``).
    """
    transforms = transforms or default_transforms()

    def dataset(entry, transform):
        return ImglistDataset(os.path.join(str(data_root), entry["imglist_path"]),
                              os.path.join(str(data_root), entry["data_dir"]),
                              transform=transform, max_items=subset)

    def eval_loader(entry, size=test_batch_size):
        return loader(dataset(entry, eval_transform(transforms)), size, num_workers)

    train = dataset(info["id"]["train"], train_transform(transforms))
    sampler = EpochSampler(len(train), seed=seed, num_replicas=num_replicas, rank=rank)
    ood, ood_size = info["ood"], ood_batch_size or test_batch_size
    return {
        "id": {"train": loader(train, batch_size, num_workers, sampler),
               "val": eval_loader(info["id"]["val"]),
               "test": eval_loader(info["id"]["test"])},
        "ood": {"val": eval_loader(ood["val"], ood_size) if ood_val and ood.get("val") else None,
                **{level: {name: eval_loader(ood[level][name], ood_size) for name in ood[level]["datasets"]}
                   for level in ("near", "far")}},
    }


def info_from_configs(dataset, ood_dataset, ood_val: bool = True) -> dict:
    """DATA_INFO form (absolute paths) from OpenOOD ``dataset`` / ``ood_dataset`` config sections.

    Every split names ``imglist_pth`` and ``data_dir`` (relative paths are read from the working
    directory, as OpenOOD does). ``ood_dataset.val`` (OpenOOD's parameter search) is required when
    ``ood_val`` (the OpenOOD engine's Evaluator loads it), else optional and left out when absent.
    """
    if not ood_dataset:
        raise ConfigError(f"dataset {dataset.get('name')!r} needs an ood_dataset config (an OpenOOD *_ood.yml)")

    def entry(node, where):
        if not isinstance(node, dict) or not isinstance(node.get("imglist_pth"), str) \
                or not isinstance(node.get("data_dir"), str):
            raise ConfigError(f"{where} needs imglist_pth and data_dir (paths; data_dir is the folder the "
                              f"list's image paths are relative to), got {node!r}")
        return {"data_dir": os.path.abspath(node["data_dir"]),
                "imglist_path": os.path.abspath(node["imglist_pth"])}

    info = {"num_classes": int(dataset["num_classes"]), "csid": {"datasets": []},
            "id": {s: entry(dataset.get(s), f"dataset.{s}") for s in ("train", "val", "test")}, "ood": {}}
    if ood_val or ood_dataset.get("val") is not None:
        info["ood"]["val"] = entry(ood_dataset.get("val"), "ood_dataset.val" + (
            " (the OpenOOD engine's Evaluator loads it for its parameter search)" if ood_val else ""))
    for level, key in (("near", "nearood"), ("far", "farood")):
        group = ood_dataset.get(key)
        names = group.get("datasets") if isinstance(group, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"ood_dataset.{key}.datasets must be a list of OOD set names, each with its "
                              f"own ood_dataset.{key}.<name> entry, got {names!r}")
        info["ood"][level] = {"datasets": names,
                              **{n: entry(group.get(n), f"ood_dataset.{key}.{n}") for n in names}}
    if not info["ood"]["near"]["datasets"] + info["ood"]["far"]["datasets"]:
        raise ConfigError("ood_dataset names no OOD set: list at least one in ood_dataset.nearood.datasets "
                          "or ood_dataset.farood.datasets")
    return info


build_loaders = benchmark_loaders  # name used in the team notes
