"""Compare dense, sparse and sparse+MOON runs with paired seeds, on the embedded benchmark or any
dataset the grid's ``base_configs`` name (README, "Use your own data").

    python scripts/compare.py                                   # configs/study/compare_90.yml
    python scripts/compare.py --grid configs/study/study_a.yml --jobs 2
    python scripts/compare.py --sparsities 0.9 0.98 --seeds 0 1 2 3 4 --out results/compare_x
    python scripts/compare.py --grid configs/study/study_d_rigl98.yml configs/study/study_d_set90.yml \
        --out docs/study/fidelity --report-only            # one report over several grids

Runs every grid point with the grid's ``engine`` (a ``study.engine`` key, else ``--engine``, else
``standalone``; ``openood``: through the real OpenOOD), so grids of both engines can be run and
reported together; finished runs are skipped, so an interrupted comparison resumes), appends one tidy CSV row per run ×
score × OOD set to ``<out>/study.csv``, then prints and saves the mean ± std table
(``<out>/table.md``), the paired differences with 95 % confidence intervals (``<out>/summary.md``)
and AUROC-vs-sparsity plots (``<out>/plots``). Only the grid's own runs are reported: run ids name
the dataset, network, … and seed, and a recorded run whose config hash differs from the grid's is
refused (``--report-only --include-other-configs`` reports such runs as recorded).
A ``base_configs`` path that does not exist from the working directory is read relative to the grid
file's folder, then from the packaged configs.
"""
import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from openood_moon.config import ConfigError, find_config  # noqa: E402
from openood_moon.study.report import report, score_table  # noqa: E402
from openood_moon.study.runner import grid_table, run_study  # noqa: E402

LIST_KEYS = ("networks", "methods", "sparsities", "variants", "seeds", "postprocessors")


def load_grid(path: str) -> dict:
    """The ``study:`` mapping of a grid file (found from the working directory, else in the packaged
    configs); its ``base_configs`` made absolute where they exist next to the grid file."""
    found = find_config(path)
    with open(found) as f:
        grid = (yaml.safe_load(f) or {}).get("study")
    if not grid:
        raise ConfigError(f"{path}: expected a top-level 'study:' mapping")
    folder = os.path.dirname(os.path.abspath(found))
    grid["base_configs"] = [
        os.path.join(folder, p) if not os.path.isabs(p) and not os.path.exists(p)
        and os.path.isfile(os.path.join(folder, p)) else p
        for p in grid.get("base_configs", ["configs/pipelines/train/moon.yml"])]
    return grid


def grid_engine(grid: dict, cli_engine) -> str:
    """The engine a grid runs with: its ``engine`` key, else ``--engine``, else ``standalone``; a grid
    naming one engine while ``--engine`` names another is a ConfigError."""
    engine = grid.get("engine")
    if engine is not None and cli_engine is not None and engine != cli_engine:
        raise ConfigError(f"grid {grid.get('name', '')!r} names engine {engine!r} but --engine is {cli_engine!r}: "
                          "drop --engine (each grid's own engine is used) or the grid's engine key")
    return engine or cli_engine or "standalone"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", nargs="+", default=["configs/study/compare_90.yml"],
                   help="study grid YAML(s): several are run in turn into one --out and reported together")
    p.add_argument("--out", default=None, help="output folder (default results/<first grid's name>)")
    for key in LIST_KEYS:
        p.add_argument(f"--{key}", nargs="+", default=None, help=f"override the grids' {key}")
    p.add_argument("--epochs", type=int, default=None, help="one training length of N epochs")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run")
    p.add_argument("--limit", type=int, default=None, help="run at most N new runs per grid, then report")
    p.add_argument("--engine", default=None,
                   help="standalone | openood (the real OpenOOD), for grids without an engine key (default standalone)")
    p.add_argument("--report-only", action="store_true", help="only summarise the grids' runs in <out>/study.csv")
    p.add_argument("--include-other-configs", action="store_true",
                   help="with --report-only: also report the grids' runs recorded with another config hash")
    args = p.parse_args(argv)
    try:
        grids = [load_grid(path) for path in args.grid]
        for grid in grids:
            for key in LIST_KEYS:
                if getattr(args, key) is not None:
                    values = getattr(args, key)
                    grid[key] = ([float(v) for v in values] if key == "sparsities" else
                                 [int(v) for v in values] if key == "seeds" else values)
            if args.epochs is not None:
                grid["lengths"] = {f"e{args.epochs}": {"epochs": args.epochs}}
        engines = [grid_engine(grid, args.engine) for grid in grids]
        out = Path(args.out or os.path.join("results", grids[0].get("name", "compare")))
        if args.include_other_configs and not args.report_only:
            raise ConfigError("--include-other-configs only goes with --report-only (runs are never "
                              "reused across configs)")
        if not args.report_only:
            for grid, engine in zip(grids, engines):
                run_study(grid, grid["base_configs"], out,
                          jobs=args.jobs, threads=args.threads, limit=args.limit, engine=engine)
        tables = [grid_table(grid, grid["base_configs"], out, engine=engine,
                             include_other_configs=args.include_other_configs)
                  for grid, engine in zip(grids, engines)]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.concat(tables, ignore_index=True).drop_duplicates(["run_id", "score", "ood_set"])  # shared dense runs
    if table.empty:
        print(f"no finished runs of {'these grids' if len(grids) > 1 else 'this grid'} in {out / 'study.csv'}")
        return 0
    postprocessors = list(dict.fromkeys(pp for grid in grids for pp in grid.get("postprocessors") or []))
    scores = score_table(table, postprocessors or None)
    (out / "table.md").write_text(scores.to_markdown(index=False) + "\n")
    print(scores.to_markdown(index=False))
    print(report(table, out, "Study " + " + ".join(grid.get("name", "") for grid in grids)))
    print(f"written: {out / 'study.csv'}, {out / 'table.md'}, {out / 'summary.md'}, {out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
