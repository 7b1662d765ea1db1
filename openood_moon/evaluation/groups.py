"""OOD sets reported as a group of their own instead of inside the far-OOD mean.

``ood_dataset.separate_groups: {noise: [noise]}`` (configs/datasets/fmnist6/fmnist6_ood.yml): the
named far-OOD sets are evaluated as before (each keeps its own row), but the ``farood`` row becomes
the mean over the other far sets only, and a row ``<group>ood`` (``noiseood``) holds the mean over
the group's sets. Both engines evaluate far sets and average them the same way (the mean of the
per-set metrics, as OpenOOD's Evaluator), so recomputing the two means from the per-set rows gives
what the engines would have printed for those set lists.
"""
from __future__ import annotations

from typing import Any, Dict, List

import pandas as pd

from ..config import ConfigError

RESERVED = ("near", "far")


def separate_groups(ood_dataset: Any) -> Dict[str, List[str]]:
    """``ood_dataset.separate_groups`` checked: group name -> far-OOD set names ({} when absent).

    Each set must be one of ``ood_dataset.farood.datasets`` and in one group only, and at least one
    far set must stay in ``farood``."""
    groups = (ood_dataset or {}).get("separate_groups") if isinstance(ood_dataset, dict) else None
    if not groups:
        return {}
    if not isinstance(groups, dict):
        raise ConfigError(f"ood_dataset.separate_groups must map group names to lists of far-OOD sets, "
                          f"e.g. {{noise: [noise]}}, got {groups!r}")
    far = list(((ood_dataset.get("farood") or {}).get("datasets")) or [])
    seen: Dict[str, str] = {}
    for group, sets in groups.items():
        if not isinstance(group, str) or not group or group in RESERVED:
            raise ConfigError(f"ood_dataset.separate_groups: group name {group!r} must be a string other than "
                              f"{' and '.join(RESERVED)}")
        if not isinstance(sets, list) or not sets:
            raise ConfigError(f"ood_dataset.separate_groups.{group} must be a non-empty list of far-OOD sets, "
                              f"got {sets!r}")
        for name in sets:
            if name not in far:
                raise ConfigError(f"ood_dataset.separate_groups.{group}: {name!r} is not a far-OOD set; valid "
                                  f"choices (ood_dataset.farood.datasets): {', '.join(map(str, far))}")
            if name in seen:
                raise ConfigError(f"ood_dataset.separate_groups: {name!r} is in groups {seen[name]!r} and {group!r}")
            seen[name] = group
    if not [name for name in far if name not in seen]:
        raise ConfigError("ood_dataset.separate_groups takes every far-OOD set out of farood; keep at least one")
    return {group: list(sets) for group, sets in groups.items()}


def regroup(table: pd.DataFrame, groups: Dict[str, List[str]]) -> pd.DataFrame:
    """One postprocessor's table (rows: OOD sets, ``nearood``, ``farood``; numeric metric columns)
    with ``farood`` recomputed without the grouped sets and one ``<group>ood`` row per group after it."""
    if not groups or "farood" not in table.index:
        return table
    grouped = {name for sets in groups.values() for name in sets}
    rows = list(table.index)
    far_sets = [name for name in rows[rows.index("nearood") + 1 if "nearood" in rows else 0:rows.index("farood")]
                if name not in grouped]
    out = table.copy()
    out.loc["farood"] = table.loc[far_sets].mean(numeric_only=True)
    extra = pd.DataFrame([table.loc[sets].mean(numeric_only=True) for sets in groups.values()],
                         index=[f"{group}ood" for group in groups], columns=table.columns)
    return pd.concat([out, extra])
