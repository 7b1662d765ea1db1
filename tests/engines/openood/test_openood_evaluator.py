"""The embedded benchmark in OpenOOD's Evaluator API, offline; OpenOOD's own train pipeline on it."""
import pytest
import torch

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]

ROWS = ["mnist6789", "nearood", "textures", "natural", "lfw", "noise", "farood"]


def test_register_embedded_fills_the_evaluator_registries(mnist6_data):
    import openood.evaluation_api.datasets as eds
    import openood.evaluation_api.preprocessor as epp
    import openood.postprocessors.info as pinfo

    from openood_moon.engines.openood.datasets import register_embedded

    info = eds.DATA_INFO["mnist6"]
    assert info["num_classes"] == 6 and info["ood"]["near"]["datasets"] == ["mnist6789"]
    assert info["ood"]["far"]["datasets"] == ["textures", "natural", "lfw", "noise"]
    assert eds.benchmarks_dict["mnist6"] == [] and pinfo.num_classes_dict["mnist6"] == 6
    assert epp.default_preprocessing_dict["mnist6"]["img_size"] == 28
    before = [id(d["mnist6"]) for d in (eds.DATA_INFO, eds.benchmarks_dict, epp.default_preprocessing_dict)]
    assert register_embedded(mnist6_data) == mnist6_data  # idempotent: same entries, same objects
    assert before == [id(d["mnist6"]) for d in (eds.DATA_INFO, eds.benchmarks_dict,
                                                 epp.default_preprocessing_dict)]


def test_openood_builtin_names_are_protected(mnist6_data):
    from openood_moon.engines.openood.datasets import register_benchmark

    with pytest.raises(ValueError, match="own"):
        register_benchmark("cifar10", {}, mnist6_data, 10)


@pytest.mark.parametrize("pp", ["msp", "moon"])
def test_evaluator_runs_offline(pp, mnist6_data, config_root, no_downloads, device):
    from openood.evaluation_api import Evaluator

    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(6) if pp == "msp" else MoonNet(SmallCNN(6), 6)
    evaluator = Evaluator(net.to(device).eval(), id_name="mnist6", data_root=str(mnist6_data),
                          config_root=str(config_root), postprocessor_name=pp, batch_size=500,
                          num_workers=0)
    table = evaluator.eval_ood(progress=False)
    assert list(table.index) == ROWS
    assert list(table.columns) == ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    assert table.notna().all().all() and ((table >= 0) & (table <= 100)).all().all()


def test_openood_train_pipeline_runs_one_epoch(mnist6_data, device, tmp_path, capsys):
    """OpenOOD's unmodified `train` pipeline + `base` trainer on the embedded data (our small_cnn)."""
    from openood.pipelines import get_pipeline
    from openood.utils.config import Config, merge_configs

    from openood_moon.engines.openood.datasets import openood_dataset_config

    sections = openood_dataset_config("mnist6", train_batch_size=32, eval_batch_size=500)
    run = {"exp_name": "base", "output_dir": str(tmp_path), "save_output": False, "merge_option": "merge",
           "seed": 0, "num_gpus": 1 if device.type == "cuda" else 0, "num_workers": 0, "num_machines": 1,
           "machine_rank": 0, "preprocessor": {"name": "base"}, "pipeline": {"name": "train"},
           "trainer": {"name": "base"}, "evaluator": {"name": "base"},
           "optimizer": {"name": "sgd", "num_epochs": 1, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
           "recorder": {"name": "base", "save_all_models": False},
           "network": {"name": "small_cnn", "num_classes": "@{dataset.num_classes}", "pretrained": False,
                       "checkpoint": None, "num_gpus": "@{num_gpus}"},
           "dataset": sections["dataset"]}
    config = merge_configs(Config(run))
    config.parse_refs()
    get_pipeline(config).run()
    out = capsys.readouterr().out
    assert "Completed!" in out and (tmp_path / "best.ckpt").is_file()
    acc = float(out.split("Last accuracy")[1].split()[0])
    assert acc > 50.0  # six balanced classes: chance is 16.7
