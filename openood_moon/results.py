"""Results files in OpenOOD's layout, with provenance on every row.

``<root>/s<seed>/ood.csv`` (all postprocessors), ``<root>/s<seed>/ood/<pp>.csv`` (one per postprocessor,
as OpenOOD's evaluator tables) and ``<root>/ood/<pp>.csv`` ("mean ± std" over every ``<root>/s*`` run, as
OpenOOD's ``scripts/eval_ood.py --save-csv``). Each row also states what produced it: the postprocessor
settings, whether they came from a parameter search, the checkpoint evaluated, the engine, and the
package / OpenOOD versions.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
PROVENANCE_COLUMNS = ["postprocessor_settings", "searched", "checkpoint", "engine", "openood_moon", "backend"]


def eval_root(run_dir: str) -> str:
    """``<root>`` of ``<root>/s<seed>`` (eval_ood.py's layout); the run folder itself otherwise."""
    run_dir = os.path.normpath(str(run_dir))
    return os.path.dirname(run_dir) if re.fullmatch(r"s\d+", os.path.basename(run_dir)) else run_dir


def backend_version(engine: str) -> str:
    """``openood <version> (<commit or install source>)`` for the OpenOOD engine, ``pytorch-ood <version>``
    for the standalone one."""
    from importlib import metadata

    name = "openood" if engine == "openood" else "pytorch-ood"
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"
    source = ""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        commit = (direct.get("vcs_info") or {}).get("commit_id")
        source = f"commit {commit[:7]}" if commit else os.path.basename(direct.get("url", ""))
    except (ValueError, TypeError):
        pass
    return f"{name} {dist.version}" + (f" ({source})" if source else "")


def provenance(engine: str, settings: str, searched: bool, checkpoint: str) -> Dict[str, object]:
    from . import __version__

    return {"postprocessor_settings": settings, "searched": bool(searched), "checkpoint": checkpoint,
            "engine": engine, "openood_moon": __version__, "backend": backend_version(engine)}


def with_provenance(table: pd.DataFrame, info: Dict[str, object]) -> pd.DataFrame:
    """``table`` with the provenance columns appended (same value on every row)."""
    out = table.copy()
    for key in PROVENANCE_COLUMNS:
        out[key] = info[key]
    return out


def mean_std_table(tables: List[pd.DataFrame]) -> pd.DataFrame:
    """eval_ood.py's cells: "mean ± std" (2 decimals, population std) of the metric columns over equally
    shaped tables; provenance columns list each distinct value (joined by " | ")."""
    stack = np.stack([t[METRIC_COLUMNS].to_numpy(dtype=float) for t in tables])
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    cells = [[f"{m:.2f} \u00B1 {s:.2f}" for m, s in zip(mr, sr)] for mr, sr in zip(mean, std)]
    out = pd.DataFrame(cells, index=tables[0].index, columns=METRIC_COLUMNS)
    for key in PROVENANCE_COLUMNS:
        if all(key in t.columns for t in tables):
            out[key] = [" | ".join(dict.fromkeys(str(t[key].iloc[i]) for t in tables))
                        for i in range(len(out))]
    return out


def write_csv(table: pd.DataFrame, path: str) -> None:
    """Write atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    table.to_csv(tmp)
    os.replace(tmp, path)


def aggregate_seeds(root: str, pp: str) -> Optional[pd.DataFrame]:
    """"mean ± std" over ``<root>/s*/ood/<pp>.csv``."""
    paths = sorted(glob.glob(os.path.join(root, "s*", "ood", f"{pp}.csv")))
    tables = [pd.read_csv(p, index_col=0) for p in paths]
    return mean_std_table(tables) if tables else None


def write_run_tables(tables: Dict[str, pd.DataFrame], run_dir: str) -> pd.DataFrame:
    """Write ``<run>/ood/<pp>.csv``, ``<run>/ood.csv`` and, in the ``s<seed>`` layout, ``<root>/ood/<pp>.csv``
    (mean ± std over the seeds run so far). ``tables``: {pp: table indexed by dataset, metric and
    provenance columns}. Returns the combined table indexed by (postprocessor, dataset)."""
    root = eval_root(run_dir)
    for pp, table in tables.items():
        write_csv(table, os.path.join(run_dir, "ood", f"{pp}.csv"))
        if root != os.path.normpath(str(run_dir)):
            write_csv(aggregate_seeds(root, pp), os.path.join(root, "ood", f"{pp}.csv"))
    combined = pd.concat(tables, names=["postprocessor", "dataset"])
    write_csv(combined, os.path.join(run_dir, "ood.csv"))
    return combined
