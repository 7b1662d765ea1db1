"""OpenOOD's own ``test_ood`` pipeline on a MOON run, through ``main.py`` with configs/networks/moon.yml and
configs/pipelines/test/test_ood_moon.yml (the stack of scripts/ood/moon/*_test_moon.sh, on the embedded
benchmark): it loads moon_net.ckpt into the moon network and scores with the moon postprocessor."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.openood, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OOD_ROWS = {"mnist6789", "nearood", "textures", "natural", "lfw", "noise", "farood"}


def main_py(cwd, *args):
    out = subprocess.run([sys.executable, os.path.join(REPO, "main.py"), "--engine", "openood", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _expected_moon_scores(checkpoint, data_root):
    """(pred, conf, label) on the ID test list, computed here: OpenOOD's test transform of a 28x28 image is
    ToTensor + Normalize(0.5, 0.5) (mnist6 is not in its normalization table); conf = max over the first K
    of softmax over all K+1 logits, pred = argmax over the first K (Lei et al., TMLR 2024)."""
    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    net = MoonNet(SmallCNN(6), num_classes=6)
    net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    net.eval()
    with open(os.path.join(data_root, "benchmark_imglist", "mnist6", "test_mnist6.txt")) as f:
        lines = [line.split() for line in f if line.strip()]
    images = [np.asarray(Image.open(os.path.join(data_root, path)).convert("RGB"), dtype=np.float32) / 255
              for path, _ in lines]
    x = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) - 0.5) / 0.5
    with torch.no_grad():
        probs = torch.softmax(net(x, return_unknown=True), dim=1)[:, :6]
    conf, pred = probs.max(dim=1)
    return pred.numpy(), conf.numpy(), np.array([int(label) for _, label in lines])


def test_openoods_test_ood_pipeline_evaluates_a_moon_checkpoint(tmp_path, mnist6_data):
    (tmp_path / "data").symlink_to(mnist6_data)          # the dataset configs' ./data/ paths
    main_py(tmp_path, "--config", "configs/pipelines/train/moon.yml", "--optimizer.num_epochs", "2",
            "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1", "--moon.snapshots_per_epoch", "2",
            "--dataset.subset", "300", "--dataset.train.batch_size", "32", "--evaluation.postprocessors", "[msp]")
    checkpoint = tmp_path / "results" / "mnist6_small_cnn_rigl_d0.1_e2_moon" / "s0" / "moon_net.ckpt"
    out = main_py(tmp_path, "--config", "configs/networks/moon.yml", "configs/pipelines/test/test_ood_moon.yml",
                  "configs/preprocessors/base_preprocessor.yml", "configs/postprocessors/moon.yml",
                  "--network.backbone.name", "small_cnn", "--network.checkpoint", str(checkpoint))
    assert "Completed!" in out.stdout                     # OpenOOD's TestOODPipeline.run() finished
    run = tmp_path / "results" / "mnist6_moon_test_ood_ood_moon_default" / "s0" / "ood"
    table = pd.read_csv(run / "ood.csv")
    assert set(table["dataset"]) == OOD_ROWS
    scores = np.load(run / "scores" / "mnist6.npz")
    pred, conf, label = _expected_moon_scores(checkpoint, mnist6_data)
    np.testing.assert_array_equal(scores["label"], label)
    np.testing.assert_array_equal(scores["pred"], pred)
    np.testing.assert_allclose(scores["conf"], conf, atol=1e-5)
    assert table["ACC"].eq(round(100 * float((pred == label).mean()), 2)).all()
