"""The study grid pairs variants by seed and shares dense runs."""
import pytest

from openood_moon.config import ConfigError
from openood_moon.study.grid import expand

GRID = {"networks": ["small_cnn"], "methods": ["rigl", "set"], "sparsities": [0.9, 0.98],
        "lengths": {"e4": {"epochs": 4, "interval": 2}}, "variants": ["dense", "sparse", "sparse_moon"],
        "seeds": [0, 1]}


def test_expand_counts_and_shares_dense_runs():
    specs = expand(GRID)
    assert len(specs) == 2 * (1 + 2 * 2 * 2)                  # seeds × (dense + methods×sparsities×2)
    assert len({s.run_id for s in specs}) == len(specs)
    dense = [s for s in specs if s.variant == "dense"]
    assert {s.method for s in dense} == {"dense"} and len(dense) == 2


def test_variants_of_one_seed_differ_only_in_their_variant_keys():
    specs = [s for s in expand(GRID) if s.seed == 1 and s.method == "rigl" and s.sparsity == 0.98]
    sparse, moon = sorted(specs, key=lambda s: s.variant)
    shared = {k: v for k, v in sparse.overrides.items() if not k.startswith("moon.")}
    assert {k: v for k, v in moon.overrides.items() if not k.startswith("moon.")} == shared
    assert shared["seed"] == 1 and shared["sparse.density"] == pytest.approx(0.02)
    assert shared["optimizer.num_epochs"] == 4 and shared["sparse.interval"] == 2
    assert sparse.overrides["moon.enabled"] is False and moon.overrides["moon.unknown_loss"] is True


def test_unknown_variant_or_length_key_is_named():
    with pytest.raises(ConfigError, match="valid choices: dense, dense_moon, sparse"):
        expand({**GRID, "variants": ["moonish"]})
    with pytest.raises(ConfigError, match="valid keys: epochs, interval"):
        expand({**GRID, "lengths": {"x": {"epoch": 3}}})


def test_presets_axis_gives_cells_of_their_own_with_the_preset_set():
    specs = expand({**GRID, "variants": ["sparse", "sparse_moon"], "presets": ["default", "official"]})
    assert len(specs) == 2 * 2 * 2 * 2 * 2                    # variants × seeds × methods × sparsities × presets
    assert len({s.run_id for s in specs}) == len(specs)
    official = [s for s in specs if s.preset == "official"]
    assert len(official) == len(specs) // 2
    assert all(s.cell.endswith("_official") and s.overrides["preset.name"] == "official" for s in official)
    assert all(not s.cell.endswith("_official") and s.overrides["preset.name"] == "default"
               for s in specs if s.preset == "default")
