"""OOD and calibration metrics with OpenOOD's conventions.

Inputs are OpenOOD *confidences* (higher = more in-distribution) of the ID test set and of one OOD set.
Results are fractions; :mod:`.evaluate` turns them into OpenOOD's percent table.

The four OOD metrics reproduce ``openood/evaluators/metrics.py::compute_all_metrics`` of the OpenOOD
commit this project pins (3c35632; unchanged since commit 873e8c2 "fix ood eval (ood as pos)", Aug
2023, which is in the v1.5 tag):

* AUROC: area under the ROC curve (either class positive gives the same value).
* AUPR_IN: area (trapezoidal, ``sklearn.metrics.auc``) under the precision-recall curve with ID positive
  and the confidence as score; AUPR_OUT: the same with OOD positive and ``-confidence`` as score.
* FPR@95: **OOD is the positive class**: the fraction of ID samples flagged as OOD at the first
  threshold where at least 95 % of the OOD samples are flagged (``positive='ood'``, the default).
  OpenOOD v1, on which the MOON paper's code builds, used the other convention: the fraction of OOD
  samples accepted at the first threshold where at least 95 % of the ID samples are accepted
  (``positive='id'``). The two differ in general.

Why scikit-learn and not pytorch-ood's ``OODMetrics``: pytorch-ood uses the same conventions as the
pinned OpenOOD (its ``FPR95TPR`` treats OOD as positive, i.e. matches ``positive='ood'``; AUROC, AUPR-IN
and AUPR-OUT agree to 1e-15), but it reads FPR@95 off the complete ROC curve, while OpenOOD calls
``sklearn.metrics.roc_curve`` with its default ``drop_intermediate=True``; with tied scores that drops
collinear points and can move the 95 % point (one random tied case: 0.538 vs 0.481). Calling
scikit-learn the way OpenOOD does gives OpenOOD's numbers exactly, and works on confidences directly,
so the sign conversion of pytorch-ood scores stays in one place (``detectors.to_confidence``).

ECE (Guo et al., ICML 2017): 10 equal-width bins ``((b-1)/10, b/10]`` (a confidence of 0 goes to the
first bin), ``ECE = sum_b n_b / N * |acc_b - conf_b|``, as OpenOOD's ``OODEvaluator.eval_acc`` used by the
MOON code (moon-method §1.6).
"""

from typing import Dict

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "OOD_METRIC_NAMES",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr_at_tpr",
    "ood_metrics",
    "roc_points",
    "accuracy",
    "expected_calibration_error",
]

#: the columns of OpenOOD's eval_ood table, in its order (ACC is added by the evaluator)
OOD_METRIC_NAMES = ("FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT")


def _labelled(id_conf, ood_conf):
    """Concatenated confidences, and indicator arrays (1 = ID) — OpenOOD's ``label != -1``."""
    id_conf = np.asarray(id_conf, dtype=np.float64).reshape(-1)
    ood_conf = np.asarray(ood_conf, dtype=np.float64).reshape(-1)
    if id_conf.size == 0 or ood_conf.size == 0:
        raise ValueError(
            f"need ID and OOD samples, got {id_conf.size} ID and {ood_conf.size} OOD confidences"
        )
    conf = np.concatenate([id_conf, ood_conf])
    if not np.all(np.isfinite(conf)):
        raise ValueError(f"confidences must be finite, got {int((~np.isfinite(conf)).sum())} that are not")
    is_id = np.concatenate([np.ones(id_conf.size, dtype=int), np.zeros(ood_conf.size, dtype=int)])
    return conf, is_id


def auroc(id_conf, ood_conf) -> float:
    """Area under the ROC curve: P(conf_ID > conf_OOD), ties counting half."""
    conf, is_id = _labelled(id_conf, ood_conf)
    return float(skm.roc_auc_score(is_id, conf))


