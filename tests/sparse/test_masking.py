"""Masks keep exact per-layer counts, stay exactly zero, and RigL/SET grow where they should."""
import pytest
import torch
from torch import nn

from openood_moon.sparse import Masking, cosine_drop_fraction, layer_counts


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 5))


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def backward(model, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_counts_exact_and_masked_weights_zero_through_100_updates(method):
    model = tiny_model()
    masking = Masking(model, method, density=0.2, interval=1, end_step=400, seed=3)
    opt = sgd(model)
    counts = layer_counts(model, 0.2)
    start = {n: m.clone() for n, m in masking.masks.items()}
    updates = 0
    for step in range(1, 101):
        backward(model, step)
        updates += masking.step(opt, step)
        for name, mask in masking.masks.items():
            weight = masking.params[name]
            assert int(mask.sum()) == counts[name]
            assert torch.count_nonzero(weight[~mask]) == 0
            buf = opt.state[weight]["momentum_buffer"]
            assert torch.count_nonzero(buf[~mask]) == 0
    assert updates == 100
    changed = sum(int((start[n] != m).sum()) for n, m in masking.masks.items())
    assert changed > 0, "100 updates should have moved the topology"


def test_rigl_grows_exactly_the_inactive_positions_with_largest_dense_gradient():
    model = tiny_model(1)
    masking = Masking(model, "rigl", density=0.3, interval=10, end_step=100, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)          # lr 0: weights do not move
    backward(model, 7)
    before = {n: m.clone() for n, m in masking.masks.items()}
    grads = {n: p.grad.abs().clone() for n, p in masking.params.items()}
    weights = {n: p.detach().clone() for n, p in masking.params.items()}
    fraction = cosine_drop_fraction(10, 0.3, 100)
    assert masking.step(opt, 10)
    for name, old in before.items():
        new, n = masking.masks[name], min(round(fraction * int(old.sum())), int((~old).sum()))
        grown, dropped = (new & ~old).view(-1), (old & ~new).view(-1)
        expected_grow = torch.topk(grads[name].view(-1).masked_fill(old.view(-1), -1.0), n).indices
        expected_drop = torch.topk(weights[name].abs().view(-1).masked_fill(~old.view(-1), float("inf")),
                                   n, largest=False).indices
        assert set(grown.nonzero().view(-1).tolist()) == set(expected_grow.tolist())
        assert set(dropped.nonzero().view(-1).tolist()) == set(expected_drop.tolist())
        assert torch.all(masking.params[name].view(-1)[grown] == 0), "grown weights start at zero"


def test_grown_weights_get_zero_momentum():
    model = tiny_model(2)
    masking = Masking(model, "rigl", density=0.3, interval=5, end_step=100)
    opt = sgd(model)
    for step in range(1, 6):
        backward(model, step)
        before = {n: m.clone() for n, m in masking.masks.items()}
        masking.step(opt, step)
    grown_total = 0
    for name, old in before.items():
        grown = masking.masks[name] & ~old
        grown_total += int(grown.sum())
        assert torch.all(opt.state[masking.params[name]]["momentum_buffer"][grown] == 0)
    assert grown_total > 0


def test_set_growth_is_reproducible_from_seed():
    def run(seed):
        model = tiny_model()
        masking = Masking(model, "set", density=0.2, interval=1, end_step=50, seed=seed)
        opt = sgd(model)
        for step in range(1, 11):
            backward(model, step)
            masking.step(opt, step)
        return masking.masks
    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_static_and_after_end_step_never_change_topology():
    model = tiny_model()
    static = Masking(model, "static", density=0.2, interval=1, end_step=100)
    assert not any(static.is_update_step(s) for s in range(1, 200))
    rigl = Masking(tiny_model(), "rigl", density=0.2, interval=10, end_step=35)
    assert [s for s in range(1, 100) if rigl.is_update_step(s)] == [10, 20, 30]


def test_cosine_drop_fraction():
    assert cosine_drop_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert cosine_drop_fraction(100, 0.3, 100) == 0.0


def test_state_dict_round_trip_and_dense_is_a_no_op():
    model = tiny_model()
    a = Masking(model, "set", density=0.2, seed=1)
    b = Masking(tiny_model(), "set", density=0.2, seed=2)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    dense = Masking(tiny_model(), "dense")
    assert dense.masks == {} and dense.density() == 1.0


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="valid choices: dense, static, set, rigl"):
        Masking(tiny_model(), "snip")
