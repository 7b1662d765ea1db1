"""The one run path of both engines: settings (parsed once) → network → resume, or refuse a stale run
→ train with checkpoints → vote → export ``best.ckpt`` / ``moon_net.ckpt`` → evaluate → results.

An engine supplies only what differs between them (:class:`Engine`): the resolved config, its data
loaders and network, its evaluator, and optional per-epoch hooks (OpenOOD's validation and recorder).
Everything written to the run folder is written here, by rank 0 only:

``config.yml`` (the resolved config), ``log.txt``, ``checkpoint.pt`` (whole training state after every
epoch, atomic; masks as bitmasks, mostly-zero tensors as values + bitmask: :mod:`.sparse_export`),
``best.ckpt`` (plain K-way backbone state_dict: loads into OpenOOD's network), ``best.sparse.pt`` (sparse
runs: the same weights compressed, :func:`~.sparse_export.load_sparse_state_dict`),
``moon_net.ckpt`` (the evaluated model, unknown head included), ``ood.csv`` and ``ood/<pp>.csv`` (with
provenance columns), ``<root>/ood/<pp>.csv`` (mean ± std over seeds), ``metrics.json`` and ``plots/``.

A run folder that holds a ``config.yml`` different from the new one (keys in :data:`IGNORED_KEYS`
aside) is refused, naming the keys; ``evaluation.resume: false`` retrains from scratch instead.

Reliability: one process at a time holds a run folder (``run.lock``, :mod:`.run_lock`; a live holder
is refused with its pid and host, a dead one's lock is taken over). A resumed ``checkpoint.pt`` must
be a complete training checkpoint of this run (settings, network and mask names and shapes;
:func:`~.checkpoint.training_checkpoint_mismatch`), else :class:`ConfigError` says what differs.
Killed at any moment, the same command resumes from the last complete epoch and ends bitwise equal
to an uninterrupted run (data order and augmentation are seeded per epoch; the checkpoint holds
every RNG the training draws from). Ctrl-C keeps the last complete epoch and raises
:class:`RunInterrupted` (exit 130); a failed checkpoint write (disk full) raises :class:`RunStopped`
(exit 1) and leaves the previous checkpoint in place.

Several processes (``torchrun``, OpenOOD's ``num_gpus`` launch): rank 0 alone takes the lock, checks the
folder and reads the checkpoint; :func:`~.distributed.from_rank0` hands every rank that checkpoint (so
a resume needs no shared file system) or rank 0's error, which every rank then raises.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, remove_partial_writes, save_checkpoint, training_checkpoint_mismatch
from .config import ConfigError
from .distributed import from_rank0
from .moon.net import export_state_dict
from .evaluation.groups import regroup, separate_groups
from .results import provenance, with_provenance, write_run_tables
from .run_lock import RunLock
from .run_log import run_logger
from .settings import TrainSettings
from .sparse_export import SPARSE_EXPORT_NAME, compress_state_dict, pack_tree
from .trainer import MoonTrainer

# keys that may change between a run and its resume without changing the result
IGNORED_KEYS = ("evaluation.resume", "evaluation.plots", "num_workers", "device")
RUN_FILES = ("checkpoint.pt", "best.ckpt", SPARSE_EXPORT_NAME, "moon_net.ckpt", "ood.csv", "metrics.json")
RESUME_HINT = ("move it away to train from scratch, choose another --output_dir, or pass "
               "--evaluation.resume false to retrain there from scratch")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C: the last complete epoch is saved; the message says how to resume (the CLI exits 130)."""


class RunStopped(Exception):
    """A write into the run folder failed (disk full, ...); the last complete checkpoint is intact and
    the same command resumes from it (the CLI exits 1)."""


class Evaluation:
    """What an engine's evaluator returns: per-postprocessor tables (rows: OOD sets, ``nearood``,
    ``farood``; columns :data:`~openood_moon.results.METRIC_COLUMNS`), their settings, ID metrics, and the
    confidences for the plots (``{pp: {'id': conf, 'near': {set: conf}, 'far': {set: conf}}}``)."""

    def __init__(self, tables, settings: Dict[str, str], searched: Dict[str, bool], id_metrics: Dict,
                 scores: Optional[Dict] = None, skipped: Optional[Dict[str, str]] = None):
        self.tables, self.settings, self.searched = tables, settings, searched
        self.id_metrics, self.scores, self.skipped = id_metrics, scores or {}, skipped or {}


