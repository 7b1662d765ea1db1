"""main.py end to end on a subset of the embedded benchmark, and its errors for bad input."""
import os
import importlib.util
import subprocess
import sys

import pandas as pd
import pytest
import torch

from openood_moon.networks import SmallCNN
from openood_moon.sparse_export import load_sparse_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOON = "configs/pipelines/train/moon.yml"


def main_py(*args, timeout=120):
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def data_root(mnist6_root):
    return str(mnist6_root)


def test_tiny_end_to_end_run_writes_the_results_folder(tmp_path, data_root):
    out = main_py("--config", MOON, "--engine", "standalone", "--dataset.subset", "300",
                  "--dataset.data_root", data_root, "--output_dir", str(tmp_path),
                  "--optimizer.num_epochs", "2", "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1",
                  "--evaluation.postprocessors", "[msp, knn, moon]", "--evaluation.postprocessor_args",
                  "{knn: {k: 5}}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "engine: standalone" in out.stdout and "farood" in out.stdout
    run = tmp_path / "mnist6_small_cnn_rigl_d0.1_e2_moon" / "s0"
    for name in ("config.yml", "log.txt", "checkpoint.pt", "best.ckpt", "moon_net.ckpt", "ood.csv",
                 "metrics.json"):
        assert (run / name).is_file(), name
    assert list((run / "plots").glob("*.png"))
    table = pd.read_csv(run / "ood.csv", index_col=[0, 1])
    assert set(table.index.get_level_values(0)) == {"msp", "knn", "moon"}
    assert {"nearood", "farood", "mnist6789", "textures"} <= set(table.index.get_level_values(1))
    assert table["AUROC"].between(0, 100).all()
    plain = SmallCNN(6)                                        # best.ckpt is a plain K-way backbone
    plain.load_state_dict(torch.load(run / "best.ckpt", weights_only=True), strict=True)
    compressed = load_sparse_state_dict(run / "best.sparse.pt")   # the same weights, values + bitmask
    assert all(torch.equal(compressed[k], v) for k, v in plain.state_dict().items())
    same = ["--config", MOON, "--engine", "standalone", "--dataset.subset", "300", "--dataset.data_root",
            data_root, "--output_dir", str(tmp_path), "--optimizer.num_epochs", "2", "--moon.warmup_epochs", "1",
            "--moon.vote_epochs", "1", "--evaluation.postprocessors", "[msp, knn, moon]",
            "--evaluation.postprocessor_args", "{knn: {k: 5}}"]
    again = main_py(*same)
    assert again.returncode == 0 and "finished run with the same config found, skipped" in again.stdout
    before = (run / "ood.csv").read_bytes()
    changed = main_py(*same, "--moon.alpha_final", "0.5")     # one key differs: refused, never reused
    assert changed.returncode == 2
    assert "moon.alpha_final (1.0 -> 0.5)" in changed.stderr and "--evaluation.resume false" in changed.stderr
    assert (run / "ood.csv").read_bytes() == before


ENGINES = ["standalone"] + (["openood"] if importlib.util.find_spec("openood") else [])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("args,message", [
    (["--config", "configs/nope.yml"], "config file not found: 'configs/nope.yml'"),
    (["--config", MOON, "--sparse.metod", "set"], "did you mean 'method'"),
    (["--config", MOON, "--sparse.method", "snip"], "valid choices: dense, static, set, rigl"),
    (["--config", MOON, "--evaluation.postprocessors", "[msp, odin2]"], "unknown postprocessor 'odin2'"),
    (["--config", MOON, "--network.name", "vgg"], "unknown network.name 'vgg'; valid choices"),
    (["--config", MOON, "--pipeline.name", "trian"], "unknown pipeline.name 'trian'; valid choices"),
    (["--config", MOON, "--trainer.name", "bsae"], "unknown trainer.name 'bsae'; valid choices"),
])
def test_bad_input_exits_2_naming_the_problem_in_both_engines(engine, args, message, tmp_path):
    out = main_py(*args, "--engine", engine, "--output_dir", str(tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_engine_exits_2():
    out = main_py("--engine", "tensorflow")
    assert out.returncode == 2 and "valid choices: auto, openood, standalone" in out.stderr
