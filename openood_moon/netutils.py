"""Small helpers about networks and batches, shared by the trainer, both engines and evaluation."""
from __future__ import annotations

from typing import Any, Mapping, Tuple

import torch
from torch import nn


def unwrap(net: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel wrappers (masks, vote, export)."""
    while isinstance(getattr(net, "module", None), nn.Module):
        net = net.module
    return net


def fc_layer(net: nn.Module) -> nn.Linear:
    """The K-way classifier of an OpenOOD-contract network (``get_fc_layer()``, else ``.fc``)."""
    net = unwrap(net)
    return net.get_fc_layer() if hasattr(net, "get_fc_layer") else net.fc


def has_unknown_head(net: nn.Module) -> bool:
    """Whether ``net`` is a MOON network: it has ``fc_unknown`` and accepts ``return_unknown=True``."""
    return getattr(unwrap(net), "fc_unknown", None) is not None


def backbone_of(net: nn.Module) -> nn.Module:
    """The plain K-way backbone of a MoonNet (no unknown head); any other net as it is."""
    net = unwrap(net)
    return getattr(net, "backbone", net) if has_unknown_head(net) else net


def unpack_batch(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from an OpenOOD dict batch ``{'data', 'label'}`` or an ``(x, y)`` tuple."""
    if isinstance(batch, Mapping):
        return batch["data"], batch["label"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(f"a batch must be a dict with 'data' and 'label' or an (x, y) tuple, "
                    f"got {type(batch).__name__}")


CHANNELS_LAST_DEVICES = ("cpu",)   # measured faster there (docs/benchmarks.md); no GPU measured yet


def channels_last_on(device) -> bool:
    """Whether image batches are made channels-last (NHWC strides) before a forward pass on ``device``.
    Only the batch changes: parameters, masks and gradients stay in the default layout; the convolutions
    then run channels-last (the same values up to float summation order)."""
    return torch.device(device).type in CHANNELS_LAST_DEVICES


def model_input(x: torch.Tensor, device) -> torch.Tensor:
    """``x`` on ``device``; a 4-D image batch channels-last where :func:`channels_last_on` (training
    steps, the vote's BatchNorm pass and evaluation forward passes alike)."""
    x = x.to(device)
    if x.dim() == 4 and channels_last_on(x.device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def device_of(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter (CPU for a net without parameters)."""
    param = next(iter(net.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def plain_dict(node: Any) -> Any:
    """A nested OpenOOD ``Config`` (a dict subclass) as plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): plain_dict(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain_dict(v) for v in node]
    return node
