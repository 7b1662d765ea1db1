"""Compressed sparse state_dicts: a packed bitmask plus the non-zero values of every mostly-zero tensor.

A sparse run's weights are mostly exact zeros (``best.ckpt`` of a 90 %-sparse ResNet-18 stores 90 %
zeros in fp32). Here a tensor ``t`` with ``n`` entries is stored as

* ``bits``: ``ceil(n/8)`` bytes, bit ``i`` set when entry ``i`` is not all-zero *bits* (the entry
  viewed as an integer is non-zero, so ``-0.0`` and NaN count as values and come back exactly);
  most significant bit first, as ``numpy.packbits``;
* ``values``: the flagged entries in order (``t.flatten()[flags]``);

when that is at least a quarter smaller than the dense tensor; a boolean tensor (a mask) is stored as
its bits alone; every other tensor and every plain value is kept as it is. Unpacking gives back the
same dtype, shape and bytes: ``torch.equal`` and equal bit patterns (``-0.0`` stays ``-0.0``).

``half=True`` (export only) stores the values of floating-point weights (tensors of two or more
dimensions whose finite values fit in float16) as float16; loading gives ``t.half().to(t.dtype)``
exactly, and biases, norm parameters and running statistics stay at full precision.

Two uses:

* ``best.sparse.pt`` next to ``best.ckpt`` in every sparse run (:func:`save_sparse_state_dict`,
  :func:`load_sparse_state_dict`; :func:`read_state_dict` reads either form). The file is a dict
  ``{'format': FORMAT, 'version': 1, 'half': bool, 'state_dict': {name: tensor or packed entry}}``
  of tensors and plain values only, so ``torch.load(weights_only=True)`` reads it; a foreign or
  truncated file raises :class:`~openood_moon.config.ConfigError` saying which.
* ``checkpoint.pt``: :func:`pack_tree` packs every tensor of a nested training state (weights,
  momentum, the vote's mean, the averaged model, masks as bits), :func:`unpack_tree` restores it;
  :func:`openood_moon.checkpoint.load_checkpoint` unpacks, so a resume is bitwise exact.

Command line: ``python -m openood_moon.sparse_export best.ckpt best.sparse.pt [--half]`` converts a
plain state_dict; ``--check`` loads a file of either form and prints its tensors' densities.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Dict, Mapping

import numpy as np
import torch

from .config import ConfigError

FORMAT = "openood_moon.sparse_state_dict"
VERSION = 1
SPARSE_EXPORT_NAME = "best.sparse.pt"
PACKED = "__openood_moon_packed__"          # marks a packed tensor inside a (nested) state
MIN_NUMEL = 256                              # smaller tensors are never worth packing
SAVING = 0.75                                # pack only when the packed form is <= 75 % of the dense one
_INT_OF = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_DTYPES = {str(d).replace("torch.", ""): d for d in
           (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
            torch.int16, torch.int32, torch.int64, torch.bool)}


# ------------------------------------------------------------------ bits
def pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """Boolean tensor -> ``ceil(n/8)`` uint8, most significant bit first (``numpy.packbits``)."""
    return torch.from_numpy(np.packbits(flags.detach().reshape(-1).cpu().numpy()))


def unpack_bits(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` flags as a flat boolean tensor."""
    return torch.from_numpy(np.unpackbits(bits.reshape(-1).cpu().numpy(), count=n).view(bool))


def _int_view(t: torch.Tensor) -> np.ndarray:
    """The entries of a CPU tensor as unsigned/signed integers of the same width (a flat numpy view)."""
    flat = t.detach().reshape(-1)
    if t.dtype != torch.bool and (t.is_floating_point() or t.is_complex()):
        flat = flat.view(_INT_OF[t.element_size()])
    return flat.numpy()


def nonzero_bits(t: torch.Tensor) -> torch.Tensor:
    """Flat flags of the entries whose bit pattern is not all zeros (``-0.0`` and NaN included)."""
    return torch.from_numpy(_int_view(t.detach().cpu()) != 0)


