"""The CIFAR config stacks: OpenOOD's own setup_config and our main.py merge them alike, the MOON
ResNet-18 builds, and without the data the run stops before training with a clear message."""
import os
import sys

import pytest

from openood_moon.config import CONFIGS_ROOT

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]


def _stack(ds):
    return [os.path.join(CONFIGS_ROOT, p) for p in (
        f"datasets/{ds}/{ds}.yml", f"datasets/{ds}/{ds}_ood.yml", "networks/resnet18_32x32.yml",
        "pipelines/train/moon.yml", "preprocessors/base_preprocessor.yml", f"experiments/{ds}_resnet18_moon.yml")]


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


@pytest.mark.parametrize("ds,k", [("cifar10", 10), ("cifar100", 100)])
def test_openood_setup_config_and_ours_agree(ds, k, monkeypatch):
    from openood.utils.config import setup_config

    from openood_moon.job_config import job_config
    from openood_moon.netutils import plain_dict
    from openood_moon.settings import TrainSettings

    monkeypatch.setattr(sys, "argv", ["main.py", "--config", *_stack(ds), "--seed", "2"])
    theirs = plain_dict(setup_config())
    ours = job_config(_stack(ds), ["--seed", "2"])
    assert theirs["exp_name"] == ours["exp_name"] == f"{ds}_resnet18_32x32_set_d0.1_e100_moon/s2"
    mine, openood = _leaves(ours), _leaves(theirs)
    # every key OpenOOD's setup_config gives has the same value in ours (ours adds the settings' defaults)
    assert {key: mine.get(key, "<absent>") for key in openood if key != "output_dir"} == \
        {key: value for key, value in openood.items() if key != "output_dir"}
    assert theirs["output_dir"] == os.path.join("./results/", ours["exp_name"])
    settings = TrainSettings.from_config(ours)
    assert (settings.optimizer.num_epochs, settings.optimizer.lr, settings.optimizer.lr_ini,
            settings.optimizer.lr_end, settings.optimizer.nesterov) == (100, 0.1, 1.2, 0.08, True)
    assert (settings.sparse.density, settings.sparse.init, settings.sparse.interval, settings.sparse.end,
            settings.sparse.drop_fraction) == (0.1, "erk", 80, 0.7, 0.3)
    assert (settings.moon.alpha_final, settings.moon.init_factor, settings.moon.warmup_epochs,
            settings.moon.vote_epochs) == (1.0, 64.0, 5, 20)
    assert ours["dataset"]["num_classes"] == ours["network"]["num_classes"] == k
    assert ours["dataset"]["train"]["batch_size"] == 128 and ours["preprocessor"]["name"] == "base"
    assert ours["ood_dataset"]["nearood"]["datasets"] == ["cifar100" if ds == "cifar10" else "cifar10", "tin"]
    assert ours["ood_dataset"]["farood"]["datasets"] == ["mnist", "svhn", "texture", "places365"]
    lists = [v for key, v in mine.items() if key.endswith("imglist_pth")]
    assert len(lists) == 10 and all(p.startswith(f"./data/benchmark_imglist/{ds}/") for p in lists)


def test_the_moon_resnet_builds_from_the_stack():
    from openood.networks import ResNet18_32x32 as OpenOODResNet
    from openood.networks.utils import get_network
    from openood.utils import Config

    from openood_moon.engines.openood.pipeline import OpenOODEngine
    from openood_moon.job_config import job_config
    from openood_moon.moon.net import MoonNet
    from openood_moon.settings import TrainSettings

    cfg = job_config(_stack("cifar100"))
    net = get_network(OpenOODEngine(Config(cfg))._network_config(TrainSettings.from_config(cfg)))
    assert isinstance(net, MoonNet) and type(net.backbone) is OpenOODResNet
    assert net.fc.out_features == 100 and net.fc_unknown.out_features == 1


@pytest.mark.parametrize("files", ["stack", "without_ood_yml"])
def test_without_cifar_data_the_run_stops_with_a_hint(files, tmp_path, monkeypatch, capsys):
    """The brief's command (no *_ood.yml) and the full stack both stop at the missing data."""
    from openood_moon.cli import main
    from openood_moon.engines.openood import compat

    stack = _stack("cifar10")
    if files == "without_ood_yml":
        stack = [p for p in stack if not p.endswith("_ood.yml")]
    monkeypatch.chdir(tmp_path)  # ./data must not exist, whatever the repo's data/ holds
    shim = compat.cpu_shim_active()
    try:
        assert main(["--config", *stack, "--engine", "openood", "--output_dir", str(tmp_path / "out")]) == 2
    finally:
        if not shim:
            compat.uninstall_cpu_shim()
    err = capsys.readouterr().err
    assert "cifar10 data not found: ./data/benchmark_imglist/cifar10/train_cifar10.txt" in err
    assert "scripts/download/download.py" in err
    assert not list((tmp_path / "out").rglob("*.ckpt"))
