"""Issue acceptance "OpenOOD plug-in": ``main.py --engine openood`` trains sparse+MOON on the embedded
benchmark through OpenOOD's machinery, then ``scripts/eval_ood.py`` evaluates the run with msp, ebo,
knn, react and moon (real OpenOOD, CPU is enough); exported checkpoints load into OpenOOD's ResNet."""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PPS = ["msp", "ebo", "knn", "react", "moon"]
ROWS = ["mnist6789", "nearood", "textures", "natural", "lfw", "noise", "farood"]
HEADER = ",FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC,postprocessor_settings,searched,checkpoint,engine,openood_moon,backend"
CELL = re.compile(r"^(\d+\.\d\d) \u00b1 (\d+\.\d\d)$")
EXP = "mnist6_small_cnn_rigl_d0.1_e2_moon"


def _python(args, timeout=240):
    """Run the repo's entry points with this interpreter (the OpenOOD venv), from the repo root."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def restore():
    """Undo in-process effects of evaluate.main: the CPU shim."""
    from openood_moon.engines.openood import compat

    before = compat.cpu_shim_active()
    yield
    if not before:
        compat.uninstall_cpu_shim()


@pytest.fixture(scope="module")
def small_config_root(tmp_path_factory):
    """Small-data postprocessor settings: OpenOOD's knn.yml sweeps K up to 1000 (absurd on 300 images)."""
    root = tmp_path_factory.mktemp("pp_configs")
    (root / "postprocessors").mkdir()
    (root / "postprocessors" / "knn.yml").write_text(
        "postprocessor:\n  name: knn\n  APS_mode: False\n  postprocessor_args:\n    K: 5\n")
    (root / "postprocessors" / "react.yml").write_text(
        "postprocessor:\n  name: react\n  APS_mode: False\n  postprocessor_args:\n    percentile: 90\n")
    return root


