"""Register an offline OpenOOD-format image-list benchmark into OpenOOD's Evaluator API.

OpenOOD's Evaluator only knows cifar10/100, imagenet(200), aircraft and cub, and downloads their
data on first use. ``register_benchmark`` adds a new ID name with four in-place dict entries and
no function patch (openood-internals §8.3):

1. ``evaluation_api.datasets.DATA_INFO[name]`` — the splits (paths made absolute under data_root);
2. ``evaluation_api.datasets.benchmarks_dict[name] = []`` — nothing to download;
3. ``evaluation_api.preprocessor.default_preprocessing_dict[name]`` — resize/crop/normalise;
4. ``postprocessors.info.num_classes_dict[name]`` — K, read by mds, gram, she, klm, ...

plus, for OpenOOD's *training* pipelines, ``preprocessors.transform.normalization_dict[name]`` so
that ``normalization_type: <name>`` trains with the same normalisation the Evaluator uses.
``openood_dataset_config(name)`` writes the matching ``dataset:``/``ood_dataset:`` config sections.

``data_setup`` also downloads OpenOOD's whole image-list archive when ``<data_root>/
benchmark_imglist`` is missing, so that folder must exist in the ``data_root`` given to the
Evaluator: pass the value ``register_benchmark`` returns.
"""
import copy
import os
from typing import Dict, Sequence

DEFAULT_NORMALIZATION = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # OpenOOD's fallback for unknown sets
_REGISTERED = set()


def _registries():
    from . import compat

    compat.install_import_stubs()
    import openood.evaluation_api.datasets as eds
    import openood.evaluation_api.preprocessor as epp
    import openood.postprocessors.info as pinfo
    import openood.preprocessors.transform as ptrans

    return eds, epp, pinfo, ptrans


def _split_entries(info: Dict):
    """Yield every {'data_dir', 'imglist_path'} entry of a DATA_INFO-form dict."""
    for split in ("train", "val", "test"):
        yield info["id"][split]
    for group in ("csid",):
        for name in info[group]["datasets"]:
            yield info[group][name]
    yield info["ood"]["val"]
    for group in ("near", "far"):
        for name in info["ood"][group]["datasets"]:
            yield info["ood"][group][name]


def resolve_info(info: Dict, data_root: str, num_classes: int) -> Dict:
    """A checked copy of ``info`` with absolute paths under ``data_root`` and ``csid`` filled in."""
    info = copy.deepcopy(dict(info))
    if info.get("num_classes", num_classes) != num_classes:
        raise ValueError(f"info says num_classes={info['num_classes']}, argument says {num_classes}")
    info["num_classes"] = int(num_classes)
    info.setdefault("csid", {"datasets": []})
    try:
        entries = list(_split_entries(info))
    except KeyError as err:
        raise ValueError(f"benchmark info lacks {err}; expected OpenOOD DATA_INFO form: id.train/val/test, "
                         "ood.val, ood.near.datasets, ood.far.datasets") from None
    root = os.path.abspath(os.fspath(data_root))
    for entry in entries:
        entry["data_dir"] = os.path.join(root, entry.get("data_dir", ""))
        entry["imglist_path"] = os.path.join(root, entry["imglist_path"])
        if not os.path.isfile(entry["imglist_path"]):
            raise FileNotFoundError(f"image list not found: {entry['imglist_path']}")
    return info


