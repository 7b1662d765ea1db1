"""Command line of ``main.py``: OpenOOD-style ``--config a.yml b.yml … --key.sub value``.

Files a user leaves out are filled in from the embedded default: the train pipeline
(``configs/pipelines/train/moon.yml``) when no file sets ``pipeline``, the embedded benchmark when
none sets ``dataset``, the small CNN when none sets ``network``. The engine is OpenOOD when it is
importable, else the standalone one; ``--engine`` forces either.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import List, Optional, Sequence, Tuple

from .config import ConfigError, load_config, merge, read_yaml

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
ENGINE_CHOICES = ("auto", "openood", "standalone")
DEFAULTS = {  # top-level key -> config files used when no given file sets it
    "pipeline": ["pipelines/train/moon.yml"],
    "dataset": ["datasets/mnist6/mnist6.yml", "datasets/mnist6/mnist6_ood.yml"],
    "network": ["networks/small_cnn.yml"],
}


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(
        description="Train and evaluate MOON / sparse / dense models (OpenOOD-style configs).",
        epilog="Any --key.sub value after the config files overrides a key those files declare.")
    parser.add_argument("--config", nargs="+", default=[],
                        help="YAML files stacked left to right (default: the embedded MOON job)")
    parser.add_argument("--engine", default="auto",
                        help="openood | standalone | auto (OpenOOD when importable)")
    args, overrides = parser.parse_known_args(list(argv))
    if args.engine not in ENGINE_CHOICES:
        raise ConfigError(f"unknown --engine {args.engine!r}; valid choices: {', '.join(ENGINE_CHOICES)}")
    return args, overrides


def config_files(paths: Sequence[str], configs_root: str = REPO_CONFIGS) -> List[str]:
    """The user's files, preceded by the defaults for the top-level keys none of them sets."""
    given = {}
    for path in paths:
        given = merge(given, read_yaml(path))
    defaults = [os.path.join(configs_root, f) for key, files in DEFAULTS.items()
                if key not in given for f in files]
    return defaults + list(paths)


def choose_engine(requested: str) -> str:
    if requested != "auto":
        return requested
    return "openood" if importlib.util.find_spec("openood") is not None else "standalone"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, overrides = parse_args(argv)
        engine = choose_engine(args.engine)
        files = config_files(args.config)
        cfg = load_config(files, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"engine: {engine}" + (" (OpenOOD is not installed)" if engine == "standalone"
                                 and args.engine == "auto" else ""))
    try:
        if engine == "openood":
            from .engines.openood.main import run as run_engine
        else:
            from .engines.standalone.run import run as run_engine
        run_engine(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
