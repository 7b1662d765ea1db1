"""The trainer on scikit-learn's 8x8 digits: every variant runs, sparse+MOON learns, resume is exact."""
import math

import pytest
import torch

from openood_moon.checkpoint import load_checkpoint, save_checkpoint
from openood_moon.config import ConfigError
from openood_moon.data.digits import digits_loaders
from openood_moon.moon import MoonNet
from openood_moon.networks import SmallCNN
from openood_moon.trainer import MoonTrainer


def make(seed=0, use_moon=True, **cfg_over):
    torch.manual_seed(seed)
    backbone = SmallCNN(6, in_channels=1, width=16, feature_size=64)
    net = MoonNet(backbone) if use_moon else backbone
    cfg = {"seed": seed, "optimizer": {"num_epochs": 15, "lr": 0.05},
           "sparse": {"method": "rigl", "density": 0.1, "interval": 4},
           "moon": {"enabled": use_moon, "warmup_epochs": 3, "vote_epochs": 3}}
    for section, values in cfg_over.items():
        cfg[section].update(values)
    loaders = digits_loaders(batch_size=64, seed=seed)
    return MoonTrainer(net, loaders["id"]["train"], cfg), loaders


def accuracy(model, loader):
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def test_sparse_moon_at_90_percent_learns_digits_quickly():
    trainer, loaders = make(seed=0)
    losses = []
    model = trainer.fit(lambda m: losses.append(m["loss"]))
    assert all(math.isfinite(v) for v in losses)
    # Floor: seeds 0, 1, 2 measured 0.994, 0.982, 0.988 test accuracy (chance is 1/6); 0.90 leaves room for
    # platform noise while a broken mask, loss or vote lands far below it.
    assert accuracy(model, loaders["id"]["test"]) > 0.90
    assert trainer.masking.density() == pytest.approx(0.10, abs=0.001)
    named = dict(model.named_parameters())
    for name, mask in trainer.masking.masks.items():
        assert torch.count_nonzero(named[name][~mask]) == 0      # the vote is exactly as sparse
    assert trainer.vote.count == 3 * 10 and trainer.masking.updates_done > 0


@pytest.mark.parametrize("method", ["dense", "static", "set", "rigl"])
@pytest.mark.parametrize("moon", [False, True])
def test_every_variant_trains_with_finite_loss(method, moon):
    trainer, _ = make(use_moon=moon, optimizer={"num_epochs": 3}, moon={"warmup_epochs": 1, "vote_epochs": 1},
                      sparse={"method": method})
    metrics = [trainer.train_epoch() for _ in range(3)]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    assert (trainer.voted is not None) == moon
    expected = 1.0 if method == "dense" else 0.1
    assert trainer.masking.density() == pytest.approx(expected, abs=0.001)


def test_resume_from_checkpoint_is_exact(tmp_path):
    over = dict(optimizer={"num_epochs": 4}, moon={"warmup_epochs": 1, "vote_epochs": 2})
    straight, _ = make(seed=1, **over)
    straight.fit()
    first, _ = make(seed=1, **over)
    first.train_epoch()
    first.train_epoch()
    save_checkpoint(first.state_dict(), str(tmp_path / "ckpt.pt"))
    resumed, _ = make(seed=1, **over)
    resumed.load_state_dict(load_checkpoint(str(tmp_path / "ckpt.pt")))    # weights_only=True
    resumed.fit()
    for a, b in zip(straight.model_for_eval().state_dict().values(),
                    resumed.model_for_eval().state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.tuner.alpha == straight.tuner.alpha and resumed.step == straight.step


def test_bad_settings_name_the_key_and_the_choices():
    with pytest.raises(ConfigError, match="valid choices: dense, static, set, rigl"):
        make(sparse={"method": "snip"})
    with pytest.raises(ConfigError, match=r"moon.warmup_epochs \(0\) must be in \[1"):
        make(moon={"warmup_epochs": 0})
    with pytest.raises(ConfigError, match="did you mean moon.alpha_final"):
        make(moon={"alpha_finale": 1.0})
    loaders = digits_loaders()
    cfg = {"moon": {"enabled": True}, "optimizer": {"num_epochs": 10}}
    with pytest.raises(ValueError, match="needs a MoonNet"):
        MoonTrainer(SmallCNN(6, in_channels=1), loaders["id"]["train"], cfg)


def test_official_preset_trains_with_the_released_vote_and_bernoulli_masks():
    """--preset official in the trainer: the vote holds floor(T/10) snapshots of each vote epoch plus the
    model after the last non-vote epoch (released code), masks are Bernoulli (density near, not at, 0.1)."""
    torch.manual_seed(0)
    backbone = SmallCNN(6, in_channels=1, width=16, feature_size=64)
    loaders = digits_loaders(batch_size=64, seed=0)
    cfg = {"seed": 0, "optimizer": {"num_epochs": 15, "lr": 0.05}, "preset": {"name": "official"},
           "sparse": {"method": "rigl", "density": 0.1, "interval": 4},
           "moon": {"enabled": True, "warmup_epochs": 3, "vote_epochs": 3}}
    trainer = MoonTrainer(MoonNet(backbone), loaders["id"]["train"], cfg)
    steps = trainer.steps_per_epoch
    model = trainer.fit()
    assert trainer.vote.count == 3 * (steps // 10) + 1
    assert accuracy(model, loaders["id"]["test"]) > 0.90
    assert trainer.masking.density() != pytest.approx(0.10, abs=1e-6)
    assert trainer.masking.density() == pytest.approx(0.10, abs=0.02)
