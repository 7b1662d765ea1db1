"""One tidy row per run × score × OOD set, read back from a finished run's folder."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
import torch

import openood_moon

from .grid import RunSpec, config_hash

COLUMNS = ["run_id", "cell", "network", "method", "sparsity", "length", "variant", "seed", "preset", "score",
           "group", "ood_set", "AUROC", "FPR95", "AUPR_IN", "AUPR_OUT", "ACC", "ECE", "density",
           "config_hash", "torch_version", "openood_moon_version", "wall_s"]
NEAR_FAR = {"nearood": "near", "farood": "far"}


def tidy_rows(spec: RunSpec, cfg: Dict[str, Any], run_dir: Path, wall_s: float) -> List[Dict[str, Any]]:
    table = pd.read_csv(Path(run_dir) / "ood.csv", index_col=[0, 1])
    with open(Path(run_dir) / "metrics.json") as f:
        summary = json.load(f)
    near = [d for d in cfg["ood_dataset"]["nearood"]["datasets"]] if "ood_dataset" in cfg else []
    rows = []
    for (score, ood_set), r in table.iterrows():
        group = NEAR_FAR.get(ood_set, "near" if ood_set in near else "far")
        rows.append({"run_id": spec.run_id, "cell": spec.cell, **spec.key(), "score": score,
                     "group": group, "ood_set": ood_set, "AUROC": r["AUROC"], "FPR95": r["FPR@95"],
                     "AUPR_IN": r["AUPR_IN"], "AUPR_OUT": r["AUPR_OUT"], "ACC": summary["id"]["ACC"],
                     "ECE": summary["id"]["ECE"], "density": summary["density"],
                     "config_hash": config_hash(cfg), "torch_version": torch.__version__,
                     "openood_moon_version": openood_moon.__version__, "wall_s": round(wall_s, 1)})
    return rows


def append_rows(csv_path: Path, rows: List[Dict[str, Any]]) -> pd.DataFrame:
    """Append ``rows`` to the tidy CSV, rewriting it atomically; returns the whole table."""
    old = read_tidy(csv_path)
    new = pd.DataFrame(rows, columns=COLUMNS)
    table = new if old.empty else pd.concat([old, new], ignore_index=True)
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=csv_path.parent, suffix=".csv.tmp")
    os.close(fd)
    table.to_csv(tmp, index=False)
    os.replace(tmp, csv_path)
    return table


def read_tidy(csv_path: Path) -> pd.DataFrame:
    if not Path(csv_path).exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(csv_path)
    if "preset" not in table.columns:  # CSVs written before the preset axis existed
        table.insert(COLUMNS.index("preset"), "preset", "default")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path} is not a study CSV: missing columns {missing}")
    return table
