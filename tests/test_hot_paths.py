"""The faster hot paths give the results of the plain ones: SmallCNN's reordered forward (pool before
ReLU, no identity pool) and the trainer's metrics summed on the device with a deferred NaN check."""
import pytest
import torch
import torch.nn.functional as F

import openood_moon.trainer as trainer_module
from openood_moon.data.digits import digits_loaders
from openood_moon.networks import SmallCNN
from openood_moon.trainer import MoonTrainer


def relu_then_pool_forward(net, x):
    """SmallCNN's forward as first written: ReLU, then max-pool, then the adaptive pool to 7x7."""
    f1 = F.max_pool2d(F.relu(net.bn1(net.conv1(x))), 2)
    f2 = F.adaptive_avg_pool2d(F.max_pool2d(F.relu(net.bn2(net.conv2(f1))), 2), 7)
    feature = F.relu(net.fc1(f2.flatten(1)))
    return net.fc(feature), [f1, f2, feature]


@pytest.mark.parametrize("size", [28, 32])                  # 7x7 maps (pool skipped) and 8x8 maps (pooled)
def test_small_cnn_values_features_and_gradients_are_those_of_relu_then_pool(size):
    torch.manual_seed(0)
    net = SmallCNN(6, in_channels=3)
    x = torch.randn(16, 3, size, size)
    x[:4] = -x[:4].abs()                                     # whole regions <= 0: ReLU ties after pooling
    net.train()
    expected, expected_feats = relu_then_pool_forward(net, x)
    expected.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    logits, feats = net(x, return_feature_list=True)
    logits.square().sum().backward()
    assert torch.equal(logits, expected)
    for got, want in zip(feats, expected_feats):
        assert torch.equal(got.flatten(1), want.flatten(1))
    for name, p in net.named_parameters():
        assert torch.equal(p.grad, grads[name]), name


def make(interval=3):
    torch.manual_seed(0)
    net = SmallCNN(6, in_channels=1, width=8, feature_size=16)
    cfg = {"seed": 0, "optimizer": {"num_epochs": 2, "lr": 0.05},
           "sparse": {"method": "rigl", "density": 0.2, "interval": interval}, "moon": {"enabled": False}}
    return MoonTrainer(net, digits_loaders(batch_size=64, seed=0)["id"]["train"], cfg)


def test_epoch_loss_and_accuracy_are_the_python_float_sums_of_the_steps(monkeypatch):
    trainer = make()
    seen = []
    real = F.cross_entropy

    def recording(logits, y):
        loss = real(logits, y)
        seen.append((loss.item(), len(y), int((logits.argmax(1) == y).sum())))
        return loss

    monkeypatch.setattr(trainer_module.F, "cross_entropy", recording)
    metrics = trainer.train_epoch()
    total = 0.0
    for value, n, _ in seen:
        total += value * n                                   # the sum as plain Python floats, step by step
    count = sum(n for _, n, _ in seen)
    assert metrics["loss"] == total / count                  # bitwise: float64 on the device is the same sum
    assert metrics["train_acc"] == sum(c for _, _, c in seen) / count


class NaNAt:
    """The digits loader with NaN images in batch ``k`` (0-based) of every epoch."""

    def __init__(self, loader, k):
        self.loader, self.k = loader, k

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, (x, y) in enumerate(self.loader):
            yield (torch.full_like(x, float("nan")) if i == self.k else x), y


@pytest.mark.parametrize("every", [50, 2])                   # checked at the epoch's end / every 2 steps
def test_a_non_finite_loss_names_its_first_step_and_the_lr(monkeypatch, every):
    monkeypatch.setattr(trainer_module, "FINITE_CHECK_STEPS", every)
    trainer = make(interval=5)                               # step 3 an SGD step: NaN weights, NaN losses after it
    trainer.train_loader = NaNAt(trainer.train_loader, 2)
    lrs = []
    set_lr = trainer._set_lr
    trainer._set_lr = lambda: lrs.append(set_lr()) or lrs[-1]
    with pytest.raises(FloatingPointError) as err:
        trainer.train_epoch()
    assert str(err.value) == f"non-finite loss nan at epoch 0, step 3 (lr {lrs[2]:.4g}); lower optimizer.lr"
    assert trainer.epoch == 0                                # the epoch is not counted as complete
