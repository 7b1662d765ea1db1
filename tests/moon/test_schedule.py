"""``moon_lr`` against a hand computation of the released ``lr_tmp`` (cosine, then flat at lr_end)."""
import math

import pytest

from openood_moon.moon import moon_lr


@pytest.mark.parametrize("step,expected", [
    (0, 0.12),                                   # 0.1 · 1.2
    (25, 0.1 * (0.08 + 1.12 * 0.5 * (1 + math.sqrt(0.5)))),   # cos(pi/4) = sqrt(1/2): 0.10359798
    (50, 0.064),                                 # 0.1 · (0.08 + 1.12 · 0.5)
    (75, 0.1 * (0.08 + 1.12 * 0.5 * (1 - math.sqrt(0.5)))),   # 0.02440202
    (99, 0.1 * (0.08 + 0.56 * (1 + math.cos(0.99 * math.pi)))),
    (100, 0.008),                                # the vote's flat tail: 0.1 · lr_end
    (10_000, 0.008),
])
def test_moon_lr_by_hand(step, expected):
    assert moon_lr(step, base_lr=0.1, lr_ini=1.2, lr_end=0.08, cosine_steps=100) == pytest.approx(expected, rel=1e-12)


def test_hand_values_in_decimal():
    assert moon_lr(25, 0.1, 1.2, 0.08, 100) == pytest.approx(0.10359797975, abs=1e-11)
    assert moon_lr(75, 0.1, 1.2, 0.08, 100) == pytest.approx(0.02440202025, abs=1e-11)


def test_no_cosine_steps_means_flat_lr_end():
    assert moon_lr(0, 0.1, 1.2, 0.08, 0) == pytest.approx(0.008)
