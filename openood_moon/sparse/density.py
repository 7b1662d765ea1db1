"""Per-layer densities for sparse training: ERK and uniform, with exact non-zero counts.

ERK (Evci et al., "Rigging the Lottery", ICML 2020, following Mocanu et al. 2018), as RigL's
``get_sparsities_erdos_renyi`` and the released MOON code (``sparselearning/funcs/init_scheme.py``)
compute it: layer l gets density ``eps · sum(shape_l) / prod(shape_l)`` with
``eps = rhs / sum_l(sum(shape_l))`` over the non-dense layers, where
``rhs = sum_sparse int(n_l·d) - sum_dense int(n_l·(1-d))``. While the largest density exceeds 1, the
layer(s) with the largest raw density are made dense, one value at a time, and ``eps`` is solved again.

The density budget is counted over *budget layers*. Every conv/linear weight is one, except the
classifier: the released code has one ``Linear(F, K+1)``, so here MoonNet's ``fc`` (K x F) and
``fc_unknown`` (1 x F) are budgeted as ONE (K+1) x F layer (one density, one exact count, one
drop/grow budget). A plain backbone (an OpenOOD-contract network with a K-way ``fc`` and no unknown
head) is budgeted with the same (K+1) x F classifier shape, the unknown row simply absent: ERK then
gives every backbone layer the same density and count with or without MOON, so a baseline and a MOON
net built from the same seed start from the same backbone masks, and the classifier has the same
density in both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from torch import nn

INIT_CHOICES = ("erk", "uniform")


@dataclass(frozen=True)
class BudgetLayer:
    """One layer of the density budget: ``members`` (parameter names) stacked along dim 0.

    ``shape`` is the shape ERK sees; ``numel`` the number of weights actually present (a plain
    backbone's classifier is budgeted as K+1 rows but has K).
    """
    name: str
    members: Tuple[str, ...]
    shape: Tuple[int, ...]
    numel: int


def maskable_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """(name, weight) of every conv and linear weight; biases and norm layers stay dense."""
    out = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            name = f"{module_name}.weight" if module_name else "weight"
            out.append((name, module.weight))
    return out


def budget_layers(model: nn.Module) -> List[BudgetLayer]:
    """The budget layers of ``model``: its conv/linear weights, the classifier (K+1 rows) last."""
    params = maskable_parameters(model)
    names = {id(m): f"{n}.weight" if n else "weight" for n, m in model.named_modules()}
    classifier = _classifier_members(model, names)
    layers = [BudgetLayer(n, (n,), tuple(p.shape), p.numel()) for n, p in params
              if n not in (classifier or ())]
    if classifier:
        weights = dict(params)
        fc = weights[classifier[0]]
        rows, features = fc.shape[0] + 1, fc.shape[1]            # K classes + the unknown row
        numel = sum(weights[n].numel() for n in classifier)
        layers.append(BudgetLayer(classifier[0], classifier, (rows, features), numel))
    return layers


def _classifier_members(model: nn.Module, names: Dict[int, str]) -> Optional[Tuple[str, ...]]:
    """``(fc, fc_unknown)`` of a MoonNet, ``(fc,)`` of a plain contract backbone, else None."""
    fc = model.get_fc_layer() if hasattr(model, "get_fc_layer") else getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear) or id(fc) not in names:
        return None
    unknown = getattr(model, "fc_unknown", None)
    if isinstance(unknown, nn.Linear) and id(unknown) in names:
        if unknown.in_features != fc.in_features or unknown.out_features != 1:
            raise ValueError(f"fc_unknown must be Linear({fc.in_features}, 1), got "
                             f"Linear({unknown.in_features}, {unknown.out_features})")
        return names[id(fc)], names[id(unknown)]
    return (names[id(fc)],)


def erk_densities(shapes: Dict[str, Tuple[int, ...]], density: float) -> Dict[str, float]:
    """ERK densities per layer for a global ``density`` in (0, 1] (the module docstring's formula)."""
    _check_density(density)
    numel = {n: _prod(s) for n, s in shapes.items()}
    dense: set = set()
    while True:
        rhs, divisor, raw = 0, 0.0, {}
        for name, shape in shapes.items():
            if name in dense:
                rhs -= int(numel[name] * (1 - density))
            else:
                rhs += int(numel[name] * density)
                raw[name] = sum(shape) / numel[name]
                divisor += raw[name] * numel[name]
        if not raw:
            break
        eps = rhs / divisor
        largest = max(raw.values())
        if largest * eps <= 1:
            break
        dense |= {n for n, r in raw.items() if r == largest}
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def uniform_densities(shapes: Dict[str, Tuple[int, ...]], density: float) -> Dict[str, float]:
    """The same density for every maskable layer."""
    _check_density(density)
    return {n: float(density) for n in shapes}


def layer_densities(model: nn.Module, density: float, init: str = "erk") -> Dict[str, float]:
    """Density of every budget layer of ``model`` (keyed by ``BudgetLayer.name``)."""
    if init not in INIT_CHOICES:
        raise ValueError(f"unknown sparse.init {init!r}; valid choices: {', '.join(INIT_CHOICES)}")
    shapes = {layer.name: layer.shape for layer in budget_layers(model)}
    fn = erk_densities if init == "erk" else uniform_densities
    return fn(shapes, density)


def layer_counts(model: nn.Module, density: float, init: str = "erk") -> Dict[str, int]:
    """Exact number of non-zero weights per budget layer: ``round(density_l · numel_l)``, at least 1.

    Keyed by ``BudgetLayer.name``; a MoonNet's classifier count (key: its ``fc`` weight) covers the
    K+1 rows of ``fc`` and ``fc_unknown`` together.
    """
    dens = layer_densities(model, density, init)
    return {layer.name: max(1, min(layer.numel, round(dens[layer.name] * layer.numel)))
            for layer in budget_layers(model)}


def _prod(shape) -> int:
    return int(math.prod(shape))


def _check_density(density: float) -> None:
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"sparse.density must be in (0, 1], got {density!r}")
