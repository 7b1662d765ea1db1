"""Masks keep exact counts and stay exactly zero; topology updates follow the released MOON code.

The expectation of ``test_updates_match_the_released_truncate_weights`` is a transcription of the released
code (StevenBoys/MOON 863f49a): ``sparselearning/core.py::Masking.step`` / ``truncate_weights``,
``funcs/prune.py::magnitude_prune`` (sort |w|, ``ceil``) and ``funcs/grow.py::abs_grad_growth`` (grow among
``new_mask == 0`` after the prune, zero the grown weights), with the classifier as one ``Linear(F, K+1)``.
"""
import copy
import math

import pytest
import torch
from torch import nn

from openood_moon.moon import MoonNet
from openood_moon.sparse import Masking, budget_layers, cosine_drop_fraction, layer_counts
from tanh_net import TanhNet


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 5))


def tiny_moon(seed=0):
    torch.manual_seed(seed)
    return MoonNet(TanhNet(3))


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def backward(model, seed, moon=False):
    g = torch.Generator().manual_seed(seed)
    if moon:
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        logits = model(x, return_unknown=True)
    else:
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
        logits = model(x)
    model.zero_grad()
    nn.functional.cross_entropy(logits, y).backward()


# ---------------------------------------------------------------------- the released code, transcribed
class Released:
    """The released Masking's RigL update and plain step on a copy of the model (no DropConnect: the
    default keeps the released mechanics, not its CigL random mask; see tests/test_official.py)."""

    def __init__(self, model, masks, layers):
        self.model = copy.deepcopy(model)
        self.opt = sgd(self.model)
        named = dict(self.model.named_parameters())
        self.layers = [[named[n] for n in layer.members] for layer in layers]
        self.masks = [torch.cat([masks[n].reshape(-1) for n in layer.members]).float() for layer in layers]
        self.regrown = 0                     # weights dropped and regrown in the same update
        self.rounded_differently = False     # ceil != round at some update

    def cat(self, tensors):
        return torch.cat([t.reshape(-1) for t in tensors])

    def split(self, flat, like):
        out, offset = [], 0
        for t in like:
            out.append(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
        return out

    def apply_mask(self):
        for params, mask in zip(self.layers, self.masks):
            for p, m in zip(params, self.split(mask, params)):
                p.data = p.data * m

    def reset_momentum(self):
        for params, mask in zip(self.layers, self.masks):
            for p, m in zip(params, self.split(mask, params)):
                if "momentum_buffer" in self.opt.state[p]:
                    self.opt.state[p]["momentum_buffer"] *= m

    def step(self):                          # Masking.step without DropConnect
        self.opt.step()
        self.apply_mask()
        self.reset_momentum()

    def truncate_weights(self, prune_rate):
        for i, params in enumerate(self.layers):
            mask, weight = self.masks[i], self.cat([p.data for p in params])
            grad = self.cat([p.grad for p in params])
            nonzeros, zeros = int((mask == 1).sum()), int((mask == 0).sum())
            num_remove = math.ceil(prune_rate * nonzeros)                          # magnitude_prune
            self.rounded_differently |= num_remove != round(prune_rate * nonzeros)
            if num_remove != 0:
                _, idx = torch.sort(torch.abs(weight))
                mask = mask.clone()
                mask[idx[:zeros + num_remove]] = 0.0
            removed = nonzeros - int(mask.sum())
            new_mask = mask.bool()                                                 # abs_grad_growth
            if (new_mask == 0).sum() > 0:
                _, idx = torch.sort(torch.abs(grad * (new_mask == 0).float()), descending=True)
                new_mask[idx[:removed]] = True
                weight[idx[:removed]] = 0.0
            self.regrown += int((self.masks[i].bool() & ~mask.bool() & new_mask).sum())
            self.masks[i] = new_mask.float()
            for p, w in zip(params, self.split(weight, params)):
                p.data = w.clone()
        self.apply_mask()
        self.reset_momentum()


def test_updates_match_the_released_truncate_weights():
    """Masks, weights and momentum equal the released code's after every step of a run with 4 updates:
    just-dropped weights may regrow (at value 0, keeping their momentum), the drop count is ceil, and the
    update step has no optimizer step."""
    model = tiny_moon(3)
    end, interval = 40, 3
    masking = Masking(model, "rigl", density=0.3, drop_fraction=0.3, interval=interval, end_step=end, seed=1)
    opt = sgd(model)
    ref = Released(model, masking.masks, masking.layers)
    named = dict(model.named_parameters())
    ref_named = dict(ref.model.named_parameters())
    for step in range(1, 14):
        backward(model, step, moon=True)
        backward(ref.model, step, moon=True)
        updated = masking.step(opt, step)
        assert updated == (step % interval == 0)
        if updated:
            ref.truncate_weights(0.3 * 0.5 * (1 + math.cos(math.pi * step / end)))
        else:
            ref.step()
        ref_masks = {}
        for layer, mask, params in zip(masking.layers, ref.masks, ref.layers):
            for name, m in zip(layer.members, ref.split(mask, params)):
                ref_masks[name] = m.bool()
        for name in masking.masks:
            assert torch.equal(masking.masks[name], ref_masks[name]), (step, name)
            assert torch.equal(named[name].data, ref_named[name].data), (step, name)
            if named[name] in opt.state:
                assert torch.equal(opt.state[named[name]]["momentum_buffer"],
                                   ref.opt.state[ref_named[name]]["momentum_buffer"]), (step, name)
    assert masking.updates_done == 4
    assert ref.regrown > 0, "the run must drop and regrow some weights in one update"
    assert ref.rounded_differently, "the run must have a layer where ceil and round differ"


def test_a_just_dropped_weight_with_the_largest_gradient_regrows_at_zero_keeping_its_momentum():
    layer = nn.Linear(4, 3, bias=False)
    model = nn.Sequential(layer)
    masking = Masking(model, "rigl", density=0.5, drop_fraction=0.2, interval=1, end_step=1000, seed=0)
    mask = masking.masks["0.weight"].view(-1)
    active = mask.nonzero().view(-1).tolist()                 # 6 of 12
    with torch.no_grad():
        layer.weight.view(-1).copy_(torch.arange(1, 13, dtype=torch.float32) * mask)
    weakest = min(active)                                     # smallest |w| among the active
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.state[layer.weight]["momentum_buffer"] = layer.weight.detach().clone() * 0.5
    layer.weight.grad = torch.full((3, 4), 0.01)
    layer.weight.grad.view(-1)[weakest] = 5.0                 # the largest gradient, on the weight dropped
    n = math.ceil(cosine_drop_fraction(1, 0.2, 1000) * 6)
    assert n == 2
    masking.update_topology(1, opt, {"0.weight": layer.weight.grad.abs()})
    assert bool(masking.masks["0.weight"].view(-1)[weakest])              # dropped, then regrown
    assert float(layer.weight.detach().view(-1)[weakest]) == 0.0                   # at zero
    assert float(opt.state[layer.weight]["momentum_buffer"].view(-1)[weakest]) == 0.5 * (weakest + 1)
    assert int(masking.masks["0.weight"].sum()) == 6


def test_ceil_drop_count_swaps_a_weight_where_round_would_swap_none():
    model = nn.Sequential(nn.Linear(4, 5, bias=False))
    masking = Masking(model, "rigl", density=0.5, drop_fraction=0.06, interval=1, end_step=100, seed=0)
    before = masking.masks["0.weight"].clone()
    fraction = cosine_drop_fraction(50, 0.06, 100)            # 0.03 of 10 active weights: 0.3
    assert round(fraction * 10) == 0
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(5, 4) * before)
    grad = torch.rand(5, 4) + (~before) * 10                  # the dropped weight scores lowest: not regrown
    counts = masking.update_topology(50, None, {"0.weight": grad})
    assert counts == {"0.weight": 1}
    assert int((before & ~masking.masks["0.weight"]).sum()) == 1


