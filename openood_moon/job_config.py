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

from .config import CONFIGS_ROOT, load_config, merge, read_yaml
from .settings import default_config

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


def job_config(paths: Sequence[str], overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """The merged config: settings defaults, default files, the user's files, overrides."""
    return load_config(config_files(paths), overrides, base=default_config())
