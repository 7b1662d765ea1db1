"""``--preset official`` against the released MOON code (StevenBoys/MOON 863f49a), transcribed below.

Transcribed: ``sparselearning/core.py`` (``Masking.step``, ``apply_w_raw``, ``apply_dropout``,
``dp_generate``, ``gather_statistics``, ``adjust_prune_rate``, ``truncate_weights``, ``reset_momentum``),
``funcs/prune.py::magnitude_prune``, ``funcs/grow.py::abs_grad_growth`` / ``random_growth``,
``funcs/init_scheme.py::erdos_renyi_init``, ``funcs/decay.py::CosineDecay`` (on torch's own
``CosineAnnealingLR``), and the loops of ``openood/trainers/base_trainer.py`` and
``openood/pipelines/train_pipeline.py``. Random draws come from explicit generators, in the order the
implementation draws them (the released code uses the global RNG).
"""
import copy
import math
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from openood_moon.config import ConfigError
from openood_moon.moon import MoonNet
from openood_moon.networks import ResNet18_32x32
from openood_moon.official import (DropConnect, OfficialMasking, OfficialPruneRate, bernoulli_growth, bernoulli_mask,
                                   official_is_snapshot_step, official_is_update_step, official_layer_prune_rates,
                                   official_snapshot_after_epoch, official_snapshots_per_epoch, preset_name)
from openood_moon.sparse import Masking, budget_layers, layer_densities, seeded_generator
from tanh_net import TanhNet

ROOT = Path(__file__).resolve().parents[1]


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


# ---------------------------------------------------------------------- transcriptions
class ReleasedCosineDecay:
    """``funcs/decay.py::CosineDecay`` over torch's ``CosineAnnealingLR``."""

    def __init__(self, prune_rate, T_max):
        self._step, self.T_max = 0, T_max
        self.sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=prune_rate)
        self.cosine_stepper = torch.optim.lr_scheduler.CosineAnnealingLR(self.sgd, T_max, 0.0, -1)

    def step(self, step):
        if self._step < self.T_max:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")              # step(epoch) is deprecated, as the code uses it
                self.cosine_stepper.step(step)
            self._step = step + 1
        else:
            self._step = self.T_max

    def get_dr(self):
        return self.sgd.param_groups[0]["lr"]


def released_adjust_prune_rate(prune_rate, masks, weights):
    """``gather_statistics`` (redistribution "none": nonzero weights) + ``adjust_prune_rate``."""
    variance = {n: float((w != 0.0).sum()) for n, w in weights.items()}
    total = sum(variance.values())
    variance = {n: v / total for n, v in variance.items()}
    rates = {}
    for name, mask in masks.items():
        rates[name] = prune_rate
        sparsity = int((mask == 0).sum()) / mask.numel()
        if sparsity < 0.2:
            expected_vs_actual = (1.0 / len(variance)) / variance[name]
            if expected_vs_actual < 1.0:
                rates[name] = min(sparsity, rates[name])
    return rates


