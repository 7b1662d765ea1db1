"""The merged config of one job: the user's YAML files over the embedded defaults and the settings'
defaults, then ``--key.sub value`` overrides (used by ``main.py`` and the study runner alike).

Files a user leaves out are filled in from the embedded default: the train pipeline
(``configs/pipelines/train/moon.yml``) when no file sets ``pipeline``, the embedded benchmark when none
sets ``dataset``, the small CNN when none sets ``network``. Under everything lie the defaults of
:mod:`openood_moon.settings`, so every settings key can be overridden whether or not a file names it.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

from .config import CONFIGS_ROOT, apply_override, merge, parse_overrides, read_yaml, resolve_refs
from .settings import default_config, drop_unset_optional

DEFAULTS = {  # top-level key -> config files used when no given file sets it
    "pipeline": ["pipelines/train/moon.yml"],
    "dataset": ["datasets/mnist6/mnist6.yml", "datasets/mnist6/mnist6_ood.yml"],
    "network": ["networks/small_cnn.yml"],
}


def config_files(paths: Sequence[str], configs_root: str = CONFIGS_ROOT) -> List[str]:
    """The user's files, preceded by the defaults for the top-level keys none of them sets."""
    given: Dict[str, Any] = {}
    for path in paths:
        given = merge(given, read_yaml(path))
    defaults = [os.path.join(configs_root, f) for key, files in DEFAULTS.items()
                if key not in given for f in files]
    return defaults + list(paths)


# Keys that replace each other: a layer (file or override) that sets one clears the others set by
# earlier layers (moon.yml's sparse.interval: 10 gives way to a later sparse.updates_per_epoch: 2).
REPLACING = ("sparse.interval", "sparse.updates_per_epoch")


def _sets(layer: Dict[str, Any], key: str) -> bool:
    section, name = key.split(".")
    return isinstance(layer.get(section), dict) and layer[section].get(name) is not None


def _clear_replaced(cfg: Dict[str, Any], layer_keys: Sequence[str]) -> None:
    """Before a layer setting exactly one of :data:`REPLACING` is applied, unset the others (a layer
    setting several keeps them all, and TrainSettings.validate refuses it)."""
    given = [key for key in REPLACING if key in layer_keys]
    if len(given) != 1:
        return
    for key in REPLACING:
        section, name = key.split(".")
        if key != given[0] and isinstance(cfg.get(section), dict) and name in cfg[section]:
            cfg[section][name] = None


def job_config(paths: Sequence[str], overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """The merged config: settings defaults, default files, the user's files, overrides, as
    :func:`openood_moon.config.load_config` merges them; a layer that sets one of :data:`REPLACING`
    unsets the others; optional settings keys still unset are left out
    (:data:`~openood_moon.settings.OPTIONAL_KEYS`)."""
    cfg = default_config()
    for path in config_files(paths):
        layer = read_yaml(path)
        _clear_replaced(cfg, [key for key in REPLACING if _sets(layer, key)])
        cfg = merge(cfg, layer)
    for key, raw in parse_overrides(list(overrides)):
        _clear_replaced(cfg, [key])
        apply_override(cfg, key, raw)
    return drop_unset_optional(resolve_refs(cfg))
