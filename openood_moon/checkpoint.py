"""Atomic, code-free checkpoints.

Written to a temporary file in the same folder, flushed to disk, then renamed over the target, so a
crash never leaves a half-written checkpoint. Read with ``torch.load(weights_only=True)``: only
tensors and plain Python values load, so a checkpoint from a stranger cannot run code.
"""
import os
import tempfile
from typing import Any

import torch


def save_checkpoint(obj: Any, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, map_location="cpu") -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)
