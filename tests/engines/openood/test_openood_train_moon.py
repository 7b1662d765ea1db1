"""train_moon end to end in the real OpenOOD, the moon trainer adapter, and checkpoint compatibility."""
import os
from pathlib import Path

import pytest
import torch

from openood_moon.config import ConfigError

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]

ROWS = ["mnist6789", "nearood", "textures", "natural", "lfw", "noise", "farood"]


@pytest.fixture
def restore(mnist6_data):
    """Undo the run's process-wide effects: the CPU shim and a subset registration of mnist6."""
    from openood_moon.engines.openood import compat
    from openood_moon.engines.openood.datasets import register_embedded

    shim_before = compat.cpu_shim_active()
    yield
    register_embedded(mnist6_data)
    if not shim_before:
        compat.uninstall_cpu_shim()


def _tiny_moon_config(data_root, output_dir, *extra):
    from openood_moon.job_config import job_config

    cfg = job_config([], [
        "--optimizer.num_epochs", "3", "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1",
        "--moon.snapshots_per_epoch", "2", "--output_dir", str(output_dir), "--dataset.data_root", str(data_root),
        "--dataset.subset", "300", *extra])
    cfg["evaluation"].update(postprocessors=["msp", "ebo", "knn", "react", "moon"],
                             postprocessor_args={"knn": {"k": 5}, "react": {"percentile": 90}})
    return cfg


def test_names_resolve_to_our_classes():
    import openood.pipelines.utils as pu
    from openood.utils import Config

    from openood_moon.engines.openood.pipeline import TrainMoonPipeline

    assert type(pu.get_pipeline(Config({"pipeline": {"name": "train_moon"}}))) is TrainMoonPipeline


def test_trainer_adapter_follows_openood_interface():
    import openood.trainers.utils as tu
    from openood.utils import Config
    from torch.utils.data import DataLoader, TensorDataset

    from openood_moon.engines.openood.trainer import OpenOODMoonTrainer
    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 28, 28), torch.randint(0, 6, (32,)))
    loader = DataLoader(data, batch_size=8)
    config = Config({"trainer": {"name": "moon"}, "seed": 0,
                     "optimizer": {"num_epochs": 2, "lr": 0.01},
                     "sparse": {"method": "rigl", "density": 0.5, "interval": 2},
                     "moon": {"enabled": True, "warmup_epochs": 1, "vote_epochs": 1, "snapshots_per_epoch": 2}})
    trainer = tu.get_trainer(MoonNet(SmallCNN(6), 6), loader, loader, config)
    assert isinstance(trainer, OpenOODMoonTrainer)
    net, metrics = trainer.train_epoch(1)
    assert metrics["epoch_idx"] == 1 and metrics["loss"] > 0 and net.fc.out_features == 6
    voted, metrics = trainer.train_epoch(2)
    assert metrics["epoch_idx"] == 2 and voted is trainer.model_for_eval() and trainer.epoch == 2


def test_train_moon_end_to_end(mnist6_data, tmp_path, restore, capsys):
    from openood_moon.engines.openood.main import run
    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    result = run(_tiny_moon_config(mnist6_data, tmp_path))
    run_dir = result["run_dir"]
    root = os.path.dirname(run_dir)
    assert os.path.basename(run_dir) == "s0" and set(result["tables"]) == {"msp", "ebo", "knn", "react", "moon"}
    # best.ckpt: plain K-way backbone, strict; moon_net.ckpt: with the unknown head
    SmallCNN(6).load_state_dict(torch.load(os.path.join(run_dir, "best.ckpt"), weights_only=True))
    MoonNet(SmallCNN(6), 6).load_state_dict(torch.load(os.path.join(run_dir, "moon_net.ckpt"), weights_only=True))
    assert os.path.isfile(os.path.join(run_dir, "checkpoint.pt"))
    for pp in result["tables"]:
        with open(os.path.join(root, "ood", f"{pp}.csv")) as f:
            lines = f.read().splitlines()
        assert lines[0].startswith(",FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC,postprocessor_settings,searched")
        assert [line.split(",")[0] for line in lines[1:]] == ROWS and "\u00b1" in lines[1]
    assert {"ACC", "ECE", "ACC_K1", "ECE_K1"} <= set(result["id"])
    assert list((Path(run_dir) / "plots").glob("*.png"))            # the same files as the standalone engine
    assert run(_tiny_moon_config(mnist6_data, tmp_path))["skipped"]  # a finished run is not redone
    with pytest.raises(ConfigError, match=r"moon.alpha_final \(1.0 -> 0.5\)"):
        run(_tiny_moon_config(mnist6_data, tmp_path, "--moon.alpha_final", "0.5"))


def test_openood_train_pipeline_accepts_moon_names(mnist6_data, tmp_path, restore, capsys):
    """OpenOOD's own `train` pipeline with network `moon` (over small_cnn) and trainer `moon`."""
    import openood.evaluation_api.datasets as eds
    from openood.pipelines import get_pipeline
    from openood.utils.config import Config

    from openood_moon.engines.openood import compat
    from openood_moon.engines.openood.datasets import openood_dataset_config
    from openood_moon.engines.openood.run_data import _subset_info

    compat.install_cpu_shim()
    info = _subset_info(eds.DATA_INFO["mnist6"], 200, str(tmp_path / "lists"), "mnist6")
    dataset = openood_dataset_config("mnist6", train_batch_size=32)["dataset"]
    for split in ("train", "val", "test"):
        dataset[split]["imglist_pth"] = info["id"][split]["imglist_path"]
    config = Config({
        "exp_name": "moon", "output_dir": str(tmp_path), "save_output": False, "merge_option": "merge", "seed": 0,
        "num_gpus": 1 if torch.cuda.is_available() else 0, "num_workers": 0, "num_machines": 1, "machine_rank": 0,
        "preprocessor": {"name": "base"}, "pipeline": {"name": "train"}, "trainer": {"name": "moon"},
        "evaluator": {"name": "base"}, "recorder": {"name": "base", "save_all_models": False},
        "optimizer": {"name": "sgd", "num_epochs": 2, "lr": 0.05},
        "moon": {"enabled": True, "warmup_epochs": 1, "vote_epochs": 0, "vote": False},
        "sparse": {"method": "set", "density": 0.5},
        "network": {"name": "moon", "num_classes": 6, "pretrained": False, "num_gpus": "@{num_gpus}",
                    "backbone": {"name": "small_cnn", "num_classes": 6, "pretrained": False}},
        "dataset": dataset})
    config.parse_refs()
    get_pipeline(config).run()
    assert "Completed!" in capsys.readouterr().out
    keys = torch.load(tmp_path / "best.ckpt", weights_only=True).keys()
    assert "fc_unknown.weight" in keys  # OpenOOD's recorder saves the whole MoonNet


def test_resnet_checkpoints_are_interchangeable():
    """Our ResNet18_32x32 and an exported MOON ResNet load strictly into OpenOOD's, and back."""
    from openood.networks import ResNet18_32x32 as OpenOODResNet

    from openood_moon.moon.net import MoonNet, export_state_dict
    from openood_moon.networks import ResNet18_32x32

    ours, theirs = ResNet18_32x32(num_classes=10), OpenOODResNet(num_classes=10)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(export_state_dict(MoonNet(ResNet18_32x32(num_classes=10), 10)), strict=True)
