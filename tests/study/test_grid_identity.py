"""A grid's results are its own runs only: run ids name the dataset (and engine, preset, the grid's
common overrides); a folder holding another dataset's results is not reported as the grid's, and
results of the grid's run ids made with another config (hash) are refused, not counted. Study CSVs
written before these fields existed still load, and appending to one leaves its rows' bytes alone."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from openood_moon.config import ConfigError
from openood_moon.study.grid import expand
from openood_moon.study.runner import grid_table, planned_runs, run_study
from openood_moon.study.tidy import COLUMNS, append_rows, read_tidy
from tiny_benchmark import NAME, make_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEGACY = os.path.join(REPO, "docs", "study", "compare_90", "study.csv")   # mnist6 results, old layout
GRID = {"networks": ["small_cnn"], "methods": ["rigl", "set"], "sparsities": [0.9],
        "lengths": {"e20": {"epochs": 20, "interval": 10, "warmup_epochs": 3, "vote_epochs": 4}},
        "variants": ["dense", "sparse", "sparse_moon"], "seeds": [0, 1, 2],
        "postprocessors": ["msp", "ebo", "knn", "react", "vim", "mds", "moon"], "overrides": {}}


def test_run_ids_name_dataset_engine_preset_and_common_overrides():
    spec = expand(GRID, "tinybench")[0]
    assert spec.run_id == "tinybench_small_cnn_e20_dense_sp0_dense_s0"
    assert expand(GRID)[0].run_id == "mnist6_small_cnn_e20_dense_sp0_dense_s0"
    assert expand(GRID, "x", "openood")[0].cell == "x_small_cnn_e20_dense_sp0_openood"
    tagged = expand({**GRID, "overrides": {"optimizer.lr": 0.1}}, "x")[0].cell
    other = expand({**GRID, "overrides": {"optimizer.lr": 0.2}}, "x")[0].cell
    assert tagged.startswith("x_small_cnn_e20_dense_sp0_o") and tagged != other
    with pytest.raises(ConfigError, match="both sparse.interval and sparse.updates_per_epoch"):
        expand({**GRID, "overrides": {"sparse.updates_per_epoch": 2}})


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A folder with another dataset's results (the embedded mnist6's, from docs/) and a grid on the
    tiny benchmark whose dataset configs come from the README's template."""
    make_benchmark(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "study"
    out.mkdir()
    shutil.copy(LEGACY, out / "study.csv")
    return tmp_path, out, ["configs/pipelines/train/moon.yml", f"{NAME}.yml", f"{NAME}_ood.yml"]


def test_a_folder_of_another_datasets_results_is_not_reported_as_the_grids(own):
    root, out, base = own
    before = (out / "study.csv").read_bytes()
    lines = []
    assert run_study(GRID, base, out, limit=0, log=lines.append) == []
    assert lines == [f"0 of this grid's 15 runs already in {out / 'study.csv'} (15 other runs there are not "
                     "this grid's); 15 to run, 0 of them now (limit)"]
    assert grid_table(GRID, base, out, log=lines.append).empty
    # the same grid on the embedded benchmark: the rows carry its run ids, but another config hash
    # (recorded with older defaults): refused, not counted
    with pytest.raises(ConfigError, match=r"15 of this grid's runs are in .* with another config .* "
                                          r"mnist6_small_cnn_e20_dense_sp0_dense_s0: config hash 80a0da481a7c"):
        run_study(GRID, ["configs/pipelines/train/moon.yml"], out, limit=0, log=lines.append)
    assert grid_table(GRID, ["configs/pipelines/train/moon.yml"], out, log=lines.append).empty
    recorded = grid_table(GRID, ["configs/pipelines/train/moon.yml"], out, include_other_configs=True,
                          log=lines.append)
    assert recorded["run_id"].nunique() == 15
    assert (out / "study.csv").read_bytes() == before


def test_compare_script_refuses_another_configs_results(own):
    root, out, base = own
    grid = root / "grid.yml"
    grid.write_text("study:\n  name: g\n  base_configs: [configs/pipelines/train/moon.yml]\n"
                    + "".join(f"  {k}: {v}\n" for k, v in GRID.items() if k != "lengths")
                    + "  lengths:\n    e20: {epochs: 20, interval: 10, warmup_epochs: 3, vote_epochs: 4}\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compare.py"), "--grid", str(grid),
                           "--out", str(out), "--limit", "0"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "with another config than the grid's now" in proc.stderr
    report = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compare.py"), "--grid", str(grid),
                             "--out", str(out), "--report-only"], cwd=root, capture_output=True, text=True)
    assert report.returncode == 0 and "no finished runs of this grid" in report.stdout


