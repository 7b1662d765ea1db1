"""``--preset official`` on the CIFAR-10 config stack (issue 9, acceptance 2): the stack's settings,
network and trainer build and train under the released code's behaviour, and the job goes as far as
the data, which this offline machine lacks (exit 2 naming the missing folder, no traceback)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openood_moon.engines.standalone.run import build_model
from openood_moon.job_config import job_config
from openood_moon.official import DropConnect, OfficialMasking
from openood_moon.settings import TrainSettings
from openood_moon.trainer import MoonTrainer

REPO = Path(__file__).resolve().parents[1]
STACK = ["configs/datasets/cifar10/cifar10.yml", "configs/datasets/cifar10/cifar10_ood.yml",
         "configs/networks/resnet18_32x32.yml", "configs/pipelines/train/moon.yml", "configs/presets/official.yml"]


@pytest.mark.slow
def test_the_cifar10_stack_with_the_official_preset_trains_a_step_on_cifar_shaped_batches():
    cfg = job_config([str(REPO / p) for p in STACK], ["--optimizer.num_epochs", "4", "--moon.warmup_epochs", "1",
                                                      "--moon.vote_epochs", "1"])
    settings = TrainSettings.from_config(cfg)
    assert settings.preset.name == "official" and cfg["dataset"]["num_classes"] == 10
    net = build_model(cfg, settings)
    assert net.fc.out_features + net.fc_unknown.out_features == 11      # the K+1 = 11 classifier
    g = torch.Generator().manual_seed(0)
    # 10 steps per epoch: the released vote averages the first int(T / 10) steps of an epoch
    batches = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(10)]
    trainer = MoonTrainer(net, batches, settings)
    assert isinstance(trainer.masking, OfficialMasking)
    assert isinstance(trainer.masking.dropconnect, DropConnect)         # 1 % DropConnect every step
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    trainer.train_epoch()
    changed = [n for n, p in net.named_parameters() if not torch.equal(p, before[n])]
    assert changed                                                      # it trained
    assert abs(trainer.masking.density() - settings.sparse.density) < 0.01   # Bernoulli ERK: near, not exact


def test_the_cifar10_stack_with_the_official_preset_stops_at_the_missing_data(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "main.py"), "--engine", "standalone", "--config", *STACK],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "images_classic" in out.stderr and "train_cifar10.txt" in out.stderr
