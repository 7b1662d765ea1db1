"""Typed, validated run settings: the single source of defaults (trainer and evaluation).

Read once per run from the ``optimizer``, ``sparse``, ``moon`` and ``evaluation`` sections of a merged
config; an unknown key in those sections is an error that lists the valid ones. YAML files set only
what differs from these defaults (``default_config()`` declares every key, so ``--sparse.interval 5``
works whether or not a file names the key).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Dict

from .config import ConfigError
from .sparse import INIT_CHOICES, METHOD_CHOICES


@dataclass
class OptimizerSettings:
    num_epochs: int = 20
    lr: float = 0.05                 # base LR; the schedule multiplies it by lr_ini … lr_end
    lr_ini: float = 1.2
    lr_end: float = 0.08
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True


@dataclass
class SparseSettings:
    method: str = "rigl"             # dense | static | set | rigl
    density: float = 0.1
    init: str = "erk"                # erk | uniform
    drop_fraction: float = 0.3       # cosine-decayed to 0 over the update horizon
    interval: int = 100              # steps between topology updates
    end: float = 0.75                # fraction of training after which the topology is frozen


@dataclass
class MoonSettings:
    enabled: bool = True
    unknown_loss: bool = True        # K+1 head, MOON loss and α tuner
    vote: bool = True                # weight averaging over the last vote_epochs
    alpha_final: float = 1.0
    init_factor: float = 64.0
    warmup_epochs: int = 5
    vote_epochs: int = 4
    snapshots_per_epoch: int = 10
    ewma_mu: float = 0.05


DEFAULT_POSTPROCESSORS = ["msp", "ebo", "knn", "react", "vim", "mds", "moon"]


@dataclass
class EvaluationSettings:
    postprocessors: list = field(default_factory=lambda: list(DEFAULT_POSTPROCESSORS))
    postprocessor_args: dict = field(default_factory=dict)   # {pp: {name: value}}; not evaluated -> ignored
    plots: bool = True
    resume: bool = True              # continue from checkpoint.pt; a finished run with the same config is skipped
    config_root: str = ""            # OpenOOD engine: read <config_root>/postprocessors/<pp>.yml (parameter search)
    batch_size: int = 0              # evaluation batch size; 0: the dataset's test batch size


@dataclass
class TrainSettings:
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    sparse: SparseSettings = field(default_factory=SparseSettings)
    moon: MoonSettings = field(default_factory=MoonSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    seed: int = 0

    @property
    def uses_unknown(self) -> bool:
        return self.moon.enabled and self.moon.unknown_loss

    @property
    def vote_epochs(self) -> int:
        return self.moon.vote_epochs if (self.moon.enabled and self.moon.vote) else 0

    @property
    def cosine_epochs(self) -> int:
        """Epochs of the cosine LR decay: all but the last ``moon.vote_epochs``, whether or not the vote
        runs, so every variant of a comparison (dense, sparse, sparse+MOON) has the same LR schedule
        (at least one epoch)."""
        return max(1, self.optimizer.num_epochs - self.moon.vote_epochs)

    @classmethod
    def from_config(cls, cfg: Dict[str, Any]) -> "TrainSettings":
        out = cls(optimizer=_section(OptimizerSettings, cfg.get("optimizer"), "optimizer", lenient=True),
                  sparse=_section(SparseSettings, cfg.get("sparse"), "sparse"),
                  moon=_section(MoonSettings, cfg.get("moon"), "moon"),
                  evaluation=_section(EvaluationSettings, cfg.get("evaluation"), "evaluation"),
                  seed=_coerce(cfg.get("seed", 0) or 0, int, "seed"))
        out.validate()
        return out

    def validate(self) -> None:
        o, s, m = self.optimizer, self.sparse, self.moon
        if s.method not in METHOD_CHOICES:
            raise ConfigError(f"unknown sparse.method {s.method!r}; valid choices: {', '.join(METHOD_CHOICES)}")
        if s.init not in INIT_CHOICES:
            raise ConfigError(f"unknown sparse.init {s.init!r}; valid choices: {', '.join(INIT_CHOICES)}")
        _check(0 < s.density <= 1, f"sparse.density must be in (0, 1], got {s.density}")
        _check(0 <= s.drop_fraction < 1, f"sparse.drop_fraction must be in [0, 1), got {s.drop_fraction}")
        _check(s.interval >= 1, f"sparse.interval must be >= 1 step, got {s.interval}")
        _check(0 <= s.end <= 1, f"sparse.end is a fraction of training in [0, 1], got {s.end}")
        _check(o.num_epochs >= 1, f"optimizer.num_epochs must be >= 1, got {o.num_epochs}")
        _check(o.lr > 0, f"optimizer.lr must be positive, got {o.lr}")
        if self.uses_unknown:
            _check(1 <= m.warmup_epochs < o.num_epochs,
                   f"moon.warmup_epochs ({m.warmup_epochs}) must be in [1, optimizer.num_epochs={o.num_epochs}): "
                   f"the α tuner starts from the loss averaged over the warm-up")
        _check(m.vote_epochs >= 0, f"moon.vote_epochs must be >= 0, got {m.vote_epochs}")
        if self.vote_epochs:
            _check(0 < m.vote_epochs < o.num_epochs,
                   f"moon.vote_epochs ({m.vote_epochs}) must be in [1, optimizer.num_epochs={o.num_epochs})")
            _check(m.snapshots_per_epoch >= 1, f"moon.snapshots_per_epoch must be >= 1")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def training_dict(self) -> Dict[str, Any]:
        """What determines the trained model (everything but the evaluation section)."""
        return {k: v for k, v in self.to_dict().items() if k != "evaluation"}


def default_config() -> Dict[str, Any]:
    """Every settings key with its default, in config form (the base under the YAML files)."""
    return {k: v for k, v in TrainSettings().to_dict().items()}


def _section(kind, values, name: str, lenient: bool = False):
    """Build dataclass ``kind`` from ``values``; unknown keys are errors unless ``lenient``
    (the optimizer section is shared with OpenOOD, which has keys of its own)."""
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(kind)}
    unknown = [k for k in values if k not in names]
    if unknown and not lenient:
        hint = difflib.get_close_matches(unknown[0], names, n=1)
        raise ConfigError(f"unknown key {name}.{unknown[0]}" + (f" (did you mean {name}.{hint[0]}?)" if hint else "")
                          + f"; valid keys: {', '.join(names)}")
    kwargs = {}
    for key, f in names.items():
        if key in values and values[key] is not None:
            kwargs[key] = _coerce(values[key], type(getattr(kind(), key)), f"{name}.{key}")
    return kind(**kwargs)


def _coerce(value, typ, key):
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if typ in (list, dict):
        if isinstance(value, typ):
            return value
        raise ConfigError(f"{key} must be a {'list' if typ is list else 'mapping'}, got {value!r}")
    if typ is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a {typ.__name__}, got {value!r}") from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
