"""One tidy row per run × score × OOD set, read back from a finished run's folder.

CSVs written before a column existed still load: a missing column takes its implied value
(:data:`IMPLIED`: ``preset`` default, ``dataset`` the embedded mnist6, ``engine`` standalone), and
without a ``dataset`` column the run ids and cells, which then lack the dataset, get it prefixed on
reading. New rows are appended
in the file's own layout whenever they can be (their values of the missing columns are the implied
ones), so the rows already there are never rewritten; otherwise the file moves to the full layout.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
import torch

import openood_moon

from ..evaluation.groups import separate_groups
from .grid import DEFAULT_DATASET, DEFAULT_ENGINE, RunSpec, config_hash

COLUMNS = ["run_id", "cell", "dataset", "network", "method", "sparsity", "length", "variant", "seed", "preset",
           "engine", "score", "group", "ood_set", "AUROC", "FPR95", "AUPR_IN", "AUPR_OUT", "ACC", "ECE", "density",
           "config_hash", "torch_version", "openood_moon_version", "wall_s"]
# value of a column that a CSV written before it existed lacks
IMPLIED = {"preset": "default", "dataset": DEFAULT_DATASET, "engine": DEFAULT_ENGINE}
NEAR_FAR = {"nearood": "near", "farood": "far"}


def tidy_rows(spec: RunSpec, cfg: Dict[str, Any], run_dir: Path, wall_s: float,
              digest: str = None) -> List[Dict[str, Any]]:
    """The rows of one finished run; ``digest``: its planned config hash (default: ``cfg``'s)."""
    table = pd.read_csv(Path(run_dir) / "ood.csv", index_col=[0, 1])
    with open(Path(run_dir) / "metrics.json") as f:
        summary = json.load(f)
    near = [d for d in cfg["ood_dataset"]["nearood"]["datasets"]] if "ood_dataset" in cfg else []
    own = {name: group for group, sets in separate_groups(cfg.get("ood_dataset")).items() for name in sets}
    aggregates = {**NEAR_FAR, **{f"{group}ood": group for group in set(own.values())}}
    rows = []
    for (score, ood_set), r in table.iterrows():
        group = aggregates.get(ood_set) or own.get(ood_set) or ("near" if ood_set in near else "far")
        rows.append({"run_id": spec.run_id, "cell": spec.cell, **spec.key(), "score": score,
                     "group": group, "ood_set": ood_set, "AUROC": r["AUROC"], "FPR95": r["FPR@95"],
                     "AUPR_IN": r["AUPR_IN"], "AUPR_OUT": r["AUPR_OUT"], "ACC": summary["id"]["ACC"],
                     "ECE": summary["id"]["ECE"], "density": summary["density"],
                     "config_hash": digest or config_hash(cfg), "torch_version": torch.__version__,
                     "openood_moon_version": openood_moon.__version__, "wall_s": round(wall_s, 1)})
    return rows


def _legacy(row: Dict[str, Any], columns: List[str]) -> Dict[str, Any]:
    """``row`` in the layout of an older CSV with ``columns``, or None when it does not fit there
    (a missing column's value is not the implied one)."""
    missing = [c for c in COLUMNS if c not in columns]
    if any(c not in IMPLIED or row[c] != IMPLIED[c] for c in missing) or any(c not in COLUMNS for c in columns):
        return None
    out = dict(row)
    if "dataset" in missing:  # ids of that layout lack the dataset
        prefix = f"{row['dataset']}_"
        out["run_id"], out["cell"] = row["run_id"][len(prefix):], row["cell"][len(prefix):]
    return {c: out[c] for c in columns}


def append_rows(csv_path: Path, rows: List[Dict[str, Any]]) -> pd.DataFrame:
    """Append ``rows`` to the tidy CSV (atomically: temporary file, then rename); returns the whole
    table as :func:`read_tidy` reads it. The rows already there keep their bytes when the new rows fit
    the file's layout (module docstring)."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame(rows, columns=COLUMNS)
    old_text = csv_path.read_text() if csv_path.exists() else ""
    header = old_text.splitlines()[0].split(",") if old_text.strip() else None
    legacy = [_legacy(r, header) for r in new.to_dict("records")] if header else None
    if header is None:
        text = new.to_csv(index=False)
    elif all(r is not None for r in legacy):
        text = old_text + ("" if old_text.endswith("\n") else "\n") + \
            pd.DataFrame(legacy, columns=header).to_csv(index=False, header=False)
    else:  # the file moves to the full layout (its rows as read_tidy reads them)
        text = pd.concat([read_tidy(csv_path), new], ignore_index=True).to_csv(index=False)
    fd, tmp = tempfile.mkstemp(dir=csv_path.parent, suffix=".csv.tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, csv_path)
    return read_tidy(csv_path)


def read_tidy(csv_path: Path) -> pd.DataFrame:
    """The tidy table of a study CSV (empty with :data:`COLUMNS` when there is none); older layouts
    are read as the module docstring says."""
    if not Path(csv_path).exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(csv_path)
    if "dataset" not in table.columns and not table.empty:  # ids written before they named the dataset
        table["run_id"] = IMPLIED["dataset"] + "_" + table["run_id"].astype(str)
        table["cell"] = IMPLIED["dataset"] + "_" + table["cell"].astype(str)
    for column, value in IMPLIED.items():
        if column not in table.columns:
            table.insert(COLUMNS.index(column), column, value)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path} is not a study CSV: missing columns {missing}")
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]
