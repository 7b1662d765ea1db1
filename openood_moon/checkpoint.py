"""Atomic, code-free checkpoints, and the checks that a checkpoint belongs to the run that loads it.

Written to a temporary file (``.tmp-*.pt``) in the same folder, flushed to disk, renamed over the
target, then the folder entry is synced: a crash, a ``kill -9`` or a full disk never leaves a
half-written checkpoint under the target's name, and the previous one stays loadable. A failed
write raises the ``OSError`` the file system gave (``ENOSPC``: disk full), not torch's wrapper of it.
Read with ``torch.load(weights_only=True)``: only tensors and plain Python values load, so a
checkpoint from a stranger cannot run code; a truncated, foreign or code-carrying file raises
:class:`ConfigError` saying which. Tensors packed by :func:`~.sparse_export.pack_tree` (the bitmask
layout of ``checkpoint.pt``) are unpacked on load, bitwise exactly.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, Dict, List, Mapping, Optional

import torch

from .config import ConfigError
from .sparse_export import unpack_tree

TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".pt"
TRAINING_KEYS = ("net", "optimizer", "masking", "epoch", "step", "settings")


class _Writer:
    """File wrapper that keeps the first ``OSError`` of ``write`` (torch turns it into a RuntimeError)."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(obj: Any, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the rename durable (POSIX: fsync the directory); skipped where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_partial_writes(folder) -> List[str]:
    """Delete the temporary files a killed :func:`save_checkpoint` left in ``folder``; return their names.
    Call it only while holding the folder (:class:`~openood_moon.run_lock.RunLock`)."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX) and n.endswith(TEMP_SUFFIX)]
    for name in names:
        os.remove(os.path.join(folder, name))
    return names


def load_checkpoint(path: str, map_location="cpu") -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():             # bytes that are no pickle at all
            raise ConfigError(f"{path} is truncated or not a torch checkpoint ({_detail(err)})") from None
        raise ConfigError(f"{path} holds objects other than tensors and plain Python values; refused, as "
                          "checkpoints are loaded weights only (torch.load(weights_only=True))") from None
    except PermissionError:
        raise
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, OSError) as err:  # torch's reader
        # says EINVAL (OSError) for a cut zip archive, IndexError/KeyError for other bytes
        raise ConfigError(f"{path} is truncated or not a torch checkpoint ({_detail(err)})") from None
    try:
        return unpack_tree(obj)                  # tensors packed by pack_tree (checkpoint.pt), else as saved
    except ValueError as err:
        raise ConfigError(f"{path} holds a damaged packed tensor ({err})") from None


def _detail(err: BaseException) -> str:
    """The error's telling line: torch's own explanation after its boilerplate, else the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(("Unsupported", "Trying to load"))]
    return f"{type(err).__name__}: {(telling or lines or ['unexpected end of file'])[0]}"


def tensor_mismatch(found: Mapping[str, Any], expected: Mapping[str, torch.Tensor], what: str,
                    limit: int = 4) -> List[str]:
    """What differs between two name -> tensor mappings: missing and unexpected names, other shapes."""
    if not isinstance(found, Mapping) or not all(isinstance(v, torch.Tensor) for v in found.values()):
        return [f"{what}: not a mapping of names to tensors"]
    out = []
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k].shape)} in the checkpoint vs {tuple(expected[k].shape)} here"
              for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    for label, names in (("missing", missing), ("unexpected", extra), ("other shape", shapes)):
        if names:
            out.append(f"{what}: {label} {', '.join(names[:limit])}" + (" ..." if len(names) > limit else ""))
    return out


def _flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix.rstrip("."): d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) and v else {f"{prefix}{k}": v})
    return out


def training_checkpoint_mismatch(saved: Any, expected: Optional[Mapping[str, Any]] = None,
                                 settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Why ``saved`` cannot resume this run ([] when it can): not a training checkpoint, trained with
    other settings (``settings``: this run's ``TrainSettings.training_dict()``), or a network or masks
    of other names or shapes than ``expected`` (a fresh trainer's ``state_dict()``)."""
    if not isinstance(saved, Mapping) or any(k not in saved for k in TRAINING_KEYS):
        keys = ", ".join(map(str, list(saved)[:4])) if isinstance(saved, Mapping) else type(saved).__name__
        return [f"not a training checkpoint (it holds {keys or 'nothing'}; a training checkpoint holds "
                f"{', '.join(TRAINING_KEYS)}: best.ckpt and moon_net.ckpt hold weights only)"]
    problems = []
    if settings is not None and not isinstance(saved["settings"], Mapping):
        problems.append("its settings are unreadable")
    elif settings is not None:
        mine = _flat(settings)
        theirs = _flat({k: v for k, v in saved["settings"].items() if k != "evaluation"})
        differ = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k, "<absent>") != theirs.get(k, "<absent>")]
        if differ:
            problems.append("trained with other settings: " + ", ".join(
                f"{k} ({theirs.get(k, '<absent>')!r} in the checkpoint vs {mine.get(k, '<absent>')!r})"
                for k in differ[:6]) + (" ..." if len(differ) > 6 else ""))
    if expected is not None:
        problems += tensor_mismatch(saved["net"], expected["net"], "network (other architecture or K?)")
        masks = saved["masking"].get("masks") if isinstance(saved["masking"], Mapping) else None
        problems += tensor_mismatch(masks, expected["masking"]["masks"], "masks")
        if not problems and expected["masking"]["masks"]:
            found = sum(int(m.count_nonzero()) for m in masks.values())
            wanted = sum(int(m.count_nonzero()) for m in expected["masking"]["masks"].values())
            total = sum(m.numel() for m in masks.values())
            if any(m.dtype != torch.bool for m in masks.values()) or abs(found - wanted) > 0.01 * total:
                problems.append(f"masks: density {found / total:.4f} in the checkpoint vs {wanted / total:.4f} "
                                "for this run's sparse.density (or masks not boolean)")
    return problems