class Engine:
    """What an engine supplies to :func:`run`. Subclasses override the methods that raise."""

    name = "engine"

    def resolve(self, settings: TrainSettings) -> Tuple[Dict[str, Any], Path]:
        """Check the engine's names (exit 2 on unknown ones) and prepare data; return the resolved
        plain config (written to ``config.yml``, compared on resume) and the run folder."""
        raise NotImplementedError

    def build(self, settings: TrainSettings) -> Tuple[nn.Module, Any, torch.device]:
        """After seeding: the network (MoonNet when MOON's loss is on), the train loader, the device."""
        raise NotImplementedError

    def make_trainer(self, net: nn.Module, train_loader, settings: TrainSettings, device) -> MoonTrainer:
        return MoonTrainer(net, train_loader, settings, device)

    def after_epoch(self, trainer: MoonTrainer, metrics: Dict[str, Any], is_main: bool) -> None:
        """Per-epoch hook (OpenOOD: validate and record)."""

    def after_training(self, model: nn.Module, is_main: bool) -> None:
        """Hook after the last epoch and the vote."""

    def evaluate(self, model: nn.Module, settings: TrainSettings, run_dir: Path) -> Evaluation:
        raise NotImplementedError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def flatten(cfg: Any, prefix: str = "") -> Dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists stay values)."""
    if not isinstance(cfg, dict):
        return {prefix: cfg}
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value
                   else {f"{prefix}{key}": value})
    return out


def config_differences(saved: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Dotted keys whose values differ between two configs (``IGNORED_KEYS`` aside)."""
    a, b = flatten(saved), flatten(new)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>")
            and not any(k == i or k.startswith(i + ".") for i in IGNORED_KEYS)]


def check_previous_run(run_dir: Path, cfg: Dict[str, Any], resume: bool) -> str:
    """'fresh', 'resume' or 'finished'; refuses a run folder trained with another config."""
    saved_path = run_dir / "config.yml"
    if not resume:
        for name in RUN_FILES:
            if (run_dir / name).exists():
                (run_dir / name).unlink()
        return "fresh"
    if not saved_path.exists():
        return "fresh"
    with open(saved_path) as f:
        saved = yaml.safe_load(f) or {}
    diff = config_differences(saved, cfg)
    if diff:
        shown = ", ".join(f"{k} ({flatten(saved).get(k, '<absent>')!r} -> {flatten(cfg).get(k, '<absent>')!r})"
                          for k in diff[:6]) + (" ..." if len(diff) > 6 else "")
        raise ConfigError(f"{run_dir} holds a run with another config: {shown}. Its results are not reused: "
                          "choose another --output_dir (or exp_name), or pass --evaluation.resume false "
                          "to retrain there from scratch")
    if (run_dir / "ood.csv").exists() and (run_dir / "metrics.json").exists():
        return "finished"
    return "resume" if (run_dir / "checkpoint.pt").exists() else "fresh"


def _write_yaml(cfg: Dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)


def run(engine: Engine, settings: TrainSettings, progress: bool = True) -> Dict[str, Any]:
    """Train (or resume) and evaluate one run; returns ``{'run_dir', 'table', 'id', 'skipped'}``."""
    cfg, run_dir = engine.resolve(settings)
    run_dir = Path(run_dir).absolute()
    main = is_main_process()
    # rank 0 holds the folder; while another live run holds it, every rank raises its ConfigError
    lock = from_rank0(lambda: RunLock(run_dir).acquire(), share=False)
    try:
        return _run_held(engine, settings, cfg, run_dir, main, progress)
    except KeyboardInterrupt:
        ckpt = run_dir / "checkpoint.pt"
        saved = (f"{ckpt} holds the last complete epoch" if ckpt.exists()
                 else "no epoch was complete, nothing to resume from")
        raise RunInterrupted(f"interrupted: {saved}; run the same command again to resume") from None
    finally:
        if lock:
            lock.release()


def _save(obj: Any, path: Path, ckpt: Path) -> None:
    """``save_checkpoint``; a failed write (disk full, ...) becomes :class:`RunStopped`."""
    try:
        save_checkpoint(obj, str(path))
    except OSError as err:
        kept = f"{ckpt} keeps the last complete epoch" if ckpt.exists() else "no checkpoint was written yet"
        raise RunStopped(f"could not write {path}: {err.strerror or err}; {kept}. Free space (or fix the "
                         "folder) and run the same command again to resume") from err


def _read_checkpoint(ckpt: Path, settings: TrainSettings) -> Dict[str, Any]:
    """The training checkpoint to resume from; ConfigError when truncated, foreign or from other settings."""
    try:
        saved = load_checkpoint(str(ckpt))
    except ConfigError as err:
        raise ConfigError(f"{err}; {RESUME_HINT}") from None
    problems = training_checkpoint_mismatch(saved, settings=settings.training_dict())
    if problems:
        raise ConfigError(f"{ckpt} does not belong to this run: {'; '.join(problems)}; {RESUME_HINT}")
    return saved