def test_the_update_step_replaces_the_optimizer_step():
    model = tiny_model(4)
    masking = Masking(model, "rigl", density=0.3, interval=2, end_step=100, seed=0)
    opt = sgd(model)
    backward(model, 1)
    masking.step(opt, 1)                                      # creates momentum
    backward(model, 2)
    weights = {n: p.detach().clone() for n, p in masking.params.items()}
    momentum = {n: opt.state[p]["momentum_buffer"].clone() for n, p in masking.params.items()}
    old = {n: m.clone() for n, m in masking.masks.items()}
    biases = [p.detach().clone() for n, p in model.named_parameters() if n not in masking.params]
    counts = masking.drop_counts(2)
    assert masking.step(opt, 2)
    for layer in masking.layers:
        name, p = layer.name, masking.params[layer.name]
        kept = old[name] & masking.masks[name]
        now, then = p.detach()[kept], weights[name][kept]
        regrown = (now != then)                               # dropped and regrown in this update: now 0
        assert torch.count_nonzero(now[regrown]) == 0 and int(regrown.sum()) <= counts[name], name
        assert int(kept.sum()) - int(regrown.sum()) > 0                        # the rest: no gradient step
        assert torch.equal(opt.state[p]["momentum_buffer"][kept], momentum[name][kept]), name
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][old[name] & ~masking.masks[name]]) == 0
    others = [p.detach() for n, p in model.named_parameters() if n not in masking.params]
    assert all(torch.equal(a, b) for a, b in zip(others, biases))              # biases untouched too


