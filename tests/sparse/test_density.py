"""ERK densities on the MoonNet layout against the released MOON code's ERK, transcribed below.

The released code (StevenBoys/MOON 863f49a, ``sparselearning/funcs/init_scheme.py::get_erdos_renyi_dist``)
masks one ``Linear(F, K+1)`` classifier; MoonNet splits it into ``fc`` (K x F) and ``fc_unknown`` (1 x F),
which must be budgeted as that one layer.
"""
import numpy as np
import pytest
import torch

from openood_moon.moon import MoonNet
from openood_moon.networks import ResNet18_32x32, SmallCNN
from openood_moon.sparse import Masking, budget_layers, erk_densities, layer_counts, maskable_parameters


def released_erk(shapes, density):
    """Transcription of the released ``get_erdos_renyi_dist`` (is_kernel=True) on an ordered dict of shapes."""
    epsilon, valid, dense_layers = 1.0, False, set()
    while not valid:
        divisor, rhs, raw = 0, 0, {}
        for name, shape in shapes.items():
            n_param = np.prod(shape)
            n_zeros, n_ones = int(n_param * (1 - density)), int(n_param * density)
            if name in dense_layers:
                rhs -= n_zeros
            else:
                rhs += n_ones
                raw[name] = np.sum(shape) / np.prod(shape)
                divisor += raw[name] * n_param
        epsilon = rhs / divisor
        max_prob = np.max(list(raw.values()))
        if max_prob * epsilon > 1:
            for name, prob in raw.items():
                if prob == max_prob:
                    dense_layers.add(name)
        else:
            valid = True
    return {n: 1.0 if n in dense_layers else epsilon * raw[n] for n in shapes}


def released_layout(backbone, classes):
    """The released network's masked shapes: the backbone's conv/linear weights, fc as (K+1) x F."""
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(backbone)}
    shapes["fc.weight"] = (classes + 1, shapes["fc.weight"][1])
    return shapes


def exact_counts(shapes, densities):
    return {n: max(1, round(densities[n] * int(np.prod(s)))) for n, s in shapes.items()}


NETS = {"small_cnn": (lambda k: SmallCNN(k, in_channels=3), 6),
        "resnet18": (lambda k: ResNet18_32x32(k), 10),
        "resnet18_c100": (lambda k: ResNet18_32x32(k), 100)}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("density", [0.02, 0.05, 0.1, 0.2])
def test_moonnet_counts_equal_the_released_erk_on_one_k_plus_1_classifier(net, density):
    build, classes = NETS[net]
    shapes = released_layout(build(classes), classes)
    expected = exact_counts(shapes, released_erk(shapes, density))
    got = layer_counts(MoonNet(build(classes)), density)
    assert {n.removeprefix("backbone."): c for n, c in got.items()} == expected


def test_issue_numbers_small_cnn_2_percent_and_cifar100_resnet18_5_percent():
    small = layer_counts(MoonNet(SmallCNN(6, in_channels=3)), 0.02)
    # fc1: 7,768 weights (7,654 when the unknown row was a separate dense layer); the classifier's 7 x 128
    # weights share one density, ~36 % (the unknown row was dense before).
    assert small["backbone.fc1.weight"] == 7768
    assert small["backbone.fc.weight"] == round(0.3585954515 * 7 * 128) == 321
    cifar100 = layer_counts(MoonNet(ResNet18_32x32(100)), 0.05)
    assert cifar100["backbone.fc.weight"] == 37103          # was 37,013 + 512 (dense unknown row)
    assert "fc_unknown.weight" not in cifar100


@pytest.mark.parametrize("net", sorted(NETS))
def test_baseline_backbone_budgeted_with_the_absent_unknown_row(net):
    build, classes = NETS[net]
    shapes = released_layout(build(classes), classes)
    dens = released_erk(shapes, 0.05)
    baseline = layer_counts(build(classes), 0.05)
    moon = layer_counts(MoonNet(build(classes)), 0.05)
    for name, count in baseline.items():
        if name == "fc.weight":                              # same density, K rows instead of K+1
            assert count == round(dens[name] * classes * shapes[name][1])
        else:
            assert count == moon["backbone." + name]


@pytest.mark.parametrize("method", ["rigl", "set", "static"])
def test_baseline_and_moon_net_from_one_seed_get_identical_backbone_masks(method):
    torch.manual_seed(0)
    plain = SmallCNN(6, in_channels=3)
    torch.manual_seed(0)
    moon = MoonNet(SmallCNN(6, in_channels=3))
    a = Masking(plain, method, density=0.02, seed=7)
    b = Masking(moon, method, density=0.02, seed=7)
    for name in ("conv1.weight", "conv2.weight", "fc1.weight"):
        assert torch.equal(a.masks[name], b.masks["backbone." + name]), name
    classifier = torch.cat([b.masks["backbone.fc.weight"], b.masks["fc_unknown.weight"]]).sum()
    assert int(classifier) == layer_counts(moon, 0.02)["backbone.fc.weight"]


