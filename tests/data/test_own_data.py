"""Your own data (README, "Use your own data"): a tiny image-list benchmark in OpenOOD's layout, its
dataset configs written from the README's template, the main job run from outside the repository
(working directory = the benchmark's folder; main.py by its absolute path), and OpenOOD's
eval_ood.py on the result (openood marker)."""
import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tiny_benchmark import EVAL_OOD, K, MAIN, NAME, REPO, RUN_DIR, TINY_JOB, make_benchmark

HAS_OPENOOD = importlib.util.find_spec("openood") is not None


def _run(args, cwd, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The main job (2 epochs, standalone) on the tiny benchmark, run in its folder."""
    root = tmp_path_factory.mktemp("own")
    make_benchmark(str(root))
    proc = _run([MAIN, "--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


@pytest.mark.slow
def test_main_job_on_own_data_from_outside_the_repo(trained):
    root, proc = trained
    assert not str(root).startswith(REPO)
    run = root / RUN_DIR / "s0"
    table = pd.read_csv(run / "ood.csv", index_col=[0, 1])
    assert set(table.loc["msp"].index) == {"near1", "nearood", "far1", "far2", "farood"}
    # farood is the mean of the two far sets (both engines average per-set metrics)
    msp = table.loc["msp"]
    assert msp.loc["farood", "AUROC"] == pytest.approx((msp.loc["far1", "AUROC"] + msp.loc["far2", "AUROC"]) / 2)
    cfg = yaml.safe_load((run / "config.yml").read_text())
    assert cfg["dataset"]["name"] == NAME and cfg["dataset"]["num_classes"] == K
    assert cfg["dataset"]["train"]["data_dir"] == "./data/images_classic/"   # the template's, as OpenOOD's
    metrics = json.loads((run / "metrics.json").read_text())
    # 2 test images per class: the accuracy is a multiple of 1/20
    assert round(metrics["id"]["ACC"] * 20 / 100, 6) == round(metrics["id"]["ACC"] * 20 / 100)
    log = (run / "log.txt").read_text()
    assert "1 train steps/epoch" in log                          # 40 training images, batch 128
    assert '"updates_per_epoch": 1.0' in log and '"topology_updates_planned"' in log


@pytest.mark.slow
def test_ood_validation_set_is_optional_for_the_standalone_engine(tmp_path):
    make_benchmark(str(tmp_path))
    ood_cfg = tmp_path / f"{NAME}_ood.yml"
    cfg = yaml.safe_load(ood_cfg.read_text())
    del cfg["ood_dataset"]["val"]
    ood_cfg.write_text(yaml.safe_dump(cfg))
    os.remove(tmp_path / "data" / "benchmark_imglist" / NAME / "val_oodval.txt")
    proc = _run([MAIN, "--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB,
                 "--optimizer.num_epochs", "2", "--evaluation.postprocessors", "[msp]"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / RUN_DIR / "s0" / "ood.csv").is_file()


@pytest.mark.openood
@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPENOOD, reason="OpenOOD is not installed")
def test_eval_ood_on_own_data_from_outside_the_repo(trained):
    """OpenOOD's Evaluator on the run's moon_net.ckpt, the benchmark registered from the run's config.yml;
    its MSP AUROC matches the standalone engine's for the same checkpoint and images."""
    root, _ = trained
    proc = _run([EVAL_OOD, "--root", RUN_DIR, "--postprocessor", "msp", "--save-csv", "--num-workers", "0"],
                cwd=root, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = pd.read_csv(root / RUN_DIR / "ood" / "msp.csv", index_col=0)
    assert {"near1", "nearood", "far1", "far2", "farood"} <= set(out.index)
    ours = pd.read_csv(root / RUN_DIR / "s0" / "ood" / "msp.csv", index_col=0)
    for row in ("near1", "far1", "far2"):
        theirs = float(str(out.loc[row, "AUROC"]).split(" ")[0])    # "mean ± std" over the one seed
        assert theirs == pytest.approx(ours.loc[row, "AUROC"], abs=0.01)