@pytest.fixture(scope="module")
def trained(mnist6_data, tmp_path_factory):
    """`main.py --engine openood`: 2 epochs of RigL 90 % + MOON on 300 images per list; (root, seconds)."""
    out = tmp_path_factory.mktemp("eval_script")
    start = time.time()
    proc = _python(["main.py", "--engine", "openood", "--optimizer.num_epochs", "2", "--moon.warmup_epochs", "1",
                    "--moon.vote_epochs", "1", "--moon.snapshots_per_epoch", "2", "--dataset.subset", "300",
                    "--dataset.train.batch_size", "32", "--dataset.data_root", str(mnist6_data),
                    "--output_dir", str(out), "--evaluation.postprocessors", "[msp, knn]",
                    "--evaluation.postprocessor_args", "{knn: {k: 3}}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("engine: openood") and "results written to" in proc.stdout
    return out / EXP, time.time() - start


def test_main_trains_then_eval_ood_evaluates(trained, small_config_root):
    root, train_seconds = trained
    run_dir = root / "s0"
    assert {"best.ckpt", "moon_net.ckpt", "config.yml", "checkpoint.pt"} <= set(os.listdir(run_dir))
    # the CSV written by training states its settings row by row: our fixed K=3, no search
    import pandas as pd

    for path in (root / "ood" / "knn.csv", run_dir / "ood" / "knn.csv", run_dir / "ood.csv"):
        knn = pd.read_csv(path, index_col=0)
        knn = knn[knn.index == "knn"] if path.name == "ood.csv" else knn
        assert len(knn) and (knn["postprocessor_settings"] == '{"K": 3}').all(), path
        assert (~knn["searched"].astype(bool)).all() and (knn["checkpoint"] == "moon_net.ckpt").all()
        assert knn["backend"].str.startswith("openood 1.5").all() and (knn["engine"] == "openood").all()
    start = time.time()
    proc = _python(["scripts/eval_ood.py", "--root", str(root), "--postprocessor", *PPS, "--save-csv",
                    "--save-score", "--config-root", str(small_config_root), "--num-workers", "0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"train {train_seconds:.1f} s, eval_ood {time.time() - start:.1f} s")
    out = proc.stdout
    # the run's own benchmark (config.yml: mnist6_subset300), the MOON net with its unknown head
    assert "ID data mnist6_subset300 (K=6)" in out and "s0 (moon_net.ckpt)" in out
    summary = out.split("near/far AUROC (mean ± std over runs):")[1]
    print(summary)
    for pp in PPS:
        assert re.search(rf"^{pp}\s+\d+\.\d\d ± 0\.00\s+\d+\.\d\d ± 0\.00", summary, re.M), pp
        with open(root / "ood" / f"{pp}.csv", encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert lines[0] == HEADER and [line.split(",")[0] for line in lines[1:]] == ROWS
        for line in lines[1:]:
            cells = [CELL.match(c) for c in line.split(",")[1:6]]
            assert all(cells), line
            assert all(0.0 <= float(c.group(1)) <= 100.0 and float(c.group(2)) == 0.0 for c in cells), line
        with np.load(run_dir / "scores" / f"{pp}.npz") as scores:
            assert {"id/test/conf", "ood/near/mnist6789/conf", "ood/far/noise/conf"} <= set(scores.files)
            assert len(scores["id/test/conf"]) == 300 and np.isfinite(scores["id/test/conf"]).all()
            assert str(scores["meta/checkpoint"]) == "moon_net.ckpt"
    # the same file rewritten by eval_ood.py states its own settings: the config root's K=5
    knn = pd.read_csv(root / "ood" / "knn.csv", index_col=0)
    assert (knn["postprocessor_settings"] == '{"K": 5}').all() and (knn["checkpoint"] == "moon_net.ckpt").all()


def test_exported_checkpoint_gives_the_moon_models_logits(trained):
    """best.ckpt (plain backbone) loads strictly and gives the MOON net's K logits; moon sees K+1."""
    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    run_dir = trained[0] / "s0"
    plain, moon = SmallCNN(6).eval(), MoonNet(SmallCNN(6), 6).eval()
    plain.load_state_dict(torch.load(run_dir / "best.ckpt", weights_only=True), strict=True)
    moon.load_state_dict(torch.load(run_dir / "moon_net.ckpt", weights_only=True), strict=True)
    x = torch.randn(8, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), moon(x)) and torch.equal(moon(x, return_unknown=True)[:, :6], moon(x))


def test_resnet_run_exports_a_checkpoint_for_openoods_resnet(mnist6_data, tmp_path, restore):
    """A train_moon run with ResNet-18: best.ckpt loads strict=True into OpenOOD's own ResNet18_32x32
    and gives the same K logits as the MOON model (moon_net.ckpt)."""
    from openood.networks import ResNet18_32x32 as OpenOODResNet

    from openood_moon.config import CONFIGS_ROOT
    from openood_moon.job_config import job_config
    from openood_moon.engines.openood.datasets import register_embedded
    from openood_moon.engines.openood.main import run
    from openood_moon.moon.net import MoonNet

    cfg = job_config([os.path.join(CONFIGS_ROOT, "networks", "resnet18_32x32.yml")], [
        "--optimizer.num_epochs", "2", "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1",
        "--moon.snapshots_per_epoch", "1", "--dataset.subset", "48", "--dataset.train.batch_size", "16",
        "--output_dir", str(tmp_path), "--dataset.data_root", str(mnist6_data),
        "--evaluation.postprocessors", "[moon]"])
    try:
        run_dir = run(cfg)["run_dir"]
    finally:
        register_embedded(mnist6_data)
    resnet = OpenOODResNet(num_classes=6).eval()
    resnet.load_state_dict(torch.load(os.path.join(run_dir, "best.ckpt"), weights_only=True), strict=True)
    moon = MoonNet(OpenOODResNet(num_classes=6), 6).eval()
    moon.load_state_dict(torch.load(os.path.join(run_dir, "moon_net.ckpt"), weights_only=True), strict=True)
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(resnet(x), moon(x), atol=1e-6)
        assert moon(x, return_unknown=True).shape == (4, 7)
    zeros = sum(int((v == 0).sum()) for k, v in resnet.state_dict().items() if k.endswith("conv2.weight"))
    assert zeros > 0  # the sparse masks survive the export (90 % sparsity: many exact zeros)


def test_unknown_names_are_clear_errors(trained, capsys, restore):
    from openood_moon.engines.openood.evaluate import main

    root = str(trained[0])
    assert main(["--root", root, "--postprocessor", "msp", "no_such_pp"]) == 2
    err = capsys.readouterr().err
    assert "unknown postprocessor 'no_such_pp'" in err and all(f" {p}," in err for p in ("knn", "moon", "react"))
    assert main(["--root", root, "--id-data", "no_such_set"]) == 2
    err = capsys.readouterr().err
    assert "unknown --id-data 'no_such_set'" in err and all(n in err for n in ("cifar10", "mnist6", "imagenet200"))
    assert main(["--root", str(trained[0] / "ood")]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_config_yml_of_openood_itself_is_read_safely(tmp_path):
    """OpenOOD's recorder dumps config.yml with python tags; it is read as plain data, no objects."""
    import yaml
    from openood.utils import Config

    from openood_moon.engines.openood.evaluate import load_run_config, network_section

    (tmp_path / "config.yml").write_text(yaml.dump(Config({"network": {"name": "resnet18_32x32",
                                                                       "num_classes": 10}})))
    cfg = load_run_config(str(tmp_path))
    assert type(cfg) is dict and cfg["network"] == {"name": "resnet18_32x32", "num_classes": 10}
    assert network_section(cfg, None, 10)["name"] == "resnet18_32x32"
    assert network_section({}, "resnet18_32x32", 100)["num_classes"] == 100