def test_budget_layers_stack_fc_and_fc_unknown_as_one_classifier_last():
    layers = budget_layers(MoonNet(SmallCNN(6, in_channels=1, width=4, feature_size=8)))
    assert [l.name for l in layers] == ["backbone.conv1.weight", "backbone.conv2.weight",
                                        "backbone.fc1.weight", "backbone.fc.weight"]
    assert layers[-1].members == ("backbone.fc.weight", "fc_unknown.weight")
    assert layers[-1].shape == (7, 8) and layers[-1].numel == 56
    plain = budget_layers(SmallCNN(6, in_channels=1, width=4, feature_size=8))[-1]
    assert plain.members == ("fc.weight",) and plain.shape == (7, 8) and plain.numel == 48


# (outputs, density) -> density of representative layers, computed with the released algorithm
# (moon-method §1.7.3); 1 means dense. "outputs" counts the unknown logit: K = outputs - 1.
TABLE = {
    (11, 0.2): {"conv1": 1, "layer1.0.conv1": 1, "layer2.0.conv1": .754, "layer2.1.conv2": .499,
                "layer2.0.shortcut.0": 1, "layer3.0.conv1": .371, "layer3.1.conv1": .246,
                "layer3.0.shortcut.0": 1, "layer4.0.conv1": .184, "layer4.0.conv2": .123,
                "layer4.0.shortcut.0": 1, "fc": 1},
    (11, 0.1): {"conv1": 1, "layer1.1.conv2": .479, "layer2.0.conv1": .354, "layer2.0.conv2": .234,
                "layer2.0.shortcut.0": 1, "layer3.0.conv1": .174, "layer3.1.conv2": .116,
                "layer3.0.shortcut.0": 1, "layer4.0.conv1": .087, "layer4.1.conv1": .058,
                "layer4.0.shortcut.0": .775, "fc": 1},
    (11, 0.05): {"conv1": 1, "layer1.0.conv2": .233, "layer2.0.conv1": .172, "layer2.1.conv1": .114,
                 "layer2.0.shortcut.0": 1, "layer3.0.conv1": .085, "layer3.0.conv2": .056,
                 "layer3.0.shortcut.0": .754, "layer4.0.conv1": .042, "layer4.1.conv2": .028,
                 "layer4.0.shortcut.0": .376, "fc": 1},
    (101, 0.1): {"conv1": 1, "layer1.0.conv1": .461, "layer2.0.conv1": .340, "layer2.0.conv2": .225,
                 "layer2.0.shortcut.0": 1, "layer3.0.conv1": .168, "layer3.1.conv1": .111,
                 "layer4.0.conv1": .083, "layer4.0.conv2": .055, "layer4.0.shortcut.0": .745, "fc": 1},
    (101, 0.05): {"conv1": 1, "layer1.0.conv1": .220, "layer2.0.conv1": .163, "layer2.0.conv2": .108,
                  "layer3.0.conv1": .080, "layer3.0.conv2": .053, "layer3.0.shortcut.0": .713,
                  "layer4.0.conv1": .040, "layer4.0.conv2": .026, "layer4.0.shortcut.0": .356,
                  "fc": .718},
}


@pytest.mark.parametrize("outputs,density", sorted(TABLE))
def test_erk_matches_moon_table(outputs, density):
    shapes = {l.name: l.shape for l in budget_layers(MoonNet(ResNet18_32x32(outputs - 1)))}
    dens = erk_densities(shapes, density)
    for layer, expected in TABLE[(outputs, density)].items():
        got = dens[f"backbone.{layer}.weight"]
        if expected == 1:
            assert got == 1.0, layer
        else:
            assert got < 1.0 and got == pytest.approx(expected, abs=6e-4), layer


@pytest.mark.parametrize("sparsity", [0.8, 0.9, 0.95])
def test_exact_counts_hit_global_target_within_one_weight_per_layer(sparsity):
    model = MoonNet(ResNet18_32x32(10))
    counts = layer_counts(model, 1 - sparsity, "erk")
    total = sum(p.numel() for _, p in maskable_parameters(model))
    assert abs(sum(counts.values()) - (1 - sparsity) * total) <= len(counts)
    assert all(1 <= counts[l.name] <= l.numel for l in budget_layers(model))


def test_uniform_gives_every_layer_the_same_density():
    model = MoonNet(ResNet18_32x32(10))
    counts = layer_counts(model, 0.1, "uniform")
    for layer in budget_layers(model):
        assert abs(counts[layer.name] - 0.1 * layer.numel) <= 0.5


def test_bad_density_and_init_name_the_problem():
    with pytest.raises(ValueError, match="density"):
        layer_counts(ResNet18_32x32(10), 1.5)
    with pytest.raises(ValueError, match="valid choices: erk, uniform"):
        layer_counts(ResNet18_32x32(10), 0.1, "random")
