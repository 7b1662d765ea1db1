"""The vote is the arithmetic mean of its snapshots, keeps the sparsity, and recalibrates BN exactly."""
import torch
from torch import nn

from openood_moon.moon import WeightVote, recalibrate_batchnorm
from openood_moon.sparse import Masking


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_vote_is_the_mean_of_snapshots_and_exactly_as_sparse_as_the_masks():
    net = model()
    masking = Masking(net, "static", density=0.3)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    vote, snapshots = WeightVote(), []
    for step in range(1, 6):
        x = torch.randn(8, 2, 6, 6)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        masking.step(opt, step)
        vote.add(net)
        snapshots.append([p.detach().clone() for p in net.parameters()])
    avg = vote.averaged_model(net)
    for p, *snaps in zip(avg.parameters(), *snapshots):
        torch.testing.assert_close(p, torch.stack(snaps).mean(0), rtol=1e-6, atol=1e-7)
    named = dict(avg.named_parameters())
    for name, mask in masking.masks.items():
        assert torch.count_nonzero(named[name][~mask]) == 0
        assert torch.count_nonzero(named[name][mask]) == int(mask.sum())


def test_bn_recalibration_gives_exact_mean_and_unbiased_variance_of_all_inputs():
    net = model()
    data = torch.randn(100, 2, 6, 6) * 3 + 1
    batches = list(data.split(32))                         # unequal last batch (4 samples)
    recalibrate_batchnorm(net, batches)
    feats = net[0](data).detach().double()                 # inputs of the BN layer
    bn = net[1]
    torch.testing.assert_close(bn.running_mean.double(), feats.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), feats.transpose(0, 1).reshape(4, -1).var(1),
                               rtol=1e-5, atol=1e-6)


def test_vote_state_round_trip():
    net, vote = model(), WeightVote()
    vote.add(net)
    vote.add(net)
    other = WeightVote()
    other.load_state_dict(vote.state_dict())
    assert other.count == 2 and all(torch.equal(a, b) for a, b in zip(other.mean, vote.mean))
