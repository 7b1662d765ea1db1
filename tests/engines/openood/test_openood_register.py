"""register(): MOON's names resolve in a real OpenOOD, OpenOOD's own names still do, twice is once."""
import importlib
import sys

import pytest

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]


def _openood_bindings():
    return {(name, attr): id(value) for name, mod in list(sys.modules.items())
            if mod is not None and (name == "openood" or name.startswith("openood."))
            for attr, value in list(vars(mod).items()) if callable(value)}


def _cfg(**kw):
    from openood.utils import Config

    return Config(kw)


def test_register_twice_changes_nothing():
    from openood_moon.engines.openood import register

    register()
    before = _openood_bindings()
    assert register() == {"get_network": 0, "get_trainer": 0, "get_pipeline": 0, "get_postprocessor": 0,
                          "get_preprocessor": 0}
    assert _openood_bindings() == before


def test_no_module_keeps_an_original_factory():
    import openood.networks.utils as nu
    import openood.pipelines.utils as pu
    import openood.postprocessors.utils as ppu
    import openood.preprocessors.utils as pru
    import openood.trainers.utils as tu

    originals = {f.__wrapped__ for f in (nu.get_network, tu.get_trainer, pu.get_pipeline, ppu.get_postprocessor,
                                         pru.get_preprocessor)}
    assert len(originals) == 5
    holders = [(name, attr) for name, mod in list(sys.modules.items())
               if mod is not None and name.startswith("openood")
               for attr, value in list(vars(mod).items()) if any(value is o for o in originals)]
    assert holders == []
    # a consumer module picked at random sees the wrapper
    assert importlib.import_module("openood.pipelines.train_pipeline").get_network is nu.get_network
    # get_dataloader's module holds its own copy of get_preprocessor
    assert importlib.import_module("openood.datasets.utils").get_preprocessor is pru.get_preprocessor


def test_moon_network_and_own_backbones_resolve():
    import openood.networks.utils as nu
    from openood.networks import ResNet18_32x32 as OpenOODResNet

    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    moon = nu.get_network(_cfg(name="moon", num_classes=6, pretrained=False, num_gpus=0,
                               backbone={"name": "small_cnn", "num_classes": 6, "pretrained": False}))
    assert isinstance(moon, MoonNet) and isinstance(moon.backbone, SmallCNN) and moon.fc.out_features == 6
    moon_resnet = nu.get_network(_cfg(name="moon", num_classes=10, pretrained=False, num_gpus=0,
                                      backbone={"name": "resnet18_32x32", "num_classes": 10,
                                                "pretrained": False}))
    assert type(moon_resnet.backbone) is OpenOODResNet  # OpenOOD's own class for its own name
    assert isinstance(nu.get_network(_cfg(name="small_cnn", num_classes=6, pretrained=False,
                                          num_gpus=0)), SmallCNN)
    assert type(nu.get_network(_cfg(name="resnet18_32x32", num_classes=10, pretrained=False,
                                    num_gpus=0))) is OpenOODResNet
    with pytest.raises(Exception, match="Unexpected Network Architecture"):
        nu.get_network(_cfg(name="no_such_net", num_classes=2, pretrained=False, num_gpus=0))


def test_options_openoods_class_ignores_build_ours():
    """network.width (the study's quarter-width ResNet) must not silently give OpenOOD's full width."""
    import openood.networks.utils as nu

    from openood_moon.networks import ResNet18_32x32

    narrow = nu.get_network(_cfg(name="resnet18_32x32", num_classes=10, in_channels=3, width=16,
                                 pretrained=False, num_gpus=0))
    assert type(narrow) is ResNet18_32x32 and narrow.feature_size == 128
    moon = nu.get_network(_cfg(name="moon", num_classes=6, pretrained=False, num_gpus=0,
                               backbone={"name": "resnet18_32x32", "num_classes": 6, "width": 16,
                                         "pretrained": False}))
    assert type(moon.backbone) is ResNet18_32x32 and moon.fc_unknown.in_features == 128


def test_moon_network_loads_a_plain_export(tmp_path):
    import torch

    import openood.networks.utils as nu
    from openood_moon.moon.net import export_state_dict

    cfg = dict(name="moon", num_classes=6, pretrained=False, num_gpus=0,
               backbone={"name": "small_cnn", "num_classes": 6, "pretrained": False})
    trained = nu.get_network(_cfg(**cfg))
    torch.save(export_state_dict(trained), tmp_path / "plain.ckpt")
    torch.save(trained.state_dict(), tmp_path / "full.ckpt")
    for ckpt in ("plain.ckpt", "full.ckpt"):
        loaded = nu.get_network(_cfg(**{**cfg, "pretrained": True, "checkpoint": str(tmp_path / ckpt)}))
        for key, value in export_state_dict(trained).items():
            assert torch.equal(loaded.backbone.state_dict()[key], value)
    assert torch.equal(loaded.fc_unknown.weight, trained.fc_unknown.weight)


def test_openood_own_trainer_and_pipeline_names_still_resolve():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import openood.pipelines.utils as pu
    import openood.trainers.utils as tu
    from openood.pipelines.test_ood_pipeline import TestOODPipeline
    from openood.pipelines.train_pipeline import TrainPipeline
    from openood.trainers.base_trainer import BaseTrainer

    config = _cfg(pipeline={"name": "train"}, trainer={"name": "base"},
                  optimizer={"num_epochs": 1, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4})
    assert type(pu.get_pipeline(config)) is TrainPipeline
    config.pipeline.name = "test_ood"
    assert type(pu.get_pipeline(config)) is TestOODPipeline
    loader = DataLoader(TensorDataset(torch.zeros(4, 3)), batch_size=2)
    assert type(tu.get_trainer(torch.nn.Linear(3, 2), loader, loader, config)) is BaseTrainer
    with pytest.raises(KeyError):
        pu.get_pipeline(_cfg(pipeline={"name": "no_such_pipeline"}))


def test_moon_postprocessor_in_both_registries():
    import openood.evaluation_api.postprocessor as epp
    import openood.postprocessors.utils as ppu
    from openood.postprocessors import BasePostprocessor

    from openood_moon.engines.openood.postprocessor import MoonPostprocessor

    assert epp.postprocessors["moon"] is MoonPostprocessor and epp.postprocessors["msp"] is BasePostprocessor
    assert type(ppu.get_postprocessor(_cfg(postprocessor={"name": "moon"}))) is MoonPostprocessor
    assert type(ppu.get_postprocessor(_cfg(postprocessor={"name": "msp"}))) is BasePostprocessor


def test_moon_score_is_the_papers():
    import torch

    from openood_moon.engines.openood.postprocessor import MoonPostprocessor
    from openood_moon.moon.net import MoonNet
    from openood_moon.networks import SmallCNN

    torch.manual_seed(0)
    net = MoonNet(SmallCNN(6), 6).eval()
    x = torch.randn(5, 3, 28, 28)
    pred, conf = MoonPostprocessor(None).postprocess(net, x)
    p = torch.softmax(net(x, return_unknown=True).double(), dim=1)[:, :6]
    assert torch.allclose(conf, p.max(1).values) and torch.equal(pred, p.argmax(1))
    plain = SmallCNN(6).eval()
    pred, conf = MoonPostprocessor(None).postprocess(plain, x)  # plain K-way net: MSP
    assert torch.allclose(conf.double(), torch.softmax(plain(x), 1).max(1).values.double())