def test_rows_whose_hash_matches_are_the_grids_and_others_are_not(own):
    """Rows made for the tiny benchmark's run ids: with the grid's hash they count; with another they
    are refused; rows of another grid's run ids are neither."""
    root, out, base = own
    planned = planned_runs(GRID, base, out)
    spec, _, digest = planned[0]
    row = {c: 0 for c in COLUMNS}
    row.update(run_id=spec.run_id, cell=spec.cell, dataset=NAME, network="small_cnn", method="dense",
               length="e20", variant="dense", preset="default", engine="standalone", score="msp",
               group="near", ood_set="nearood", config_hash=digest)
    append_rows(out / "study.csv", [row])
    assert list(grid_table(GRID, base, out, log=lambda *_: None)["run_id"]) == [spec.run_id]
    lines = []
    run_study(GRID, base, out, limit=0, log=lines.append)
    assert lines[0].startswith("1 of this grid's 15 runs already in") and "; 14 to run, 0 of" in lines[0]
    append_rows(out / "study.csv", [{**row, "config_hash": "000000000000"}])
    with pytest.raises(ConfigError, match=f"{spec.run_id}: config hash 000000000000 recorded, {digest} now"):
        run_study(GRID, base, out, limit=0, log=lines.append)


def test_legacy_csv_loads_and_appending_keeps_its_rows(tmp_path):
    path = tmp_path / "study.csv"
    shutil.copy(LEGACY, path)
    before = path.read_text()
    table = read_tidy(path)
    assert list(table.columns) == COLUMNS
    assert (table["dataset"] == "mnist6").all() and (table["engine"] == "standalone").all()
    assert (table["preset"] == "default").all()
    assert table["run_id"].iloc[0] == "mnist6_small_cnn_e20_dense_sp0_dense_s0"
    legacy = pd.read_csv(LEGACY)
    assert (table["run_id"] == "mnist6_" + legacy["run_id"]).all()
    new = {**table.iloc[0].to_dict(), "run_id": "mnist6_small_cnn_e20_dense_sp0_dense_s9", "seed": 9}
    append_rows(path, [new])
    after = path.read_text()
    assert after.startswith(before)                                  # old rows: same bytes
    assert after[len(before):].startswith("small_cnn_e20_dense_sp0_dense_s9,small_cnn_e20_dense_sp0,")
    assert read_tidy(path)["run_id"].iloc[-1] == "mnist6_small_cnn_e20_dense_sp0_dense_s9"
    other = {**new, "run_id": "tiny_x_s0", "cell": "tiny_x", "dataset": "tiny"}   # does not fit that layout
    append_rows(path, [other])
    both = read_tidy(path)
    assert set(both["dataset"]) == {"mnist6", "tiny"} and len(both) == len(table) + 2
    assert both["run_id"].iloc[0] == "mnist6_small_cnn_e20_dense_sp0_dense_s0"


HARDER = os.path.join(REPO, "docs", "study", "harder", "study.csv")   # stage E: both engines' runs
STAGE_E = [os.path.join(REPO, "configs", "study", f"study_e_cnn{suffix}.yml") for suffix in ("", "_openood")]


def compare(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compare.py"), *args], cwd=cwd,
                          capture_output=True, text=True)


def test_grids_of_both_engines_are_reported_together_with_the_engine_difference(tmp_path):
    """The OpenOOD grid names `engine: openood`: one report holds each engine's recorded runs and the
    paired openood − standalone rows (without that key the OpenOOD runs are not the grid's)."""
    shutil.copy(HARDER, tmp_path / "study.csv")
    recorded = pd.read_csv(HARDER)
    openood = recorded[(recorded["engine"] == "openood") & (recorded["network"] == "small_cnn")
                       & (recorded["sparsity"].isin([0, 0.98]))]
    assert openood["run_id"].nunique() > 0
    proc = compare("--grid", *STAGE_E, "--sparsities", "0.98", "--out", str(tmp_path), "--report-only",
                   cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "## fmnist6 · standalone · default" in summary and "## fmnist6 · openood · default" in summary
    assert f"Runs: {openood['run_id'].nunique()}." in summary
    assert "| engine: openood − standalone |" in summary


def test_a_grid_engine_and_another_engine_option_conflict(tmp_path):
    proc = compare("--grid", STAGE_E[1], "--engine", "standalone", "--out", str(tmp_path), "--report-only",
                   cwd=REPO)
    assert proc.returncode == 2
    assert "names engine 'openood' but --engine is 'standalone'" in proc.stderr
