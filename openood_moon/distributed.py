"""Multi-process and multi-node training: ``torchrun`` (DistributedDataParallel), NCCL on GPUs, gloo on CPU.

Every helper is a no-op in a single process (no process group), so the core reads the same either way.

* :func:`init_from_env` joins the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); a CUDA run takes ``cuda:LOCAL_RANK`` and NCCL,
  a CPU run gloo. OpenOOD's own ``launch`` initialises its group itself; the helpers then use that one.
* Global batch semantics: ``dataset.train.batch_size`` is the *global* batch; each of the W ranks
  loads ``batch_size / W`` items of the same shuffled order (rank r takes items r, r+W, …), and
  DistributedDataParallel averages the gradients, so a step sees the gradient of the mean loss over
  the global batch, as one process would. Exactly so when W divides the training-set size; otherwise
  the sampler repeats up to W-1 items per epoch (as ``DistributedSampler``).
* Lock-step state: RigL grows from the dense gradient, which DDP has all-reduced (whole tensors, masked
  positions included) before the update reads it; SET draws from a generator seeded identically on
  every rank and consumed identically; α's statistic is averaged over the global batch
  (:func:`global_mean`); BatchNorm recalibration sums its statistics over all ranks
  (:func:`sum_over_ranks`). :func:`check_masks_agree` compares a checksum of the masks after every
  topology update and raises :class:`RanksDiverged` on every rank when they differ.
* Rank 0 alone holds the run folder and decides (lock, stale config, resume); :func:`from_rank0` runs
  such a decision there and hands every rank its result — or its error, which every rank then raises.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class RanksDiverged(RuntimeError):
    """The ranks' masks differ: the replicas would train different networks without noticing."""


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_from_env(device: torch.device) -> torch.device:
    """Join ``torchrun``'s process group when launched by it; return this rank's device.

    ``device`` is the configured one: ``cuda`` (any index) becomes ``cuda:LOCAL_RANK`` with NCCL, ``cpu``
    stays with gloo. Without ``torchrun`` (or with a group already initialised) nothing changes.
    """
    if not launched_by_torchrun() or is_distributed():
        return device
    local_rank, size = int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        if device.index is not None and size > 1:
            raise ConfigError(f"device {str(device)!r} names one GPU, but torchrun starts {size} processes; use "
                              "device auto or cuda (each process takes cuda:LOCAL_RANK)")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started local rank {local_rank} but this node has "
                              f"{torch.cuda.device_count()} GPU(s): --nproc_per_node must not exceed the GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group :func:`init_from_env` joined (nothing without one)."""
    if is_distributed() and launched_by_torchrun():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in DistributedDataParallel when several processes train it (masks and vote keep working
    on the unwrapped module, :func:`openood_moon.netutils.unwrap`)."""
    if world_size() == 1:
        return net
    net = net.to(device)
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def per_rank_batch(global_batch: int) -> int:
    """Items each rank loads per step: ``global_batch / world_size`` (ConfigError when W does not divide it)."""
    size = world_size()
    if global_batch % size:
        raise ConfigError(f"dataset.train.batch_size {global_batch} is the global batch and must be divisible "
                          f"by the number of processes ({size}); e.g. {global_batch - global_batch % size or size}")
    return global_batch // size


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (a new tensor; ``tensor`` itself in one process)."""
    if world_size() == 1:
        return tensor
    out = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out)
    return out.to(tensor.device)


def global_mean(value, count: int):
    """Mean over all ranks of per-rank means ``value`` over ``count`` items each: ``Σ value·count / Σ count``
    (float64), so unequal batches weigh by their size. ``value`` as it is in one process."""
    if world_size() == 1:
        return value
    value64 = torch.as_tensor(value).detach().to(torch.float64)      # a tensor stays on its device
    packed = torch.stack([value64 * count, torch.full_like(value64, float(count))])
    total = sum_over_ranks(packed)
    mean = total[0] / total[1]
    return mean.to(value.dtype).to(value.device) if torch.is_tensor(value) else float(mean)


def sums_over_ranks(values: Sequence[float]) -> List[float]:
    """Plain numbers summed over all ranks (epoch metrics); the numbers themselves in one process."""
    if world_size() == 1:
        return list(values)
    return sum_over_ranks(torch.tensor(list(values), dtype=torch.float64)).tolist()


# a multiplier coprime to the modulus: positions hash to well-spread residues
_HASH_MULTIPLIER, _HASH_MODULUS = 2654435761, 1_000_000_007


def mask_checksum(masks: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Three int64 numbers of the masks in their order: active count, Σ position and Σ hash(position)
    over the active positions of all masks laid end to end (``hash(i) = i·2654435761 mod 1e9+7``).
    Moving one active weight changes the second and almost surely the third."""
    total = torch.zeros(3, dtype=torch.int64)
    offset = 0
    for mask in masks.values():
        flat = mask.reshape(-1).nonzero().squeeze(1).to("cpu", torch.int64) + offset
        total += torch.stack([torch.tensor(flat.numel()), flat.sum(),
                              (flat * _HASH_MULTIPLIER % _HASH_MODULUS).sum()])
        offset += mask.numel()
    return total


def check_masks_agree(masks: Dict[str, torch.Tensor], step: int) -> None:
    """Compare :func:`mask_checksum` across ranks (one all-gather of three numbers per rank); every rank
    raises :class:`RanksDiverged` naming the step and each rank's checksum when any differs."""
    if world_size() == 1 or not masks:
        return
    mine = mask_checksum(masks).to(_comm_device())
    gathered = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(gathered, mine)
    sums = [tuple(int(v) for v in g.cpu()) for g in gathered]
    if len(set(sums)) > 1:
        shown = "; ".join(f"rank {r}: {s}" for r, s in enumerate(sums))
        raise RanksDiverged(f"the masks differ across ranks after the topology update at step {step} "
                            f"(active count, sum of positions, sum of position hashes: {shown}); the replicas "
                            "would train different networks. Stopped every rank.")


def from_rank0(fn: Callable[[], Any], share: bool = True) -> Any:
    """Run ``fn`` on rank 0 only (run-folder decisions: lock, stale config, checkpoint read).

    Every rank then returns ``fn``'s result (``None`` on other ranks when ``share`` is false) — or, when
    ``fn`` raised, raises it: rank 0 its own exception, the others one of the same type and message (a
    :class:`ConfigError` stays a ConfigError, so every rank's CLI exits 2 with it). In one process: ``fn()``.
    """
    if world_size() == 1:
        return fn()
    payload: List[Any] = [None]
    error = None
    if rank() == 0:
        try:
            result = fn()
            payload = [("ok", result if share else None)]
        except Exception as err:  # handed to every rank below, then raised everywhere
            error = err
            payload = [("error", type(err), str(err))]
    dist.broadcast_object_list(payload, src=0, device=_comm_device())
    if error is not None:
        raise error
    if payload[0][0] == "error":
        _, kind, message = payload[0]
        try:
            raised = kind(message)
        except Exception:  # a type that does not take one message
            raised = RuntimeError(f"rank 0: {kind.__name__}: {message}")
        raise raised
    return result if rank() == 0 else payload[0][1]
