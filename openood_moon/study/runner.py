"""Run a study grid with either engine; resumable (finished runs are skipped).

A grid's results are the rows of ``<out>/study.csv`` whose run id is one of the grid's runs (dataset,
network, … seed: :mod:`.grid`) *and* whose config hash is the one the grid's merged config has now.
Rows of other runs (another dataset, grid or engine) stay in the CSV but are never the grid's; a row
with one of the grid's run ids but another hash (its config changed: other defaults, base configs or
length values) makes :func:`run_study` refuse, naming the runs, instead of reporting or overwriting it.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import torch

from ..config import CONFIGS_ROOT, ConfigError
from ..job_config import job_config
from .grid import DEFAULT_ENGINE, RunSpec, config_hash, expand
from .tidy import append_rows, read_tidy, tidy_rows


ENGINES = ("standalone", "openood")


def network_file(name: str, configs_root: str = CONFIGS_ROOT) -> str:
    path = os.path.join(configs_root, "networks", f"{name}.yml")
    if not os.path.isfile(path):
        valid = sorted(f[:-4] for f in os.listdir(os.path.dirname(path)) if f.endswith(".yml"))
        raise ConfigError(f"unknown study network {name!r}; valid choices: {', '.join(valid)}")
    return path


def _tokens(overrides: Dict[str, Any]) -> List[str]:
    tokens = []
    for key, value in overrides.items():
        tokens += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return tokens


def grid_dataset(grid: Dict[str, Any], base_files: Sequence[str]) -> str:
    """The dataset name the grid's base configs (and common overrides) give."""
    return str(job_config(list(base_files), _tokens(dict(grid.get("overrides") or {})))["dataset"]["name"])


def spec_config(spec: RunSpec, base_files: Sequence[str], out_dir: Path,
                postprocessors: Sequence[str]) -> Dict[str, Any]:
    """Merged config of one run: base files + configs/networks/<network>.yml + the spec's overrides."""
    tokens = spec.override_tokens() + [
        "--output_dir", str(Path(out_dir) / "runs"),
        "--exp_name", f"{spec.cell}_{spec.variant}/s{spec.seed}",
        "--evaluation.postprocessors", "[" + ", ".join(postprocessors) + "]",
        "--evaluation.plots", "false"]
    cfg = job_config(list(base_files) + [network_file(spec.network)], tokens)
    if cfg["dataset"]["name"] != spec.dataset:
        raise ConfigError(f"run {spec.run_id}: its config trains on dataset {cfg['dataset']['name']!r}, not "
                          f"{spec.dataset!r} (a study grid runs one dataset; set it in base_configs)")
    return cfg


