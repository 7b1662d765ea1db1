"""Paired Student-t intervals on inputs whose answer is known by hand."""
import math

import pytest

from openood_moon.study.stats import mean_std, paired_interval, t_interval

T_0975_4 = 2.7764451051977987      # t quantile (0.975, 4 degrees of freedom), from tables
T_0975_2 = 4.302652729911275


def test_t_interval_matches_hand_computation():
    iv = t_interval([1, 2, 3, 4, 5])
    half = T_0975_4 * math.sqrt(2.5) / math.sqrt(5)          # sd = sqrt(2.5)
    assert (iv.mean, iv.n) == (3.0, 5)
    assert iv.low == pytest.approx(3 - half) and iv.high == pytest.approx(3 + half)
    assert iv.excludes_zero


def test_paired_interval_uses_differences_not_the_two_means():
    a, b = [10.0, 11.0, 12.0], [9.0, 10.5, 11.0]             # d = 1, 0.5, 1
    iv = paired_interval(a, b)
    sd = math.sqrt(((1 - 5 / 6) ** 2 * 2 + (0.5 - 5 / 6) ** 2) / 2)
    assert iv.mean == pytest.approx(5 / 6)
    assert iv.high - iv.mean == pytest.approx(T_0975_2 * sd / math.sqrt(3))
    assert iv.excludes_zero                                   # a large spread in a, b does not matter


def test_interval_straddling_zero_and_degenerate_inputs():
    assert not paired_interval([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]).excludes_zero
    single = t_interval([4.0])
    assert single.n == 1 and math.isnan(single.low) and not single.excludes_zero
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0], [1.0, 2.0])
    assert mean_std([1.0, 3.0]) == "2.00 ± 1.41"
