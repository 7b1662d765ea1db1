"""Typed, validated run settings: the single source of defaults (trainer and evaluation).

Read once per run from the ``optimizer``, ``sparse``, ``moon`` and ``evaluation`` sections of a merged
config; an unknown key in those sections is an error that lists the valid ones. YAML files set only
what differs from these defaults (``default_config()`` declares every key, so ``--sparse.interval 5``
works whether or not a file names the key).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

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
    # instead of interval: topology updates per epoch, so a regime carries over to other data sizes;
    # interval = max(1, round(steps_per_epoch / updates_per_epoch)) (SparseSettings.interval_for)
    updates_per_epoch: Optional[float] = field(default=None, metadata={"type": float})
    end: float = 0.75                # fraction of training after which the topology is frozen

    def interval_for(self, steps_per_epoch: int) -> int:
        """Steps between topology updates: ``interval``, or with ``updates_per_epoch`` set
        ``max(1, round(steps_per_epoch / updates_per_epoch))`` (Python's round: halves to even)."""
        if self.updates_per_epoch is None:
            return self.interval
        return max(1, round(steps_per_epoch / self.updates_per_epoch))


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


# Keys added after runs were recorded, whose unset value (None) changes nothing: left out of merged
# configs (openood_moon.job_config) and of checkpoints' settings while unset, so a run recorded
# before the key existed keeps its config, config hash and checkpoint.
OPTIONAL_KEYS = ("sparse.updates_per_epoch",)

MAX_EPOCHS = 100_000   # a sanity bound: a typo such as 1e9 epochs is refused, not planned step by step

DEFAULT_POSTPROCESSORS = ("msp", "ebo", "knn", "react", "vim", "mds", "moon")


@dataclass
class EvaluationSettings:
    postprocessors: list = field(default_factory=lambda: list(DEFAULT_POSTPROCESSORS))
    postprocessor_args: dict = field(default_factory=dict)   # {pp: {name: value}}; not evaluated -> ignored
    plots: bool = True
    resume: bool = True              # continue from checkpoint.pt; a finished run with the same config is skipped
    config_root: str = ""            # OpenOOD engine: read <config_root>/postprocessors/<pp>.yml (parameter search)
    batch_size: int = 0              # evaluation batch size; 0: the dataset's test batch size


@dataclass
class PresetSettings:
    name: str = "default"            # default | official (the released code's quirks: openood_moon/official.py)


@dataclass
class TrainSettings:
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    sparse: SparseSettings = field(default_factory=SparseSettings)
    moon: MoonSettings = field(default_factory=MoonSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    preset: PresetSettings = field(default_factory=PresetSettings)
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
                  preset=_section(PresetSettings, cfg.get("preset"), "preset"),
                  seed=0 if cfg.get("seed") is None else _coerce(cfg["seed"], int, "seed"))
        out.validate()
        check_dataset(cfg.get("dataset"))
        return out

    def validate(self) -> None:
        """Range checks on every key, then the relations between keys; the first violation raises
        :class:`ConfigError` naming the key, the value and what is allowed.

        Relations: MOON's warm-up ends before the vote starts (``warmup_epochs + vote_epochs <=
        num_epochs``: the vote never averages a warm-up model); Nesterov needs momentum (torch's SGD).
        ``sparse.end`` may lie anywhere in [0, 1]: the trainer freezes the topology at ``end`` or at the
        start of the last ``moon.vote_epochs`` epochs, whichever comes first, so the averaged model
        is as sparse as each snapshot.
        """
        o, s, m, e = self.optimizer, self.sparse, self.moon, self.evaluation
        _check(1 <= o.num_epochs <= MAX_EPOCHS, "optimizer.num_epochs", o.num_epochs,
               f"an integer in [1, {MAX_EPOCHS}]")
        _check(o.lr > 0, "optimizer.lr", o.lr, "a number > 0")
        _check(o.lr_ini > 0, "optimizer.lr_ini", o.lr_ini, "a number > 0 (a factor of optimizer.lr)")
        _check(o.lr_end >= 0, "optimizer.lr_end", o.lr_end, "a number >= 0 (a factor of optimizer.lr)")
        _check(0 <= o.momentum < 1, "optimizer.momentum", o.momentum, "in [0, 1)")
        _check(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "a number >= 0")
        _check(not o.nesterov or o.momentum > 0, "optimizer.nesterov", o.nesterov,
               f"false when optimizer.momentum is 0 (Nesterov needs momentum; momentum is {o.momentum})")
        if s.method not in METHOD_CHOICES:
            raise ConfigError(f"unknown sparse.method {s.method!r}; valid choices: {', '.join(METHOD_CHOICES)}")
        if s.init not in INIT_CHOICES:
            raise ConfigError(f"unknown sparse.init {s.init!r}; valid choices: {', '.join(INIT_CHOICES)}")
        _check(0 < s.density <= 1, "sparse.density", s.density, "in (0, 1]")
        _check(0 <= s.drop_fraction < 1, "sparse.drop_fraction", s.drop_fraction, "in [0, 1)")
        _check(s.interval >= 1, "sparse.interval", s.interval, "an integer >= 1 (steps)")
        if s.updates_per_epoch is not None:
            _check(s.updates_per_epoch > 0, "sparse.updates_per_epoch", s.updates_per_epoch,
                   "a number > 0 (topology updates per epoch), or null to use sparse.interval")
            if s.interval != SparseSettings.interval:
                raise ConfigError(f"sparse.interval ({s.interval!r}) and sparse.updates_per_epoch "
                                  f"({s.updates_per_epoch!r}) are both set: give one of the two (in a config "
                                  "stack, a later file or --key value setting one unsets the other)")
        _check(0 <= s.end <= 1, "sparse.end", s.end, "a fraction of training in [0, 1]")
        _check(m.alpha_final > 0, "moon.alpha_final", m.alpha_final, "a number > 0")
        _check(m.init_factor > 0, "moon.init_factor", m.init_factor, "a number > 0")
        _check(0 < m.ewma_mu <= 1, "moon.ewma_mu", m.ewma_mu, "in (0, 1]")
        _check(m.warmup_epochs >= 0, "moon.warmup_epochs", m.warmup_epochs, "an integer >= 0")
        _check(m.vote_epochs >= 0, "moon.vote_epochs", m.vote_epochs, "an integer >= 0")
        _check(m.snapshots_per_epoch >= 1, "moon.snapshots_per_epoch", m.snapshots_per_epoch, "an integer >= 1")
        if self.uses_unknown:
            _check(1 <= m.warmup_epochs < o.num_epochs, "moon.warmup_epochs", m.warmup_epochs,
                   f"in [1, optimizer.num_epochs={o.num_epochs}): the α tuner starts from the loss averaged "
                   "over the warm-up", style="paren")
        if self.vote_epochs:
            _check(0 < m.vote_epochs < o.num_epochs, "moon.vote_epochs", m.vote_epochs,
                   f"in [1, optimizer.num_epochs={o.num_epochs})", style="paren")
        if self.uses_unknown and self.vote_epochs:
            _check(m.warmup_epochs + m.vote_epochs <= o.num_epochs, "moon.warmup_epochs + moon.vote_epochs",
                   m.warmup_epochs + m.vote_epochs, f"<= optimizer.num_epochs={o.num_epochs}: the vote must "
                   "not average warm-up models (shorten one of them or train longer)", style="paren")
        _check(len(e.postprocessors) > 0 and all(isinstance(p, str) and p for p in e.postprocessors),
               "evaluation.postprocessors", e.postprocessors, "a non-empty list of postprocessor names")
        repeated = sorted({p for p in e.postprocessors if e.postprocessors.count(p) > 1})
        _check(not repeated, "evaluation.postprocessors", e.postprocessors, f"listed once each ({repeated[:1]} twice)")
        for pp, args in e.postprocessor_args.items():
            _check(isinstance(pp, str) and isinstance(args, dict) and all(isinstance(k, str) for k in args),
                   f"evaluation.postprocessor_args.{pp}", args,
                   "a mapping of setting names to values, e.g. {knn: {k: 50}}")
        _check(e.batch_size >= 0, "evaluation.batch_size", e.batch_size,
               "an integer >= 0 (0: the dataset's test batch size)")
        _check(0 <= self.seed < 2 ** 32, "seed", self.seed, "an integer in [0, 2**32)")
        from .official import PRESET_CHOICES  # lazy: official imports the sparse package

        if self.preset.name not in PRESET_CHOICES:
            raise ConfigError(f"unknown preset.name {self.preset.name!r}; valid choices: {', '.join(PRESET_CHOICES)}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def training_dict(self) -> Dict[str, Any]:
        """What determines the trained model (everything but the evaluation section; unset
        :data:`OPTIONAL_KEYS` left out)."""
        return drop_unset_optional({k: v for k, v in self.to_dict().items() if k != "evaluation"})


def drop_unset_optional(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``cfg`` without the :data:`OPTIONAL_KEYS` whose value is None (a copy of the sections touched)."""
    out = dict(cfg)
    for key in OPTIONAL_KEYS:
        section, name = key.split(".")
        if isinstance(out.get(section), dict) and name in out[section] and out[section][name] is None:
            out[section] = {k: v for k, v in out[section].items() if k != name}
    return out


def default_config() -> Dict[str, Any]:
    """Every settings key with its default, in config form (the base under the YAML files)."""
    return {k: v for k, v in TrainSettings().to_dict().items()}


def check_dataset(section) -> None:
    """The dataset keys every engine reads: ``subset`` (null, or the first N >= 1 items of every list)
    and the splits' ``batch_size`` (integers >= 1)."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"dataset must be a mapping of keys to values, got {section!r}")
    subset = section.get("subset")
    _check(subset is None or (type(subset) is int and subset >= 1), "dataset.subset", subset,
           "null (every item) or an integer >= 1 (the first N items of every list)")
    for split in ("train", "val", "test"):
        size = section[split].get("batch_size") if isinstance(section.get(split), dict) else None
        _check(size is None or (type(size) is int and size >= 1), f"dataset.{split}.batch_size", size,
               "an integer >= 1")


def _section(kind, values, name: str, lenient: bool = False):
    """Build dataclass ``kind`` from ``values``; unknown keys are errors unless ``lenient``
    (the optimizer section is shared with OpenOOD, which has keys of its own)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{name} must be a mapping of keys to values, got {values!r}")
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
            kwargs[key] = _coerce(values[key], f.metadata.get("type") or type(getattr(kind(), key)), f"{name}.{key}")
    return kind(**kwargs)


def _coerce(value, typ, key):
    """``value`` as the key's type: bools and strings must be exactly that; ints accept whole numbers
    (``3.0``, not ``2.5``); floats accept numbers and numeric strings (YAML reads ``5e-4`` as a
    string), finite only; lists and mappings must be lists and mappings."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if typ in (list, dict, str):
        if isinstance(value, typ):
            return value
        kind = {list: "list", dict: "mapping", str: "string"}[typ]
        raise ConfigError(f"{key} must be a {kind}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be {'an integer' if typ is int else 'a number'}, got {value!r}")
    try:
        number = float(value) if isinstance(value, str) and typ is float else value
        if typ is float:
            number = float(number)
            if not math.isfinite(number):
                raise ValueError
            return number
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key} must be {'an integer' if typ is int else 'a finite number'}, "
                          f"got {value!r}") from None


def _check(ok: bool, key: str, value, allowed: str, style: str = "plain") -> None:
    """``key must be <allowed>, got <value>`` (``style='paren'``: ``key (<value>) must be <allowed>``)."""
    if not ok:
        raise ConfigError(f"{key} ({value!r}) must be {allowed}" if style == "paren"
                          else f"{key} must be {allowed}, got {value!r}")
