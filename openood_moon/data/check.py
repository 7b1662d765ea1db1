"""Checks of an image-list benchmark before training, shared by both engines.

Every list exists and parses (``<image path> <label>`` per line), ID labels lie in ``[0, K)``, OOD
labels are ``-1`` (OpenOOD's lists mark every OOD image so), every image exists and opens, and
``dataset.data_root`` (when set) is the folder that holds the lists. Each problem is a
:class:`~openood_moon.config.ConfigError` naming the file and, for one line's problem, its number
(``benchmark_imglist/x/train_x.txt:12: label 10 outside [0, 10)``).
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, Optional, Tuple

from PIL import Image

from ..config import ConfigError
from .imglist import imglist_lines


def image_path(data_dir: str, name: str, where: str) -> str:
    """``data_dir`` joined with a list line's image path (OpenOOD's ``ImglistDataset`` refuses an
    absolute path with a data_dir)."""
    if name.startswith("/") and data_dir:
        raise ConfigError(f"{where}: absolute image path {name!r} with data_dir {data_dir!r}: OpenOOD joins "
                          "a line's path to data_dir, so make the path relative to data_dir or set data_dir ''")
    return os.path.join(data_dir, name)


def benchmark_entries(info: Dict) -> Iterator[Tuple[str, Dict, bool]]:
    """``(config key, {'data_dir', 'imglist_path'}, is_id)`` for every list of a DATA_INFO-form dict."""
    for split in ("train", "val", "test"):
        yield f"dataset.{split}", info["id"][split], True
    if info["ood"].get("val"):
        yield "ood_dataset.val", info["ood"]["val"], False
    for level, key in (("near", "nearood"), ("far", "farood")):
        for name in info["ood"][level]["datasets"]:
            yield f"ood_dataset.{key}.{name}", info["ood"][level][name], False


def check_list(imglist_path: str, data_dir: str, where: str, num_classes: Optional[int] = None,
               max_items: Optional[int] = None, open_images: bool = True) -> int:
    """Check one list (``num_classes`` None: an OOD list, labels -1); returns its number of items.

    ``open_images`` also opens every image and checks its data (PIL ``verify``); otherwise only its
    existence is checked (decoding it later reports the same ``file:line``)."""
    if data_dir and not os.path.isdir(data_dir):
        raise ConfigError(f"{where}.data_dir {data_dir} is not a folder (the image paths in {imglist_path} "
                          f"are relative to it; relative paths are read from the working directory, {os.getcwd()})")
    lines = imglist_lines(imglist_path, max_items)
    if not lines:
        raise ConfigError(f"{where}: image list {imglist_path} is empty")
    for number, name, label in lines:
        at = f"{imglist_path}:{number}"
        if num_classes is None and label != -1:
            raise ConfigError(f"{at}: label {label} in an OOD list ({where}); OOD images are labelled -1, "
                              "as in OpenOOD's lists")
        if num_classes is not None and not 0 <= label < num_classes:
            raise ConfigError(f"{at}: label {label} outside [0, {num_classes}) (dataset.num_classes is "
                              f"{num_classes}; ID labels are 0 .. {num_classes - 1})")
        path = image_path(data_dir, name, at)
        if not os.path.isfile(path):
            raise ConfigError(f"{at}: image not found: {path} (the line's path {name!r} under {where}.data_dir "
                              f"{data_dir!r})")
        if open_images:
            try:
                with Image.open(path) as img:
                    img.verify()
            except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
                raise ConfigError(f"{at}: image {path} cannot be read: {err}") from None
    return len(lines)


def check_data_root(data_root: Optional[str], info: Dict) -> None:
    """``dataset.data_root``, when set, must be the folder holding every list (OpenOOD's layout
    ``<data_root>/benchmark_imglist/...``; the OpenOOD engine registers the benchmark from it)."""
    if not data_root:
        return
    root = os.path.abspath(data_root)
    for where, entry, _ in benchmark_entries(info):
        path = entry["imglist_path"]
        if os.path.commonpath([root, path]) != root:
            raise ConfigError(f"dataset.data_root {data_root!r} ({root}) does not hold {where}.imglist_pth "
                              f"{path}: data_root is the folder holding benchmark_imglist/ (OpenOOD's layout); "
                              "fix one of them, or set data_root: null")


def check_benchmark(info: Dict, max_items: Optional[int] = None, open_images: bool = True) -> Dict[str, int]:
    """Check every list of ``info`` (DATA_INFO form, absolute paths); ``{config key: items}``."""
    num_classes = int(info["num_classes"])
    return {where: check_list(entry["imglist_path"], entry["data_dir"], where,
                              num_classes if is_id else None, max_items, open_images)
            for where, entry, is_id in benchmark_entries(info)}
