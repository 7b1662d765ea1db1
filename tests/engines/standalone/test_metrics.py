"""Metrics against hand-computed values; FPR@95 conventions; agreement with pytorch-ood."""

import numpy as np
import pytest
import torch
from pytorch_ood.metrics import OODMetrics

from openood_moon.evaluation.metrics import (
    accuracy,
    aupr_in,
    aupr_out,
    auroc,
    expected_calibration_error,
    fpr_at_tpr,
    ood_metrics,
)

SEPARATED = (np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2]))
# ID = 10..29; OOD = 0, 2, ..., 36 and 50 (20 each)
ID_20 = np.arange(10, 30, dtype=float)
OOD_20 = np.r_[np.arange(0, 37, 2, dtype=float), 50.0]


def test_perfect_separation():
    m = ood_metrics(*SEPARATED)
    assert m == {"FPR@95": 0.0, "AUROC": 1.0, "AUPR_IN": 1.0, "AUPR_OUT": 1.0}
    assert fpr_at_tpr(*SEPARATED, positive="id") == 0.0


def test_reversed_scores():
    id_conf, ood_conf = SEPARATED
    m = ood_metrics(ood_conf, id_conf)
    assert m["AUROC"] == 0.0 and m["FPR@95"] == 1.0
    assert fpr_at_tpr(ood_conf, id_conf, positive="id") == 1.0


def test_constant_scores_are_chance():
    m = ood_metrics(np.ones(4), np.ones(6))
    assert m["AUROC"] == 0.5 and m["FPR@95"] == 1.0


def test_auroc_is_pairwise_probability():
    rng = np.random.default_rng(0)
    id_conf = rng.integers(0, 5, 30).astype(float)  # with ties
    ood_conf = rng.integers(-2, 3, 20).astype(float)
    pairs = id_conf[:, None] - ood_conf[None, :]
    expected = np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0)
    assert auroc(id_conf, ood_conf) == pytest.approx(expected)


def test_fpr95_hand_example_both_conventions():
    # OOD positive (OpenOOD v1.5): flag conf <= t; 19 of 20 OOD flagged first at t = 36, which
    # flags all 20 ID samples -> 1.0
    assert fpr_at_tpr(ID_20, OOD_20, positive="ood") == 1.0
    # ID positive (OpenOOD v1 / MOON code): accept conf >= t; 19 of 20 ID accepted first at t = 11,
    # which accepts OOD 12, 14, ..., 36 and 50 = 14 of 20 -> 0.7
    assert fpr_at_tpr(ID_20, OOD_20, positive="id") == pytest.approx(0.7)
    assert ood_metrics(ID_20, OOD_20)["FPR@95"] == 1.0
    assert ood_metrics(ID_20, OOD_20, fpr_positive="id")["FPR@95"] == pytest.approx(0.7)


def test_fpr_at_other_tpr():
    # 50 % of the OOD flagged (conf <= 18) flags ID 10..18 = 9 of 20
    assert fpr_at_tpr(ID_20, OOD_20, tpr=0.5) == pytest.approx(0.45)


def test_aupr_hand_example():
    # ID {3, 1}, OOD {2}. ID positive, ranked by conf: (recall, precision) = (.5, 1), (.5, .5), (1, 2/3)
    # plus (0, 1): trapezoids 0.5 * 1 + 0.5 * (0.5 + 2/3) / 2 = 19/24
    assert aupr_in([3.0, 1.0], [2.0]) == pytest.approx(19 / 24)
    # OOD positive, ranked by -conf: thresholds -1, -2, -3 -> (0, 0), (1, 1/2), (1, 1/3), plus (0, 1):
    # trapezoid from recall 0 (precision 0) to 1 (precision 1/2) = 1/4, the rest is vertical
    assert aupr_out([3.0, 1.0], [2.0]) == pytest.approx(0.25)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        ood_metrics([], [1.0])
    with pytest.raises(ValueError):
        ood_metrics([np.nan], [1.0])
    with pytest.raises(ValueError):
        fpr_at_tpr([1.0], [0.0], positive="both")


def test_agrees_with_pytorch_ood_when_ood_is_positive():
    """pytorch-ood's OODMetrics on outlier scores -conf: same AUROC / AUPR-IN / AUPR-OUT, and its
    FPR95TPR is the OOD-positive FPR@95 (not the ID-positive one) — checked on tie-free scores."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        id_conf = rng.normal(1.0, 1.0, rng.integers(5, 80))
        ood_conf = rng.normal(0.0, 1.0, rng.integers(5, 80))
        ours = ood_metrics(id_conf, ood_conf)
        theirs = (
            OODMetrics()
            .update(
                torch.tensor(-np.r_[id_conf, ood_conf]),
                torch.tensor(np.r_[np.zeros(id_conf.size), -np.ones(ood_conf.size)]).long(),
            )
            .compute()
        )
        assert ours["AUROC"] == pytest.approx(theirs["AUROC"], abs=1e-12)
        assert ours["AUPR_IN"] == pytest.approx(theirs["AUPR-IN"], abs=1e-12)
        assert ours["AUPR_OUT"] == pytest.approx(theirs["AUPR-OUT"], abs=1e-12)
        assert ours["FPR@95"] == pytest.approx(theirs["FPR95TPR"], abs=1e-12)
    labels = torch.tensor([0] * 20 + [-1] * 20)
    theirs = OODMetrics().update(torch.tensor(-np.r_[ID_20, OOD_20]), labels).compute()
    assert theirs["FPR95TPR"] == 1.0  # = positive='ood'; positive='id' gives 0.7


def test_accuracy_ignores_ood_labels():
    assert accuracy([0, 1, 2, 0], [0, 1, 1, -1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy([0], [-1])


def test_ece_hand_example():
    # bin (0.9, 1]: acc 1/2, conf 0.95 -> 0.45 * 2/4; bin (0.5, 0.6]: acc 1, conf 0.55 -> 0.45 * 2/4
    assert expected_calibration_error([0.95, 0.95, 0.55, 0.55], [1, 0, 1, 1]) == pytest.approx(0.45)


def test_ece_bins_are_right_closed_and_equal_width():
    # 0.7 belongs to (0.6, 0.7]; together with 0.65 the bin has conf 0.675 and acc 1/2
    assert expected_calibration_error([0.7, 0.65], [1, 0]) == pytest.approx(0.175)
    # 0.71 and 0.79 share a bin (conf 0.75, acc 1/2); 0.81 has its own (|1 - 0.81|)
    assert expected_calibration_error([0.71, 0.79, 0.81], [1, 0, 1]) == pytest.approx(
        2 / 3 * 0.25 + 1 / 3 * 0.19
    )
    assert expected_calibration_error([0.0, 1.0, 0.35, 0.35], [0, 1, 0, 1]) == pytest.approx(0.075)
    assert expected_calibration_error([0.5] * 4, [1, 0, 1, 0]) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1])