def register_benchmark(name: str, info: Dict, data_root, num_classes: int, pre_size: int = 32,
                       img_size: int = 32,
                       normalization: Sequence[Sequence[float]] = DEFAULT_NORMALIZATION) -> str:
    """Make ``name`` a valid ``Evaluator(id_name=...)`` with no downloads; return the data_root to use.

    ``info`` is OpenOOD's DATA_INFO form with paths relative to ``data_root``. Idempotent; a name
    registered here may be re-registered (the entries are replaced), OpenOOD's own names may not.
    """
    eds, epp, pinfo, ptrans = _registries()
    if name not in _REGISTERED and (name in eds.DATA_INFO or name in ptrans.normalization_dict):
        raise ValueError(f"{name!r} is one of OpenOOD's own datasets; choose another name")
    root = os.path.abspath(os.fspath(data_root))
    if not os.path.isdir(os.path.join(root, "benchmark_imglist")):
        raise FileNotFoundError(f"{root}/benchmark_imglist is missing: OpenOOD's data_setup would "
                                "download its image-list archive")
    norm = [[float(v) for v in normalization[0]], [float(v) for v in normalization[1]]]
    entries = [
        (eds.DATA_INFO, resolve_info(info, root, num_classes)),
        (eds.benchmarks_dict, []),
        (epp.default_preprocessing_dict,
         {"pre_size": int(pre_size), "img_size": int(img_size), "normalization": norm}),
        (pinfo.num_classes_dict, int(num_classes)),
        (ptrans.normalization_dict, norm),
    ]
    for registry, value in entries:
        if registry.get(name) != value:  # unchanged entries keep their identity
            registry[name] = value
    _REGISTERED.add(name)
    return root


def registered_benchmarks() -> frozenset:
    """Names registered through :func:`register_benchmark` in this process."""
    return frozenset(_REGISTERED)


def unregister_benchmark(name: str) -> None:
    """Remove a benchmark registered by :func:`register_benchmark` (OpenOOD's own names are kept)."""
    if name not in _REGISTERED:
        return
    eds, epp, pinfo, ptrans = _registries()
    for registry in (eds.DATA_INFO, eds.benchmarks_dict, epp.default_preprocessing_dict,
                     pinfo.num_classes_dict, ptrans.normalization_dict):
        registry.pop(name, None)
    _REGISTERED.discard(name)


def register_embedded(data_root="data", name: str = "mnist6") -> str:
    """Build (once, offline) the embedded benchmark ``name`` (mnist6, fmnist6) and register it; return
    its data_root."""
    from openood_moon.data.builder import build, embedded_benchmark

    spec = embedded_benchmark(name)
    root = build(spec, data_root)
    return register_benchmark(spec.name, spec.info(), root, spec.num_classes, pre_size=spec.image_size,
                              img_size=spec.image_size, normalization=DEFAULT_NORMALIZATION)


def openood_dataset_config(name: str, train_batch_size: int = 128, eval_batch_size: int = 200) -> Dict:
    """``dataset:`` and ``ood_dataset:`` sections (OpenOOD yml form) for a registered benchmark.

    Paths are the absolute ones of the registration; ``num_workers``/``num_gpus``/``num_machines``
    stay ``'@{...}'`` references, as in OpenOOD's own dataset ymls.
    """
    eds, epp, _, _ = _registries()
    if name not in _REGISTERED:
        raise KeyError(f"benchmark {name!r} is not registered; call register_benchmark first")
    info, pre = eds.DATA_INFO[name], epp.default_preprocessing_dict[name]
    refs = {"num_workers": "@{num_workers}", "num_gpus": "@{num_gpus}", "num_machines": "@{num_machines}"}

    def files(entry):
        return {"data_dir": entry["data_dir"], "imglist_pth": entry["imglist_path"]}

    dataset = {"name": name, "num_classes": info["num_classes"], "pre_size": pre["pre_size"],
               "image_size": pre["img_size"], "interpolation": "bilinear", "normalization_type": name,
               **refs, "split_names": ["train", "val", "test"]}
    for split in ("train", "val", "test"):
        dataset[split] = {"dataset_class": "ImglistDataset", **files(info["id"][split]),
                          "batch_size": train_batch_size if split == "train" else eval_batch_size,
                          "shuffle": split == "train"}
    ood = {"name": f"{name}_ood", "num_classes": info["num_classes"], **refs,
           "dataset_class": "ImglistDataset", "batch_size": eval_batch_size, "shuffle": False,
           "split_names": ["val", "nearood", "farood"], "val": files(info["ood"]["val"])}
    for split, group in (("nearood", "near"), ("farood", "far")):
        names = list(info["ood"][group]["datasets"])
        ood[split] = {"datasets": names, **{n: files(info["ood"][group][n]) for n in names}}
    return {"dataset": dataset, "ood_dataset": ood}