def test_new_connections_start_at_zero_with_zero_momentum():
    model = tiny_model(2)
    masking = Masking(model, "rigl", density=0.3, interval=5, end_step=100, seed=0)
    opt = sgd(model)
    backward(model, 1)
    masking.step(opt, 1)
    for p in masking.params.values():                         # momentum everywhere, e.g. from a dense run
        opt.state[p]["momentum_buffer"].fill_(1.0)
    before = {n: m.clone() for n, m in masking.masks.items()}
    backward(model, 2)
    masking.update_topology(5, opt, {n: p.grad.abs() for n, p in masking.params.items()})
    grown_total = 0
    for name, old in before.items():
        new = masking.masks[name] & ~old
        grown_total += int(new.sum())
        p = masking.params[name]
        assert torch.count_nonzero(p.detach()[new]) == 0
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][new]) == 0
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"][~masking.masks[name]]) == 0
    assert grown_total > 0


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_counts_exact_and_masked_weights_zero_through_40_updates(method):
    model = tiny_moon()
    masking = Masking(model, method, density=0.2, interval=2, end_step=400, seed=3)
    opt = sgd(model)
    counts = layer_counts(model, 0.2)
    start = {n: m.clone() for n, m in masking.masks.items()}
    updates = 0
    for step in range(1, 81):
        backward(model, step, moon=True)
        updates += masking.step(opt, step)
        for layer in masking.layers:
            assert sum(int(masking.masks[n].sum()) for n in layer.members) == counts[layer.name]
        for name, mask in masking.masks.items():
            weight = masking.params[name]
            assert torch.count_nonzero(weight[~mask]) == 0
            if weight in opt.state:
                assert torch.count_nonzero(opt.state[weight]["momentum_buffer"][~mask]) == 0
    assert updates == 40
    changed = sum(int((start[n] != m).sum()) for n, m in masking.masks.items())
    assert changed > 0, "40 updates should have moved the topology"


def test_set_grows_exactly_the_drop_count_among_all_inactive_positions_just_dropped_included():
    model = nn.Sequential(nn.Linear(200, 100, bias=False))
    masking = Masking(model, "set", density=0.3, drop_fraction=0.3, interval=1, end_step=100, seed=0)
    regrown = 0
    for step in range(1, 6):
        before = masking.masks["0.weight"].clone()
        with torch.no_grad():
            model[0].weight.copy_(torch.randn(100, 200) * before)
        counts = masking.update_topology(step, None, masking._grow_scores())
        after = masking.masks["0.weight"]
        n = math.ceil(cosine_drop_fraction(step, 0.3, 100) * int(before.sum()))
        assert counts == {"0.weight": n}
        assert int(after.sum()) == int(before.sum())
        dropped = before.sum() - (before & after).sum()       # net: dropped and not regrown
        assert int(dropped) <= n
        regrown += n - int(dropped)
    # A random n of 14,000 + n candidates: about n²/(14,000+n) ≈ 200 regrown per update.
    assert regrown > 0


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
    assert dense.masks == {} and dense.density() == 1.0 and budget_layers(tiny_model())


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="valid choices: dense, static, set, rigl"):
        Masking(tiny_model(), "snip")