class ReleasedMasking:
    """The released ``Masking`` on one flat tensor per budget layer (the classifier is one ``Linear(F, K+1)``;
    DropConnect and the optimizer act per parameter, which is elementwise)."""

    def __init__(self, model, layers, densities, method, prune_rate, T_max, dpnum, seed):
        self.model, self.method, self.dpnum = model, method, dpnum
        named = dict(model.named_parameters())
        self.layers = [(layer.name, layer.members) for layer in layers]
        self.params = {n: named[n] for _, members in self.layers for n in members}
        self.g_init = seeded_generator("masks", seed)               # erdos_renyi_init, random_growth
        self.g_dp = seeded_generator("dropconnect", seed)           # dp_generate
        self.mask = {name: (torch.rand(sum(self.params[n].numel() for n in members), generator=self.g_init)
                            < densities[name]).float() for name, members in self.layers}
        self.w_raw = {n: p.data for n, p in self.params.items()}    # the dense initial weights
        self.dp = {n: torch.ones_like(p) for n, p in self.params.items()}
        self.decay = ReleasedCosineDecay(prune_rate, T_max)
        self.mask_step = 0
        self.opt = sgd(model)
        self.apply_mask()

    def param_mask(self, pname):
        for name, members in self.layers:
            offset = 0
            for n in members:
                size = self.params[n].numel()
                if n == pname:
                    return self.mask[name][offset:offset + size].view_as(self.params[n])
                offset += size

    def cat(self, members, tensors):
        return torch.cat([tensors[n].reshape(-1) for n in members])

    def apply_mask(self):
        for n, p in self.params.items():
            p.data = p.data * self.param_mask(n)

    def reset_momentum(self):
        for n, p in self.params.items():
            state = self.opt.state[p]
            if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                state["momentum_buffer"] *= self.param_mask(n)

    def apply_w_raw(self):
        for n, p in self.params.items():
            m = self.param_mask(n)
            self.w_raw[n] = self.w_raw[n] * (1 - self.dp[n] * m) + p.data * self.dp[n] * m * (self.dpnum - 1) / self.dpnum

    def apply_dropout(self):
        for n, p in self.params.items():
            m = self.param_mask(n)
            p.data = p.data * self.dp[n] * m + self.w_raw[n] * (1 - self.dp[n] * m) * self.dpnum / (self.dpnum - 1)
            self.dp[n] = (torch.randint(0, self.dpnum, p.shape, generator=self.g_dp) < self.dpnum - 1).float()
            p.data = p.data * self.dp[n] * m

    def step(self):
        self.apply_w_raw()
        self.apply_dropout()
        self.opt.step()
        self.apply_mask()
        self.reset_momentum()
        self.decay.step(self.mask_step)
        self.mask_step += 1

    def truncate_weights(self):
        weights = {name: self.cat(members, {n: p.data for n, p in self.params.items()})
                   for name, members in self.layers}
        rates = released_adjust_prune_rate(self.decay.get_dr(), self.mask, weights)
        removed_dict = {}
        for name, members in self.layers:                             # magnitude_prune
            mask = self.mask[name].clone()
            nonzeros, zeros = int((mask == 1).sum()), int((mask == 0).sum())
            num_remove = math.ceil(rates[name] * nonzeros)
            if num_remove != 0.0:
                _, idx = torch.sort(torch.abs(weights[name]))
                mask[idx[:zeros + num_remove]] = 0.0
            removed_dict[name] = nonzeros - int(mask.sum())
            self.mask[name] = mask
        for name, members in self.layers:                             # abs_grad_growth / random_growth
            new_mask, weight = self.mask[name].bool(), weights[name]
            n = int((new_mask == 0).sum())
            if n != 0:
                if self.method == "rigl":
                    grad = self.cat(members, {k: p.grad for k, p in self.params.items()})
                    _, idx = torch.sort(torch.abs(grad * (new_mask == 0).float()), descending=True)
                    new_mask[idx[:removed_dict[name]]] = True
                    weight[idx[:removed_dict[name]]] = 0.0
                else:
                    new_weights = torch.zeros_like(new_mask)
                    new_weights[new_mask == 0] = (torch.rand(n, generator=self.g_init)
                                                  < removed_dict[name] / n)
                    new_mask = new_mask | new_weights
                    weight[new_weights] = 0.0
            self.mask[name] = new_mask.float()
            offset = 0
            for k in members:
                p = self.params[k]
                p.data = weight[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        self.apply_mask()
        self.reset_momentum()
        self.mask_step += 1
        return removed_dict


def released_update_steps(epochs, steps_per_epoch, interval, end_when):
    """``base_trainer.train_epoch``: update iff ``(epoch_idx-1) < end_when and train_step % interval == 0``."""
    out, step = [], 0
    for epoch_idx in range(1, epochs + 1):
        for train_step in range(1, steps_per_epoch + 1):
            step += 1
            if (epoch_idx - 1) < end_when and train_step % interval == 0:
                out.append(step)
    return out


def released_vote_events(epochs, steps_per_epoch, deduct):
    """(epoch_idx, train_step) of every snapshot folded into ``model_swa`` (train_step 0: the epoch's end)."""
    ave_num, not_begin_swa, events = int(steps_per_epoch / 10), 1, []
    begin_save = int(epochs - deduct)
    for epoch_idx in range(1, epochs + 1):
        for train_step in range(1, steps_per_epoch + 1):
            if not_begin_swa == 0 and (train_step - 1) // ave_num == 0:
                events.append((epoch_idx, train_step))
        if epoch_idx >= begin_save and not_begin_swa:
            events.append((epoch_idx, 0))                              # model_swa = deepcopy(net)
            not_begin_swa = 0
    return events


# ---------------------------------------------------------------------- the pieces
def test_prune_rate_follows_the_released_cosine_decay_and_freezes_after_70_steps():
    rate, released = OfficialPruneRate(0.3, 70), ReleasedCosineDecay(0.3, 70)
    updates = set(released_update_steps(2, 391, 80, 70))
    for step in range(1, 782):
        k = step - 1                                                   # the mask-step counter
        if step in updates:
            assert rate.value == released.get_dr()                     # the rate this update uses
        else:
            rate.step(k)
            released.step(k)
            assert rate.value == released.get_dr()
    assert rate.value == pytest.approx(0.3 * (1 + math.cos(69 * math.pi / 70)) / 2) == pytest.approx(1.5104e-4, rel=1e-4)


def test_prune_rate_when_an_update_falls_inside_the_horizon():
    rate, released = OfficialPruneRate(0.3, 8), ReleasedCosineDecay(0.3, 8)
    for k in range(20):
        if k % 3 == 2:                                                 # updates skip the decay step
            continue
        rate.step(k)
        released.step(k)
        assert rate.value == released.get_dr(), k


def test_layer_prune_rates_follow_adjust_prune_rate():
    g = torch.Generator().manual_seed(0)
    masks = {"dense_big": torch.ones(400), "dense_small": torch.ones(30), "nearly_dense": (torch.rand(200, generator=g) < 0.9).float(),
             "sparse": (torch.rand(1000, generator=g) < 0.1).float()}
    weights = {n: torch.randn(m.numel(), generator=g) * m for n, m in masks.items()}
    weights["dense_big"][:5] = 0.0                                     # a few exact zeros among active weights
    expected = released_adjust_prune_rate(0.3, masks, weights)
    got = official_layer_prune_rates(0.3, {n: int(m.sum()) for n, m in masks.items()},
                                     {n: m.numel() for n, m in masks.items()},
                                     {n: int(torch.count_nonzero(w)) for n, w in weights.items()})
    assert got == expected
    assert got["dense_big"] == 0.0 and got["dense_small"] == 0.3 and got["sparse"] == 0.3     # by hand


@pytest.mark.parametrize("dpnum", [100, 4])
def test_dropconnect_equals_apply_w_raw_then_apply_dropout(dpnum):
    g = torch.Generator().manual_seed(1)
    dense = {"a": torch.randn(6, 5, generator=g), "b": torch.randn(40, generator=g)}
    mask = {n: torch.rand(t.shape, generator=g) < 0.6 for n, t in dense.items()}
    params = {n: (t * mask[n]).clone() for n, t in dense.items()}
    drop = DropConnect(dense, dpnum, torch.Generator().manual_seed(9))
    ref_params = {n: t.clone() for n, t in params.items()}
    ref_raw = {n: t.clone() for n, t in dense.items()}
    ref_dp = {n: torch.ones_like(t) for n, t in dense.items()}
    ref_g = torch.Generator().manual_seed(9)
    dropped_then_restored = 0
    for step in range(8):
        if step == 4:                                                  # a topology change between steps
            for n in mask:
                mask[n] = mask[n] ^ (torch.rand(mask[n].shape, generator=g) < 0.2)
                params[n] *= mask[n]
                ref_params[n] *= mask[n]
        drop.restore_and_redraw(params, mask)
        for n in ref_params:                                           # released, per parameter
            m = mask[n].float()
            ref_raw[n] = ref_raw[n] * (1 - ref_dp[n] * m) + ref_params[n] * ref_dp[n] * m * (dpnum - 1) / dpnum
            ref_params[n] = ref_params[n] * ref_dp[n] * m + ref_raw[n] * (1 - ref_dp[n] * m) * dpnum / (dpnum - 1)
            was_dropped = ref_dp[n] == 0
            ref_dp[n] = (torch.randint(0, dpnum, ref_params[n].shape, generator=ref_g) < dpnum - 1).float()
            ref_params[n] = ref_params[n] * ref_dp[n] * m
            dropped_then_restored += int((was_dropped & (ref_dp[n] == 1) & mask[n]).sum())
        for n in params:
            assert torch.equal(params[n], ref_params[n]), (step, n)
            assert torch.equal(drop.raw[n], ref_raw[n]) and torch.equal(drop.keep[n], ref_dp[n]), (step, n)
            delta = 0.01 * torch.randn(params[n].shape, generator=g) * mask[n]     # an "SGD step"
            params[n] += delta
            ref_params[n] += delta
    assert dropped_then_restored > 0


def test_bernoulli_masks_are_the_released_erdos_renyi_init():
    net = MoonNet(ResNet18_32x32(10))
    dens = layer_densities(net, 0.1)
    masking = OfficialMasking(net, "rigl", density=0.1, seed=4, steps_per_epoch=391, end_epoch=70)
    g = seeded_generator("masks", 4)
    counts = {}
    for layer in budget_layers(net):
        expected = torch.rand(layer.numel, generator=g) < dens[layer.name]
        got = torch.cat([masking.masks[n].reshape(-1) for n in layer.members])
        assert torch.equal(got, expected), layer.name
        counts[layer.name] = int(got.sum())
    exact = {l.name: round(dens[l.name] * l.numel) for l in budget_layers(net)}
    assert counts != exact                                             # Bernoulli, not exact counts
    assert bernoulli_mask(10, 1.0, g).all() and not bernoulli_mask(10, 0.0, g).any()


@pytest.mark.parametrize("official", [False, True])
def test_masks_do_not_pick_weights_by_value_when_init_and_masks_share_a_seed(official):
    """A Bernoulli mask ``rand < d`` from the stream that drew a uniform init keeps only its most negative
    weights (a dead network); the mask generator's stream must differ from ``torch.manual_seed(seed)``'s."""
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = ResNet18_32x32(10, width=16)
        masking = (OfficialMasking(net, "static", 0.1, seed=seed, steps_per_epoch=10, end_epoch=1) if official
                   else Masking(net, "static", 0.1, seed=seed))
        kept = net.layer4[1].conv2.weight.detach()
        kept = kept[masking.masks["layer4.1.conv2.weight"]]
        assert abs(float((kept > 0).float().mean()) - 0.5) < 0.05, (seed, float((kept > 0).float().mean()))


def test_update_steps_count_the_interval_within_each_epoch():
    for epochs, steps, interval, end in [(5, 391, 80, 3), (4, 10, 3, 2), (3, 7, 7, 3), (2, 5, 8, 2)]:
        expected = released_update_steps(epochs, steps, interval, end)
        got = [s for s in range(1, epochs * steps + 1) if official_is_update_step(s, steps, interval, end)]
        assert got == expected
    assert released_update_steps(1, 391, 80, 1) == [80, 160, 240, 320]          # 4 per epoch, none at 391
    assert [s for s in range(1, 21) if official_is_update_step(s, 10, 3, 2)] == [3, 6, 9, 13, 16, 19]


def test_set_growth_draws_a_bernoulli_count_as_random_growth():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(5000, generator=g) < 0.3
    grown = bernoulli_growth(~mask, 16, torch.Generator().manual_seed(5))
    ref_g = torch.Generator().manual_seed(5)
    new_weights = torch.zeros_like(mask)
    n = int((mask == 0).sum())
    new_weights[mask == 0] = torch.rand(n, generator=ref_g) < 16 / n
    assert torch.equal(torch.sort(grown).values, new_weights.nonzero().view(-1))
    sizes = [bernoulli_growth(~mask, 16, torch.Generator().manual_seed(s)).numel() for s in range(40)]
    assert len(set(sizes)) > 3 and min(sizes) < 16 < max(sizes)                 # a random number, mean 16


def test_vote_takes_the_first_tenth_of_each_vote_epoch_and_the_last_non_vote_epochs_end():
    for epochs, steps, vote_epochs in [(100, 391, 20), (6, 25, 2), (4, 10, 3)]:
        vote_start = epochs - vote_epochs
        got = []
        for epoch in range(epochs):
            for within in range(1, steps + 1):
                if epoch >= vote_start and official_is_snapshot_step(within, steps):
                    got.append((epoch + 1, within))
            if official_snapshot_after_epoch(epoch, vote_start):
                got.append((epoch + 1, 0))
        assert got == released_vote_events(epochs, steps, vote_epochs)
    assert len(released_vote_events(100, 391, 20)) == 1 + 20 * 39 == 781       # by hand
    assert official_snapshots_per_epoch(391) == 39
    with pytest.raises(ValueError, match="T >= 10"):
        official_snapshots_per_epoch(9)


def test_preset_name_reads_the_preset_section_and_the_config_file_selects_official():
    assert preset_name({}) == "default"
    assert preset_name({"preset": {"name": "official"}}) == "official"
    with pytest.raises(ConfigError, match="valid choices: default, official"):
        preset_name({"preset": {"name": "paper"}})
    with pytest.raises(ConfigError, match="preset"):
        preset_name({"preset": "official"})
    cfg = yaml.safe_load((ROOT / "configs" / "presets" / "official.yml").read_text())
    assert preset_name(cfg) == "official"


# ---------------------------------------------------------------------- assembled, step by step
@pytest.mark.parametrize("method", ["rigl", "set"])
@pytest.mark.parametrize("horizon,dpnum", [(3, 100), (8, 4)])
def test_official_masking_equals_the_released_masking_step_by_step(method, horizon, dpnum):
    torch.manual_seed(0)
    model = MoonNet(TanhNet(3))
    ref_model = copy.deepcopy(model)                                   # before any mask is applied
    steps_per_epoch, interval, end_epoch, epochs = 6, 4, 3, 4
    masking = OfficialMasking(model, method, density=0.3, drop_fraction=0.3, interval=interval,
                              steps_per_epoch=steps_per_epoch, end_epoch=end_epoch, seed=2, horizon=horizon,
                              dpnum=dpnum)
    ref = ReleasedMasking(ref_model, masking.layers, layer_densities(model, 0.3), method, 0.3, horizon, dpnum, 2)
    opt = sgd(model)
    named, ref_named = dict(model.named_parameters()), dict(ref_model.named_parameters())
    updates = released_update_steps(epochs, steps_per_epoch, interval, end_epoch)
    g = torch.Generator().manual_seed(11)
    swapped = 0
    for step in range(1, epochs * steps_per_epoch + 1):
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        for net in (model, ref_model):
            net.zero_grad()
            nn.functional.cross_entropy(net(x, return_unknown=True), y).backward()
        expected_counts = None
        if step in updates:
            expected_counts = masking.drop_counts(step)
            removed = ref.truncate_weights()
            assert masking.prune_rate.value == ref.decay.get_dr()
            assert expected_counts == removed, step                    # per-update swap counts
            swapped += sum(removed.values())
        else:
            ref.step()
        assert masking.step(opt, step) == (step in updates)
        for layer in masking.layers:
            got = torch.cat([masking.masks[n].reshape(-1) for n in layer.members])
            assert torch.equal(got, ref.mask[layer.name].bool()), (step, layer.name)
        for name in masking.params:
            assert torch.equal(named[name].data, ref_named[name].data), (step, name)
            assert torch.equal(masking.dropconnect.raw[name], ref.w_raw[name]), (step, name)
            assert torch.equal(masking.dropconnect.keep[name], ref.dp[name]), (step, name)
            if named[name] in opt.state:
                assert torch.equal(opt.state[named[name]]["momentum_buffer"],
                                   ref.opt.state[ref_named[name]]["momentum_buffer"]), (step, name)
        for name, p in model.named_parameters():                       # biases and the rest
            assert torch.equal(p.data, ref_named[name].data), (step, name)
    assert masking.updates_done == len(updates) == 3 and swapped > 0
    assert masking.density() == pytest.approx(sum(float(m.sum()) for m in ref.mask.values())
                                              / sum(m.numel() for m in ref.mask.values()), abs=0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rigl", "set"])
def test_swap_counts_and_final_density_on_the_released_resnet18_shapes(method):
    """CIFAR-10 ResNet-18 with the K+1 = 11 classifier at density 0.1 (the README run): an update at the
    frozen rate 1.5e-4 (after the 70-step horizon), as the released truncate_weights does it."""
    torch.manual_seed(0)
    net = MoonNet(ResNet18_32x32(10))
    masking = OfficialMasking(net, method, density=0.1, interval=80, steps_per_epoch=391, end_epoch=70, seed=0)
    for k in range(79):                                                # steps 1..79: the decay freezes at k = 69
        masking.prune_rate.step(k)
    rate = masking.prune_rate.value
    assert rate == pytest.approx(1.5104e-4, rel=1e-4)
    layers = masking.layers
    flat = {l.name: torch.cat([masking.masks[n].reshape(-1) for n in l.members]).float() for l in layers}
    g = torch.Generator().manual_seed(1)
    all_counts = []
    for update in range(1):
        grads = {}
        with torch.no_grad():
            for name, p in masking.params.items():                     # "training": new values, new gradients
                p.copy_(torch.randn(p.shape, generator=g) * masking.masks[name])
                grads[name] = torch.randn(p.shape, generator=g).abs()
        weights = {l.name: torch.cat([masking.params[n].detach().reshape(-1) for n in l.members]) for l in layers}
        rates = released_adjust_prune_rate(rate, flat, weights)
        expected = {name: math.ceil(rates[name] * int(m.sum())) for name, m in flat.items()}
        ref_g = torch.Generator()
        ref_g.set_state(masking.generator.get_state())
        counts = masking.update_topology(80 * (update + 1), None, grads if method == "rigl" else {})
        assert counts == expected
        all_counts.append(counts)
        for l in layers:                                               # the released prune + growth
            mask, w = flat[l.name].clone(), weights[l.name]
            zeros = int((mask == 0).sum())
            if expected[l.name]:
                mask[torch.sort(w.abs())[1][:zeros + expected[l.name]]] = 0.0
            removed = int(flat[l.name].sum() - mask.sum())
            new_mask = mask.bool()
            n = int((~new_mask).sum())
            if n:
                if method == "rigl":
                    grad = torch.cat([grads[k].reshape(-1) for k in l.members])
                    new_mask[torch.sort(grad * (~new_mask).float(), descending=True)[1][:removed]] = True
                else:
                    new_weights = torch.zeros_like(new_mask)
                    new_weights[~new_mask] = torch.rand(n, generator=ref_g) < removed / n
                    new_mask |= new_weights
            flat[l.name] = new_mask.float()
            assert torch.equal(torch.cat([masking.masks[k].reshape(-1) for k in l.members]), new_mask), l.name
    final = sum(float(m.sum()) for m in flat.values()) / sum(m.numel() for m in flat.values())
    assert masking.density() == final
    big = all_counts[0]["backbone.layer4.1.conv2.weight"]
    assert 16 <= big <= 21                                             # the 16–21 per ResNet-18 layer
    # conv1 is dense and holds < 1/L of the weights, so it is not capped: it drops ceil(1.5e-4 · 1728) = 1
    # weight, whose position is its only candidate: regrown, at 0 (its value is lost every update).
    assert all_counts[0]["backbone.conv1.weight"] == 1 and bool(masking.masks["backbone.conv1.weight"].all())


def test_state_round_trip_resumes_dropconnect_and_the_prune_rate():
    torch.manual_seed(0)
    a_net, b_net = MoonNet(TanhNet(3)), None
    b_net = copy.deepcopy(a_net)
    a = OfficialMasking(a_net, "set", density=0.3, interval=4, steps_per_epoch=6, end_epoch=3, seed=5, horizon=3)
    b = OfficialMasking(b_net, "set", density=0.3, interval=4, steps_per_epoch=6, end_epoch=3, seed=6, horizon=3)
    opt = sgd(a_net)
    for step in range(1, 6):
        a_net.zero_grad()
        a_net(torch.randn(4, 1, 8, 8), return_unknown=True).sum().backward()
        a.step(opt, step)
    b.load_state_dict(a.state_dict())
    assert b.mask_step == a.mask_step == 5 and b.prune_rate.value == a.prune_rate.value
    for n in a.params:
        assert torch.equal(a.dropconnect.keep[n], b.dropconnect.keep[n])
        assert torch.equal(a.dropconnect.raw[n], b.dropconnect.raw[n])
    assert torch.equal(a.dropconnect.generator.get_state(), b.dropconnect.generator.get_state())
