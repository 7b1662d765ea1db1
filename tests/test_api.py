"""The public API named in the README resolves, and its example trains a sparse MOON model."""
import torch

import openood_moon


def test_every_public_name_resolves_without_openood():
    for name in openood_moon.__all__:
        assert callable(getattr(openood_moon, name)), name


def test_readme_example_trains_a_90_percent_sparse_moon_model():
    from openood_moon import MoonNet, MoonTrainer, SmallCNN, digits_loaders
    loaders = digits_loaders(batch_size=64)
    net = MoonNet(SmallCNN(num_classes=6, in_channels=1))
    cfg = {"optimizer": {"num_epochs": 3}, "sparse": {"method": "rigl", "density": 0.1, "interval": 5},
           "moon": {"warmup_epochs": 1, "vote_epochs": 1}}
    trainer = MoonTrainer(net, loaders["id"]["train"], cfg)
    model = trainer.fit()
    x, _ = next(iter(loaders["id"]["test"]))
    assert model(x).shape[1] == 6 and model(x, return_unknown=True).shape[1] == 7
    assert abs(trainer.masking.density() - 0.1) < 1e-3 and torch.isfinite(model(x)).all()
