"""ERK densities against the table computed with MOON's released algorithm (moon-method §1.7.3)."""
import pytest

from openood_moon.networks import ResNet18_32x32
from openood_moon.sparse import erk_densities, layer_counts, maskable_parameters

# (outputs, density) -> expected density of representative layers; 1 means dense.
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


def _shapes(model):
    return {n: tuple(p.shape) for n, p in maskable_parameters(model)}


@pytest.mark.parametrize("outputs,density", sorted(TABLE))
def test_erk_matches_moon_table(outputs, density):
    dens = erk_densities(_shapes(ResNet18_32x32(outputs)), density)
    for layer, expected in TABLE[(outputs, density)].items():
        got = dens[f"{layer}.weight"]
        if expected == 1:
            assert got == 1.0, layer
        else:
            assert got < 1.0 and got == pytest.approx(expected, abs=6e-4), layer


@pytest.mark.parametrize("sparsity", [0.8, 0.9, 0.95])
def test_exact_counts_hit_global_target_within_one_weight_per_layer(sparsity):
    model = ResNet18_32x32(10)
    counts = layer_counts(model, 1 - sparsity, "erk")
    params = dict(maskable_parameters(model))
    total = sum(p.numel() for p in params.values())
    assert abs(sum(counts.values()) - (1 - sparsity) * total) <= len(counts)
    assert all(1 <= counts[n] <= params[n].numel() for n in counts)


def test_uniform_gives_every_layer_the_same_density():
    counts = layer_counts(ResNet18_32x32(10), 0.1, "uniform")
    params = dict(maskable_parameters(ResNet18_32x32(10)))
    for name, k in counts.items():
        assert abs(k - 0.1 * params[name].numel()) <= 0.5


def test_bad_density_and_init_name_the_problem():
    with pytest.raises(ValueError, match="density"):
        layer_counts(ResNet18_32x32(10), 1.5)
    with pytest.raises(ValueError, match="valid choices: erk, uniform"):
        layer_counts(ResNet18_32x32(10), 0.1, "random")
