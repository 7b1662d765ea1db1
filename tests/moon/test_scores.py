"""MOON scores against hand-computed values and naive float64 formulas."""

import math

import pytest
import torch

from openood_moon.moon.scores import (
    known_confidence,
    known_log_odds,
    moon_confidence,
    unknown_aware_energy,
    unknown_aware_msp,
)

ALL = [moon_confidence, known_confidence, known_log_odds, unknown_aware_msp, unknown_aware_energy]


def _random_logits(n=64, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, k + 1, generator=g, dtype=torch.float64)


def test_moon_confidence_hand_example():
    # softmax([0, 0, log 2]) = [1/4, 1/4, 1/2]; max over the first K=2 is 1/4 (no renormalisation)
    z = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    assert moon_confidence(z).item() == pytest.approx(0.25)


def test_moon_confidence_is_known_mass_times_renormalised_msp():
    z = _random_logits()
    p = torch.softmax(z, dim=1)
    msp_k = torch.softmax(z[:, :-1], dim=1).max(dim=1).values
    torch.testing.assert_close(moon_confidence(z), (1 - p[:, -1]) * msp_k)


def test_known_confidence_and_log_odds():
    z = _random_logits()
    p_unk = torch.softmax(z, dim=1)[:, -1]
    torch.testing.assert_close(known_confidence(z), 1 - p_unk)
    torch.testing.assert_close(known_log_odds(z), torch.log((1 - p_unk) / p_unk))


def test_known_log_odds_keeps_ranking_where_probability_rounds_to_one():
    z = torch.tensor([[50.0, 0.0, -10.0], [50.0, 0.0, -20.0]])
    assert known_confidence(z)[0] == known_confidence(z)[1] == 1.0  # p_unk ~ 1e-26 / 1e-30
    assert known_log_odds(z)[1] - known_log_odds(z)[0] == pytest.approx(10.0)


def test_unknown_aware_msp_hand_example():
    # z = [log 3, 0 | 0]: MSP_K = 3/4 -> logit log 3; p = [3/5, 1/5, 1/5] -> logit(1 - p_unk) = log 4
    z = torch.tensor([[math.log(3.0), 0.0, 0.0]])
    assert unknown_aware_msp(z).item() == pytest.approx(math.log(12.0))


def test_unknown_aware_msp_naive_formula():
    z = _random_logits(seed=1)
    msp_k = torch.softmax(z[:, :-1], dim=1).max(dim=1).values
    p_unk = torch.softmax(z, dim=1)[:, -1]
    naive = torch.log(msp_k / (1 - msp_k)) + torch.log((1 - p_unk) / p_unk)
    torch.testing.assert_close(unknown_aware_msp(z), naive)


def test_unknown_aware_energy_hand_and_naive():
    z = torch.zeros(1, 3)  # K = 2: 2 * log 2 - 0
    assert unknown_aware_energy(z).item() == pytest.approx(math.log(4.0))
    z = _random_logits(seed=2)
    energy_conf = torch.log(torch.exp(z[:, :-1]).sum(dim=1))
    p_unk = torch.softmax(z, dim=1)[:, -1]
    torch.testing.assert_close(unknown_aware_energy(z), energy_conf + torch.log((1 - p_unk) / p_unk))


@pytest.mark.parametrize("score", ALL)
def test_more_unknown_evidence_lowers_the_confidence(score):
    z = _random_logits(n=16, seed=3)
    z_more_unknown = z.clone()
    z_more_unknown[:, -1] += 2.0
    assert torch.all(score(z_more_unknown) < score(z))


@pytest.mark.parametrize("score", ALL)
def test_shape_dtype_and_validation(score):
    z = _random_logits(n=7, k=3).float().requires_grad_()
    out = score(z)
    assert out.shape == (7,) and out.dtype == torch.float64 and not out.requires_grad
    assert torch.isfinite(score(torch.tensor([[1e4, -1e4, 0.0]]))).all()
    with pytest.raises(ValueError):
        score(torch.zeros(4))
    with pytest.raises(ValueError):
        score(torch.zeros(4, 1))


def test_unknown_aware_msp_needs_two_known_classes():
    with pytest.raises(ValueError, match="K >= 2"):
        unknown_aware_msp(torch.zeros(3, 2))