def aupr_in(id_conf, ood_conf) -> float:
    """Area under the precision-recall curve, ID positive, score = confidence (trapezoidal)."""
    conf, is_id = _labelled(id_conf, ood_conf)
    precision, recall, _ = skm.precision_recall_curve(is_id, conf)
    return float(skm.auc(recall, precision))


def aupr_out(id_conf, ood_conf) -> float:
    """Area under the precision-recall curve, OOD positive, score = -confidence (trapezoidal)."""
    conf, is_id = _labelled(id_conf, ood_conf)
    precision, recall, _ = skm.precision_recall_curve(1 - is_id, -conf)
    return float(skm.auc(recall, precision))


def fpr_at_tpr(id_conf, ood_conf, tpr: float = 0.95, positive: str = "ood") -> float:
    """False positive rate at the first ROC threshold whose true positive rate is >= ``tpr``.

    ``positive='ood'`` (OpenOOD v1.5, default): positives are OOD samples ranked by ``-conf``; the
    result is the fraction of ID samples flagged as OOD when >= ``tpr`` of the OOD samples are.
    ``positive='id'`` (OpenOOD v1 / the MOON paper's code): positives are ID samples ranked by
    ``conf``; the result is the fraction of OOD samples accepted when >= ``tpr`` of ID is accepted.
    """
    if not 0.0 <= tpr <= 1.0:
        raise ValueError(f"tpr must be a fraction in [0, 1], got {tpr}")
    conf, is_id = _labelled(id_conf, ood_conf)
    if positive == "ood":
        fpr, tpr_curve, _ = skm.roc_curve(1 - is_id, -conf)
    elif positive == "id":
        fpr, tpr_curve, _ = skm.roc_curve(is_id, conf)
    else:
        raise ValueError(f"positive must be 'ood' or 'id', got {positive!r}")
    return float(fpr[np.argmax(tpr_curve >= tpr)])


def ood_metrics(id_conf, ood_conf, fpr_positive: str = "ood") -> Dict[str, float]:
    """``{'FPR@95', 'AUROC', 'AUPR_IN', 'AUPR_OUT'}`` as fractions (see the module docstring)."""
    return {
        "FPR@95": fpr_at_tpr(id_conf, ood_conf, 0.95, positive=fpr_positive),
        "AUROC": auroc(id_conf, ood_conf),
        "AUPR_IN": aupr_in(id_conf, ood_conf),
        "AUPR_OUT": aupr_out(id_conf, ood_conf),
    }


def roc_points(id_conf, ood_conf):
    """ROC curve with ID positive: ``(fpr, tpr)`` = (fraction of OOD, fraction of ID) accepted."""
    conf, is_id = _labelled(id_conf, ood_conf)
    fpr, tpr, _ = skm.roc_curve(is_id, conf)
    return fpr, tpr


def accuracy(pred, label) -> float:
    """Closed-set accuracy over the ID samples (``label >= 0``; OpenOOD marks OOD with -1)."""
    pred, label = np.asarray(pred).reshape(-1), np.asarray(label).reshape(-1)
    if pred.shape != label.shape:
        raise ValueError(f"pred and label differ in shape: {pred.shape} vs {label.shape}")
    known = label >= 0
    if not known.any():
        raise ValueError("accuracy needs ID samples (label >= 0)")
    return float(np.mean(pred[known] == label[known]))


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins ``((b-1)/n, b/n]``: ``sum_b n_b/N * |acc_b - conf_b|``."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(
            f"need equally many confidences and correctness flags, got {confidence.size} and {correct.size}"
        )
    if np.any((confidence < 0) | (confidence > 1)):
        raise ValueError("confidences must lie in [0, 1]")
    # bin b holds ((b-1)/n, b/n]; b/n is the double nearest the edge, so 0.7 falls in (0.6, 0.7]
    # (ceil(0.7 * 10) would give 8: 0.7 * 10 == 7.000000000000001)
    bins = np.searchsorted(np.arange(1, n_bins) / n_bins, confidence, side="left")
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
