"""Per-layer densities for sparse training: ERK and uniform, with exact non-zero counts.

ERK (Evci et al., "Rigging the Lottery", ICML 2020, following Mocanu et al. 2018): layer l gets
density ``eps * sum(shape_l) / prod(shape_l)``; ``eps`` is solved so the non-zeros add up to
``density * total``. A layer whose density would exceed 1 is made dense and ``eps`` is solved again.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

INIT_CHOICES = ("erk", "uniform")


def maskable_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """(name, weight) of every conv and linear weight; biases and norm layers stay dense."""
    out = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            name = f"{module_name}.weight" if module_name else "weight"
            out.append((name, module.weight))
    return out


def erk_densities(shapes: Dict[str, Tuple[int, ...]], density: float) -> Dict[str, float]:
    """ERK densities per layer for a global ``density`` in (0, 1]."""
    _check_density(density)
    numel = {n: _prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    total = sum(numel.values())
    dense: set = set()
    while True:
        budget = density * total - sum(numel[n] for n in dense)
        sparse_mass = sum(raw[n] * numel[n] for n in shapes if n not in dense)
        if sparse_mass <= 0:
            break
        eps = budget / sparse_mass
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    return {n: 1.0 if n in dense else min(1.0, eps * raw[n]) for n in shapes}


def uniform_densities(shapes: Dict[str, Tuple[int, ...]], density: float) -> Dict[str, float]:
    """The same density for every maskable layer."""
    _check_density(density)
    return {n: float(density) for n in shapes}


def layer_counts(model: nn.Module, density: float, init: str = "erk") -> Dict[str, int]:
    """Exact number of non-zero weights per maskable layer (rounded per layer)."""
    if init not in INIT_CHOICES:
        raise ValueError(f"unknown sparse.init {init!r}; valid choices: {', '.join(INIT_CHOICES)}")
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(model)}
    fn = erk_densities if init == "erk" else uniform_densities
    dens = fn(shapes, density)
    return {n: max(1, min(_prod(shapes[n]), round(d * _prod(shapes[n])))) for n, d in dens.items()}


def _prod(shape) -> int:
    return int(torch.Size(shape).numel())


def _check_density(density: float) -> None:
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"sparse.density must be in (0, 1], got {density!r}")