def _run_held(engine: Engine, settings: TrainSettings, cfg: Dict[str, Any], run_dir: Path, main: bool,
              progress: bool) -> Dict[str, Any]:
    """:func:`run` while holding the run folder."""
    ckpt = run_dir / "checkpoint.pt"

    def prepare() -> Tuple[str, Optional[Dict[str, Any]]]:
        """Rank 0: the folder's state, the folder made ready, and the checkpoint to resume from."""
        state = check_previous_run(run_dir, cfg, settings.evaluation.resume)
        if state == "finished":
            return state, None
        remove_partial_writes(run_dir)                   # temporaries of a write that was killed
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_yaml(cfg, run_dir / "config.yml")
        return state, (_read_checkpoint(ckpt, settings) if state == "resume" else None)

    state, saved = from_rank0(prepare)                   # every rank resumes from rank 0's checkpoint
    if state == "finished":
        if main:
            print(f"finished run with the same config found, skipped: {run_dir}", flush=True)
        return {"run_dir": run_dir, "table": None, "id": None, "skipped": True}
    log = run_logger(run_dir) if main else None

    seed_everything(settings.seed)
    net, train_loader, device = engine.build(settings)
    if len(train_loader) == 0:
        raise ConfigError("the training set is empty (no batch to train on): check the dataset's image lists, "
                          "data_root and dataset.subset")
    trainer = engine.make_trainer(net, train_loader, settings, device)
    if saved is not None:
        problems = training_checkpoint_mismatch(saved, expected=trainer.state_dict())
        try:
            if not problems:
                trainer.load_state_dict(saved)
        except (ValueError, RuntimeError, KeyError, TypeError) as err:
            problems = [str(err).splitlines()[0]]
        if problems:
            raise ConfigError(f"{ckpt} does not belong to this run: {'; '.join(problems)}; {RESUME_HINT}")
        if main:
            print(f"resumed from {ckpt} at epoch {trainer.epoch}", flush=True)
    if log:
        log.info("engine %s, device %s, %d train steps/epoch, settings %s", engine.name, device,
                 trainer.steps_per_epoch, json.dumps(settings.to_dict()))

    epochs = settings.optimizer.num_epochs
    bar = tqdm(total=epochs, initial=trainer.epoch, desc="train", unit="epoch",
               disable=not (progress and main), file=sys.stdout)
    saved_epoch, boundary = trainer.epoch, None
    try:
        while trainer.epoch < epochs:
            boundary = None
            metrics = trainer.train_epoch()
            boundary = trainer.epoch                     # a complete epoch: the state may be saved
            engine.after_epoch(trainer, metrics, main)
            if main:
                _save(pack_tree(trainer.state_dict()), ckpt, ckpt)   # masks as bits, sparse tensors packed
                saved_epoch = trainer.epoch
                log.info("epoch %s", json.dumps({k: v for k, v in metrics.items()
                                                 if isinstance(v, (int, float, str, type(None)))}))
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['train_acc']:.3f}",
                            density=f"{metrics['density']:.3f}")
            bar.update(1)
    except KeyboardInterrupt:
        if main and boundary is not None and boundary != saved_epoch:
            save_checkpoint(pack_tree(trainer.state_dict()), str(ckpt))
        raise
    finally:
        bar.close()

    model = trainer.model_for_eval()
    engine.after_training(model, main)
    if not main:
        return {"run_dir": run_dir, "table": None, "id": None, "skipped": False}
    best = export_state_dict(model)
    _save(best, run_dir / "best.ckpt", ckpt)
    if trainer.masking.masks:                            # sparse run: values + bitmask, same weights
        _save(compress_state_dict(best), run_dir / SPARSE_EXPORT_NAME, ckpt)
    _save({k: v.detach().cpu() for k, v in model.state_dict().items()}, run_dir / "moon_net.ckpt", ckpt)

    result = engine.evaluate(model, settings, run_dir)
    groups = separate_groups(cfg.get("ood_dataset"))  # e.g. noise: its own row, not in farood
    tables = {pp: with_provenance(regroup(table, groups), provenance(engine.name, result.settings[pp],
                                                                     result.searched[pp], "moon_net.ckpt"))
              for pp, table in result.tables.items()}
    combined = write_run_tables(tables, str(run_dir))
    summary = {"engine": engine.name, "seed": settings.seed, "epochs": epochs, "id": result.id_metrics,
               "density": trainer.masking.density(), "skipped_postprocessors": result.skipped}
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, run_dir / "metrics.json")
    if settings.evaluation.plots and result.scores:
        from .evaluation.plots import plot_roc_curves, plot_score_histograms

        plot_score_histograms(result.scores, run_dir / "plots")
        plot_roc_curves(result.scores, run_dir / "plots")
    text = format_results(combined, result)
    log.info("results\n%s", text)
    print(text)
    print(f"results written to {run_dir}", flush=True)
    return {"run_dir": run_dir, "table": combined, "id": result.id_metrics, "skipped": False}


def format_results(table, result: Evaluation) -> str:
    """The table as text, two decimals, with the ID accuracy / ECE line on top."""
    import pandas as pd

    lines = ["ID: " + "  ".join(f"{k} {v:.2f}" for k, v in result.id_metrics.items()) + "  (percent)",
             "FPR@95 with OOD as the positive class"]
    lines += [f"skipped {name}: {reason}" for name, reason in result.skipped.items()]
    from .results import METRIC_COLUMNS

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        lines.append(table[METRIC_COLUMNS].to_string(float_format=lambda v: f"{v:.2f}"))
    return "\n".join(lines)
