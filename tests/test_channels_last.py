"""Channels-last batches on the CPU (measured faster there: docs/benchmarks.md): the network sees its
training batches, the vote's BatchNorm pass and evaluation batches channels-last, and training gives the results of the default memory format within
float tolerance (only the convolution's summation order differs); other devices keep the default."""
import pytest
import torch

import openood_moon.netutils as netutils
from openood_moon.evaluation.outputs import collect_outputs
from openood_moon.moon import WeightVote
from openood_moon.networks import SmallCNN
from openood_moon.trainer import MoonTrainer


def spy(net):
    """``net`` recording, per forward pass, whether its batch arrives channels-last (NHWC strides)."""
    net.seen = []
    net.register_forward_pre_hook(lambda module, args: module.seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous()))
    return net


def batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, 28, 28, generator=g), torch.randint(0, 6, (16,), generator=g)) for _ in range(n)]


def trainer(net, loader):
    cfg = {"seed": 0, "optimizer": {"num_epochs": 2, "lr": 0.05},
           "sparse": {"method": "rigl", "density": 0.2, "interval": 2}, "moon": {"enabled": False}}
    return MoonTrainer(net, loader, cfg, "cpu")


def test_cpu_training_batches_reach_the_network_channels_last():
    torch.manual_seed(0)
    net = spy(SmallCNN(6))
    trainer(net, batches()).train_epoch()
    assert net.seen == [True] * 4


def test_vote_batchnorm_pass_and_evaluation_see_channels_last_batches():
    torch.manual_seed(0)
    t = trainer(spy(SmallCNN(6)), batches())
    t.train_epoch()
    t.module.seen.clear()
    t.vote = WeightVote()
    t.vote.add(t.module)
    voted = t.finalize_vote()                 # a copy of the spy: its own `seen`, filled by the BN pass
    assert voted.seen == [True] * 4
    voted.seen.clear()
    collect_outputs(voted, batches(2, seed=1))
    assert voted.seen == [True] * 2


def test_other_devices_keep_the_default_format():
    assert netutils.channels_last_on(torch.device("cpu"))
    assert not netutils.channels_last_on(torch.device("cuda"))


def train_two_epochs(monkeypatch, channels_last):
    monkeypatch.setattr(netutils, "CHANNELS_LAST_DEVICES", ("cpu",) if channels_last else ())
    torch.manual_seed(0)
    t = trainer(SmallCNN(6), batches())
    metrics = [t.train_epoch() for _ in range(2)]
    return t, metrics


def test_channels_last_training_matches_the_default_format_within_float_tolerance(monkeypatch):
    fast, fast_metrics = train_two_epochs(monkeypatch, True)
    plain, plain_metrics = train_two_epochs(monkeypatch, False)
    for a, b in zip(fast_metrics, plain_metrics):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    for (name, a), b in zip(fast.net.state_dict().items(), plain.net.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5), name
    assert all(torch.equal(fast.masking.masks[k], plain.masking.masks[k]) for k in plain.masking.masks)
    x = batches(1, seed=1)[0][0]
    fast.net.eval(), plain.net.eval()
    with torch.no_grad():
        assert torch.allclose(fast.net(x.contiguous(memory_format=torch.channels_last)), plain.net(x),
                              rtol=1e-4, atol=1e-5)