# ------------------------------------------------------------------ one tensor
def _half_ok(t: torch.Tensor) -> bool:
    """A weight (>= 2 dims) of a wider float type whose finite values stay finite in float16."""
    if not t.is_floating_point() or t.dim() < 2 or t.element_size() <= 2:
        return False
    return bool(torch.equal(torch.isfinite(t), torch.isfinite(t.to(torch.float16))))


def pack_tensor(t: torch.Tensor, half: bool = False) -> Any:
    """A packed entry (dict of tensors and plain values) for ``t``, or ``t`` itself when packing
    does not pay (see the module docstring)."""
    if t.layout != torch.strided or t.is_complex() or t.numel() < MIN_NUMEL and t.dtype != torch.bool:
        return t
    shape, dtype = list(t.shape), str(t.dtype).replace("torch.", "")
    if t.dtype == torch.bool:
        if t.numel() < 64:
            return t
        return {PACKED: VERSION, "layout": "bits", "shape": shape, "dtype": dtype, "bits": pack_bits(t)}
    lowered = half and _half_ok(t)
    stored = t.detach().cpu()
    stored = stored.to(torch.float16) if lowered else stored
    ints = _int_view(stored)
    flags = ints != 0
    n, nnz = t.numel(), int(np.count_nonzero(flags))
    if nnz * stored.element_size() + math.ceil(n / 8) > SAVING * n * t.element_size():
        return {PACKED: VERSION, "layout": "dense", "shape": shape, "dtype": dtype,
                "values": stored.clone()} if lowered else t
    values = torch.from_numpy(ints[flags])                   # the integer view of the kept entries
    return {PACKED: VERSION, "layout": "sparse", "shape": shape, "dtype": dtype,
            "bits": torch.from_numpy(np.packbits(flags)), "values": values.view(stored.dtype)}


def is_packed(obj: Any) -> bool:
    return isinstance(obj, Mapping) and PACKED in obj


def unpack_tensor(entry: Mapping[str, Any]) -> torch.Tensor:
    """The dense tensor of a packed entry; ``ValueError`` when the entry is malformed or cut."""
    if entry.get(PACKED) != VERSION:
        raise ValueError(f"packed tensor of version {entry.get(PACKED)!r}; this openood_moon reads {VERSION}")
    layout, dtype = entry.get("layout"), _DTYPES.get(entry.get("dtype"))
    shape = entry.get("shape")
    if dtype is None or not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and s >= 0
                                                                         for s in shape):
        raise ValueError(f"packed tensor with dtype {entry.get('dtype')!r} and shape {shape!r}")
    n = math.prod(shape)
    if layout == "dense":
        values = entry.get("values")
        if not torch.is_tensor(values) or values.numel() != n:
            raise ValueError(f"dense entry of shape {shape} holds {getattr(values, 'numel', lambda: '?')()} values")
        return values.to(dtype).reshape(shape)
    bits = entry.get("bits")
    if layout not in ("bits", "sparse") or not torch.is_tensor(bits) or bits.dtype != torch.uint8 \
            or bits.numel() != math.ceil(n / 8):
        raise ValueError(f"packed tensor of layout {layout!r} and shape {shape} has "
                         f"{bits.numel() if torch.is_tensor(bits) else 'no'} mask bytes, "
                         f"expected {math.ceil(n / 8)}")
    flags = unpack_bits(bits, n)
    if layout == "bits":
        return flags.reshape(shape)
    values = entry.get("values")
    nnz = int(flags.sum())
    if not torch.is_tensor(values) or values.dim() != 1 or values.numel() != nnz:
        raise ValueError(f"packed tensor of shape {shape} flags {nnz} entries but holds "
                         f"{values.numel() if torch.is_tensor(values) else 'no'} values")
    out = torch.zeros(n, dtype=dtype)
    out.masked_scatter_(flags, values.to(dtype))
    return out.reshape(shape)