def planned_runs(grid: Dict[str, Any], base_files: Sequence[str], out_dir,
                 engine: str = DEFAULT_ENGINE) -> List[Tuple[RunSpec, Dict[str, Any], str]]:
    """``(spec, merged config, config hash)`` of every run of the grid, in run order."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; valid choices: {', '.join(ENGINES)}")
    postprocessors = grid.get("postprocessors", ["msp", "ebo", "knn", "moon"])
    planned = []
    for spec in expand(grid, grid_dataset(grid, base_files), engine):
        cfg = spec_config(spec, base_files, out_dir, postprocessors)
        planned.append((spec, cfg, config_hash(cfg)))
    return planned


def split_recorded(table: pd.DataFrame, planned) -> Tuple[pd.DataFrame, Dict[str, List[str]]]:
    """The grid's rows of ``table`` (its run ids with its config hashes), and ``{run_id: [other hashes]}``
    for its run ids recorded with another config."""
    wanted = {spec.run_id: digest for spec, _, digest in planned}
    mine = table["run_id"].isin(list(wanted))
    same = table["config_hash"].astype(str) == table["run_id"].map(wanted).astype(str)
    stale: Dict[str, List[str]] = {}
    for run_id, digest in table.loc[mine & ~same, ["run_id", "config_hash"]].itertuples(index=False):
        stale.setdefault(run_id, []).append(str(digest))
    return table[mine & same], {k: sorted(set(v)) for k, v in stale.items()}


def stale_message(csv_path, stale: Dict[str, List[str]], planned) -> str:
    wanted = {spec.run_id: digest for spec, _, digest in planned}
    first = next(iter(stale))
    return (f"{len(stale)} of this grid's runs are in {csv_path} with another config than the grid's now "
            f"(e.g. {first}: config hash {', '.join(stale[first])} recorded, {wanted[first]} now; other "
            "defaults, base configs or length values): they are not this grid's results. Use another --out, "
            "or rename the grid's length (a new run id), or move that study.csv away; "
            "--report-only --include-other-configs reports them as recorded")


def grid_table(grid: Dict[str, Any], base_files: Sequence[str], out_dir, engine: str = DEFAULT_ENGINE,
               include_other_configs: bool = False, log=print) -> pd.DataFrame:
    """The grid's rows of ``<out_dir>/study.csv`` (:func:`split_recorded`); with
    ``include_other_configs`` also its run ids recorded with another config (said in the log)."""
    csv_path = Path(out_dir) / "study.csv"
    table = read_tidy(csv_path)
    planned = planned_runs(grid, base_files, out_dir, engine)
    rows, stale = split_recorded(table, planned)
    others = table["run_id"].nunique() - rows["run_id"].nunique() - len(stale)
    if others:
        log(f"{others} runs in {csv_path} are not this grid's (other datasets, grids or engines): not reported")
    if stale and include_other_configs:
        log(f"note: {len(stale)} runs reported as recorded, made with another config than the grid's now")
        return table[table["run_id"].isin([spec.run_id for spec, _, _ in planned])]
    if stale:
        log(f"note: {stale_message(csv_path, stale, planned)}; not reported")
    return rows


def _run_one(spec: RunSpec, cfg: Dict[str, Any], threads: Optional[int], engine: str = "standalone"):
    if threads:
        torch.set_num_threads(threads)
    start, digest = time.time(), config_hash(cfg)  # the planned config's, whatever the run does to cfg
    if engine == "openood":
        from ..engines.openood.main import run
        run(cfg)
    else:
        from ..engines.standalone.run import run
        run(cfg, progress=False)
    run_dir = Path(cfg.get("output_dir", "./results/")) / str(cfg["exp_name"])
    return tidy_rows(spec, cfg, run_dir, time.time() - start, digest)


def run_study(grid: Dict[str, Any], base_files: Sequence[str], out_dir, jobs: int = 1,
              threads: Optional[int] = None, limit: Optional[int] = None, log=print,
              engine: str = DEFAULT_ENGINE) -> List[RunSpec]:
    """Run every spec of ``grid`` whose rows are not yet in ``<out_dir>/study.csv``.

    Rows are appended after each finished run, so an interrupted study resumes where it stopped
    (an interrupted run resumes from its own checkpoint). A recorded run of this grid made with
    another config is refused (ConfigError, module docstring). Returns the specs that were run.
    """
    out_dir = Path(out_dir)
    csv_path = out_dir / "study.csv"
    planned = planned_runs(grid, base_files, out_dir, engine)
    table = read_tidy(csv_path)
    rows, stale = split_recorded(table, planned)
    if stale:
        raise ConfigError(stale_message(csv_path, stale, planned))
    done = set(rows["run_id"])
    todo = [(spec, cfg) for spec, cfg, _ in planned if spec.run_id not in done]
    configs = todo if limit is None else todo[:limit]
    others = table["run_id"].nunique() - len(done)
    log(f"{len(done)} of this grid's {len(planned)} runs already in {csv_path}"
        + (f" ({others} other runs there are not this grid's)" if others else "") + f"; {len(todo)} to run"
        + (f", {len(configs)} of them now (limit)" if len(configs) < len(todo) else ""))
    if jobs <= 1:
        for i, (spec, cfg) in enumerate(configs, 1):
            rows = _run_one(spec, cfg, threads, engine)
            append_rows(csv_path, rows)
            log(f"[{i}/{len(configs)}] {spec.run_id} done in {rows[0]['wall_s']} s")
        return [spec for spec, _ in configs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_run_one, spec, cfg, threads or max(1, (os.cpu_count() or 1) // jobs), engine): spec
                   for spec, cfg in configs}
        for i, fut in enumerate(as_completed(futures), 1):
            rows = fut.result()
            append_rows(csv_path, rows)
            log(f"[{i}/{len(configs)}] {futures[fut].run_id} done in {rows[0]['wall_s']} s")
    return [spec for spec, _ in configs]
