"""Command line of ``main.py``, ``python -m openood_moon`` and ``openood-moon``: OpenOOD-style
``--config a.yml b.yml … --key.sub value`` (see :mod:`openood_moon.job_config` for the defaults).

The engine is OpenOOD when it is importable, else the standalone one; ``--engine`` forces either.
Every user error (unknown key, name, value) exits with status 2 and a message naming it; Ctrl-C
exits 130 and a failed write into the run folder (disk full) exits 1, both saying how to resume.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import List, Optional, Sequence, Tuple

from .config import CONFIGS_ROOT, ConfigError
from .job_config import config_files, job_config  # noqa: F401 - config_files: public helper

REPO_CONFIGS = CONFIGS_ROOT
ENGINE_CHOICES = ("auto", "openood", "standalone")
STANDALONE_NAMES = {"pipeline": ("train_moon",), "trainer": ("moon",)}


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(
        prog="openood-moon", description="Train and evaluate MOON / sparse / dense models (OpenOOD-style configs).",
        epilog="Any --key.sub value after the config files overrides a key those files declare.")
    parser.add_argument("--config", nargs="+", default=[],
                        help="YAML files stacked left to right (default: the embedded MOON job)")
    parser.add_argument("--engine", default="auto",
                        help="openood | standalone | auto (OpenOOD when importable)")
    parser.add_argument("--preset", default="default",
                        help="official: the released MOON code's training behaviour, stacked after the "
                             "configs (configs/presets/official.yml); default: ours (README, Method notes)")
    args, overrides = parser.parse_known_args(list(argv))
    if args.engine not in ENGINE_CHOICES:
        raise ConfigError(f"unknown --engine {args.engine!r}; valid choices: {', '.join(ENGINE_CHOICES)}")
    return args, overrides


def preset_files(name: str) -> List[str]:
    """``--preset official`` -> ``configs/presets/official.yml``; ``default`` adds nothing."""
    from .official import PRESET_CHOICES

    if name not in PRESET_CHOICES:
        raise ConfigError(f"unknown --preset {name!r}; valid choices: {', '.join(PRESET_CHOICES)}")
    return [] if name == "default" else [f"configs/presets/{name}.yml"]


def check_standalone_names(cfg) -> None:
    for kind, valid in STANDALONE_NAMES.items():
        name = (cfg.get(kind) or {}).get("name")
        if name not in valid:
            raise ConfigError(f"unknown {kind}.name {name!r}; valid choices (standalone engine): "
                              f"{', '.join(valid)} (OpenOOD's other {kind}s need --engine openood)")


def choose_engine(requested: str) -> str:
    """The engine to run: ``requested``, or for ``auto`` OpenOOD when it is importable."""
    installed = importlib.util.find_spec("openood") is not None
    if requested == "openood" and not installed:
        raise ConfigError("--engine openood: OpenOOD is not installed (README, 'The OpenOOD engine'); "
                          "valid choices here: standalone, auto")
    if requested != "auto":
        return requested
    return "openood" if installed else "standalone"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, overrides = parse_args(argv)
        engine = choose_engine(args.engine)
        cfg = job_config(args.config + preset_files(args.preset), overrides)
        if engine == "standalone":
            check_standalone_names(cfg)
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
    except KeyboardInterrupt as err:  # the run path's RunInterrupted says what was saved
        print(str(err) or "interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        from .run_path import RunStopped

        if not isinstance(err, RunStopped):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
