"""A study grid: networks × methods × sparsities × training lengths × variants × paired seeds.

Every run of one seed shares its initialisation, data order and (for one sparsity) its masks'
random draws across variants, so differences between variants are paired by seed. Dense runs do
not depend on method or sparsity and are shared by every sparse cell of their network and length.

A run is identified by its dataset, network, length, method, sparsity, preset, engine (``_openood``
when run through OpenOOD), the grid's common ``overrides`` (a short hash ``_o<8 hex>`` when there
are any), variant and seed: ``run_id`` ``fmnist6_small_cnn_e40_rigl_sp0.98_sparse_moon_s3``. Everything else that differs (the length's
values, the base configs) is caught by the merged config's hash (:func:`config_hash`), which the
runner compares with the recorded one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

from ..config import ConfigError

# variant -> overrides of moon.* / sparse.method (None: keep the grid's method)
VARIANTS: Dict[str, Dict[str, Any]] = {
    "dense": {"sparse.method": "dense", "moon.enabled": False},
    "dense_moon": {"sparse.method": "dense", "moon.enabled": True, "moon.unknown_loss": True, "moon.vote": True},
    "sparse": {"moon.enabled": False},
    "sparse_vote": {"moon.enabled": True, "moon.unknown_loss": False, "moon.vote": True},
    "sparse_loss": {"moon.enabled": True, "moon.unknown_loss": True, "moon.vote": False},
    "sparse_moon": {"moon.enabled": True, "moon.unknown_loss": True, "moon.vote": True},
}
DENSE_VARIANTS = ("dense", "dense_moon")
LENGTH_KEYS = {"epochs": "optimizer.num_epochs", "interval": "sparse.interval",
               "updates_per_epoch": "sparse.updates_per_epoch",
               "warmup_epochs": "moon.warmup_epochs", "vote_epochs": "moon.vote_epochs"}
DEFAULT_DATASET = "mnist6"   # the embedded benchmark: what a grid without dataset configs runs on
DEFAULT_ENGINE = "standalone"


@dataclass(frozen=True)
class RunSpec:
    network: str         # a network config: configs/networks/<network>.yml
    method: str          # rigl | set | static | dense
    sparsity: float      # 0 for dense
    length: str          # name of the training-length setting, e.g. "e40"
    variant: str
    seed: int
    overrides: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    preset: str = "default"   # default | official (the released code's quirks; a cell of its own)
    dataset: str = DEFAULT_DATASET
    tag: str = ""             # "o<8 hex>": hash of the grid's common overrides ("" when it has none)
    engine: str = DEFAULT_ENGINE

    @property
    def cell(self) -> str:
        """Cell id shared by all variants and seeds that are compared with each other."""
        suffix = ("" if self.preset == "default" else f"_{self.preset}") + \
            ("" if self.engine == DEFAULT_ENGINE else f"_{self.engine}") + (f"_{self.tag}" if self.tag else "")
        return f"{self.dataset}_{self.network}_{self.length}_{self.method}_sp{self.sparsity:g}{suffix}"

    @property
    def run_id(self) -> str:
        return f"{self.cell}_{self.variant}_s{self.seed}"

    def override_tokens(self) -> List[str]:
        tokens = []
        for key, value in self.overrides.items():
            tokens += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
        return tokens

    def key(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("overrides")
        d.pop("tag")
        return d


def config_hash(cfg: Dict[str, Any]) -> str:
    """Short hash of a merged config, output location excluded."""
    clean = {k: v for k, v in cfg.items() if k not in ("output_dir", "exp_name")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()[:12]


def overrides_tag(overrides: Dict[str, Any]) -> str:
    """``o`` + 8 hex digits of the grid's common overrides ("" for none)."""
    if not overrides:
        return ""
    return "o" + hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]


def expand(grid: Dict[str, Any], dataset: str = DEFAULT_DATASET, engine: str = DEFAULT_ENGINE) -> List[RunSpec]:
    """All runs of ``grid`` (see configs/study/*.yml) on ``dataset`` (the name its base configs give)
    with ``engine``, dense runs once per network × length × seed.

    Ordered variant by variant (as listed), so the first variants have all their seeds first.
    """
    unknown = [v for v in grid["variants"] if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown study variant {unknown[0]!r}; valid choices: {', '.join(VARIANTS)}")
    common = dict(grid.get("overrides") or {})
    tag = overrides_tag(common)
    specs = []
    for network in grid["networks"]:
        for length_name, length in grid["lengths"].items():
            bad = [k for k in length if k not in LENGTH_KEYS]
            if bad:
                raise ConfigError(f"unknown training-length key {bad[0]!r}; valid keys: {', '.join(LENGTH_KEYS)}")
            base = {**common, **{LENGTH_KEYS[k]: v for k, v in length.items()}}
            both = [k for k in ("sparse.interval", "sparse.updates_per_epoch") if k in base]
            if len(both) == 2:
                raise ConfigError(f"study length {length_name!r} with the grid's overrides sets both "
                                  "sparse.interval and sparse.updates_per_epoch; give one of the two")
            for variant in grid["variants"]:       # variant-major: listed variants finish first
                for seed in grid["seeds"]:
                    if variant in DENSE_VARIANTS:
                        specs.append(RunSpec(network, "dense", 0.0, length_name, variant, int(seed),
                                             {**base, **VARIANTS[variant], "seed": int(seed)},
                                             dataset=dataset, tag=tag, engine=engine))
                        continue
                    for method in grid["methods"]:
                        for sparsity in grid["sparsities"]:
                            for preset in grid.get("presets", ["default"]):
                                over = {**base, **VARIANTS[variant], "sparse.method": method,
                                        "sparse.density": round(1 - float(sparsity), 6), "seed": int(seed),
                                        "preset.name": preset}
                                specs.append(RunSpec(network, method, float(sparsity), length_name, variant,
                                                     int(seed), over, preset, dataset, tag, engine))
    return specs
