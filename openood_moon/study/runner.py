"""Run a study grid with either engine; resumable (finished runs are skipped)."""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..config import CONFIGS_ROOT, ConfigError
from ..job_config import job_config
from .grid import RunSpec, expand
from .tidy import append_rows, read_tidy, tidy_rows


ENGINES = ("standalone", "openood")


def network_file(name: str, configs_root: str = CONFIGS_ROOT) -> str:
    path = os.path.join(configs_root, "networks", f"{name}.yml")
    if not os.path.isfile(path):
        valid = sorted(f[:-4] for f in os.listdir(os.path.dirname(path)) if f.endswith(".yml"))
        raise ConfigError(f"unknown study network {name!r}; valid choices: {', '.join(valid)}")
    return path


def spec_config(spec: RunSpec, base_files: Sequence[str], out_dir: Path,
                postprocessors: Sequence[str]) -> Dict[str, Any]:
    """Merged config of one run: base files + configs/networks/<network>.yml + the spec's overrides."""
    tokens = spec.override_tokens() + [
        "--output_dir", str(Path(out_dir) / "runs"),
        "--exp_name", f"{spec.cell}_{spec.variant}/s{spec.seed}",
        "--evaluation.postprocessors", "[" + ", ".join(postprocessors) + "]",
        "--evaluation.plots", "false"]
    return job_config(list(base_files) + [network_file(spec.network)], tokens)


def _run_one(spec: RunSpec, cfg: Dict[str, Any], threads: Optional[int], engine: str = "standalone"):
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    if engine == "openood":
        from ..engines.openood.main import run
        run(cfg)
    else:
        from ..engines.standalone.run import run
        run(cfg, progress=False)
    run_dir = Path(cfg.get("output_dir", "./results/")) / str(cfg["exp_name"])
    return tidy_rows(spec, cfg, run_dir, time.time() - start)


def run_study(grid: Dict[str, Any], base_files: Sequence[str], out_dir, jobs: int = 1,
              threads: Optional[int] = None, limit: Optional[int] = None, log=print,
              engine: str = "standalone") -> List[RunSpec]:
    """Run every spec of ``grid`` whose rows are not yet in ``<out_dir>/study.csv``.

    Rows are appended after each finished run, so an interrupted study resumes where it stopped
    (an interrupted run resumes from its own checkpoint). Returns the specs that were run.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; valid choices: {', '.join(ENGINES)}")
    out_dir = Path(out_dir)
    csv_path = out_dir / "study.csv"
    done = set(read_tidy(csv_path)["run_id"])
    specs = [s for s in expand(grid) if s.run_id not in done]
    if limit is not None:
        specs = specs[:limit]
    postprocessors = grid.get("postprocessors", ["msp", "ebo", "knn", "moon"])
    log(f"{len(done)} runs already in {csv_path}; {len(specs)} to run")
    configs = [(s, spec_config(s, base_files, out_dir, postprocessors)) for s in specs]
    if jobs <= 1:
        for i, (spec, cfg) in enumerate(configs, 1):
            rows = _run_one(spec, cfg, threads, engine)
            append_rows(csv_path, rows)
            log(f"[{i}/{len(configs)}] {spec.run_id} done in {rows[0]['wall_s']} s")
        return specs
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_run_one, spec, cfg, threads or max(1, (os.cpu_count() or 1) // jobs), engine): spec
                   for spec, cfg in configs}
        for i, fut in enumerate(as_completed(futures), 1):
            rows = fut.result()
            append_rows(csv_path, rows)
            log(f"[{i}/{len(configs)}] {futures[fut].run_id} done in {rows[0]['wall_s']} s")
    return specs