# ------------------------------------------------------------------ nested states (checkpoint.pt)
def pack_tree(obj: Any, half: bool = False) -> Any:
    """Every tensor of a nested dict/list/tuple packed with :func:`pack_tensor`; other values kept."""
    if torch.is_tensor(obj):
        return pack_tensor(obj, half)
    if isinstance(obj, dict):
        return _like(obj, ((k, pack_tree(v, half)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return type(obj)(pack_tree(v, half) for v in obj)
    return obj


def _like(mapping: dict, items) -> dict:
    """A dict of ``mapping``'s type with ``items``, keeping a state_dict's ``_metadata`` (module versions)."""
    out = type(mapping)(items)
    if hasattr(mapping, "_metadata"):
        out._metadata = mapping._metadata
    return out


def unpack_tree(obj: Any) -> Any:
    """Inverse of :func:`pack_tree` (a state without packed entries comes back unchanged)."""
    if is_packed(obj):
        return unpack_tensor(obj)
    if isinstance(obj, dict):
        return _like(obj, ((k, unpack_tree(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return type(obj)(unpack_tree(v) for v in obj)
    return obj


# ------------------------------------------------------------------ state_dict files
def compress_state_dict(state_dict: Mapping[str, torch.Tensor], half: bool = False) -> Dict[str, Any]:
    """The object :func:`save_sparse_state_dict` writes (``torch.save`` it anywhere)."""
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise TypeError("compress_state_dict expects a mapping of names to tensors (a state_dict)")
    return {"format": FORMAT, "version": VERSION, "half": bool(half),
            "state_dict": {k: pack_tensor(v.detach(), half) for k, v in state_dict.items()}}


def is_sparse_export(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def decompress_state_dict(obj: Any, source: str = "the object") -> Dict[str, torch.Tensor]:
    """The dense state_dict of :func:`compress_state_dict`'s output; ConfigError when it is not one."""
    if not is_sparse_export(obj):
        keys = ", ".join(map(str, list(obj)[:4])) if isinstance(obj, Mapping) else type(obj).__name__
        raise ConfigError(f"{source} is not an openood_moon sparse export (it holds {keys or 'nothing'}; "
                          f"expected format {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise ConfigError(f"{source} is a sparse export of version {obj.get('version')!r}; this "
                          f"openood_moon reads version {VERSION}")
    state = obj.get("state_dict")
    if not isinstance(state, Mapping):
        raise ConfigError(f"{source} is a sparse export without a state_dict")
    out = {}
    for name, entry in state.items():
        try:
            out[name] = unpack_tensor(entry) if is_packed(entry) else entry
        except ValueError as err:
            raise ConfigError(f"{source}: tensor {name!r} is damaged ({err})") from None
        if not torch.is_tensor(out[name]):
            raise ConfigError(f"{source}: entry {name!r} is not a tensor")
    return out


def save_sparse_state_dict(state_dict: Mapping[str, torch.Tensor], path: str, half: bool = False) -> None:
    """Write ``state_dict`` compressed to ``path`` (atomically, as every checkpoint)."""
    from .checkpoint import save_checkpoint

    save_checkpoint(compress_state_dict(state_dict, half), str(path))


def load_sparse_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The exact dense state_dict saved by :func:`save_sparse_state_dict` (CPU tensors)."""
    from .checkpoint import load_checkpoint

    return decompress_state_dict(load_checkpoint(str(path)), str(path))


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """A state_dict from either a plain ``torch.save``d one (``best.ckpt``) or a sparse export."""
    from .checkpoint import load_checkpoint

    obj = load_checkpoint(str(path))
    if is_sparse_export(obj):
        return decompress_state_dict(obj, str(path))
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError(f"{path} is neither a state_dict nor an openood_moon sparse export")
    return dict(obj)


def file_size(path: str) -> int:
    return os.path.getsize(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="a plain state_dict file (best.ckpt) or, with --check, either form")
    p.add_argument("target", nargs="?", help="the compressed file to write (e.g. best.sparse.pt)")
    p.add_argument("--half", action="store_true", help="store weight values as float16")
    p.add_argument("--check", action="store_true", help="load source and print each tensor's density")
    args = p.parse_args(argv)
    try:
        state = read_state_dict(args.source)
        if args.check or not args.target:
            for name, t in state.items():
                print(f"{name}\t{tuple(t.shape)}\t{str(t.dtype).replace('torch.', '')}\t"
                      f"density {float(nonzero_bits(t).float().mean()) if t.numel() else 1.0:.4f}")
            return 0
        save_sparse_state_dict(state, args.target, half=args.half)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.source} ({file_size(args.source)} bytes) -> {args.target} ({file_size(args.target)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
