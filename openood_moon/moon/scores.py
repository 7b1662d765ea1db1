"""OOD scores computed from the K+1 logits of a MOON network.

Every function takes logits ``z`` of shape (B, K+1), index K being the "unknown" class, and returns an
OpenOOD-style *confidence* of shape (B,): higher means more in-distribution. They are pure functions
(no state, no device moves), computed in float64 so that probabilities close to 1 keep their ranking.

Notation: ``p = softmax(z)`` over all K+1 entries, ``p_unk = p_K``, ``q = softmax(z_{:K})`` (the
classifier renormalised over the K known classes), ``lse`` = logsumexp.

* :func:`moon_confidence` is the paper's score (Lei et al., "Embracing Unknown Step by Step: Towards
  Reliable Sparse Training in Real World", TMLR 2024; official code, ``BasePostprocessor``).
* :func:`known_confidence`, :func:`known_log_odds`, :func:`unknown_aware_msp` and
  :func:`unknown_aware_energy` are **our extensions, not the paper's**.
"""

import torch
from torch import Tensor

__all__ = [
    "moon_confidence",
    "known_confidence",
    "known_log_odds",
    "unknown_aware_msp",
    "unknown_aware_energy",
]


def _check(logits_k1: Tensor, min_known: int = 1) -> Tensor:
    if logits_k1.dim() != 2 or logits_k1.shape[1] < min_known + 1:
        raise ValueError(
            f"expected logits of shape (B, K+1) with K >= {min_known} known classes and the "
            f"unknown class last, got {tuple(logits_k1.shape)}"
        )
    return logits_k1.detach().double()


def moon_confidence(logits_k1: Tensor) -> Tensor:
    """The paper's score: the largest known-class probability of the (K+1)-way softmax.

    ``conf = max_{j<K} softmax(z)_j``, with no renormalisation over the K known classes, so mass on
    the unknown logit lowers the confidence. Equivalently ``conf = (1 - p_unk) * max_j q_j``.
    Source: Lei et al., TMLR 2024, official code ``BasePostprocessor`` (moon-method §1.6).
    """
    z = _check(logits_k1)
    return torch.softmax(z, dim=1)[:, :-1].max(dim=1).values


def known_confidence(logits_k1: Tensor) -> Tensor:
    """Our extension: the probability of "known", ``conf = 1 - p_unk = 1 - softmax(z)_K``.

    Computed as ``sigmoid(lse(z_{:K}) - z_K)``. In float64 it still rounds to exactly 1 when
    ``p_unk < ~1e-16``; :func:`known_log_odds` ranks identically without that rounding.
    """
    return torch.sigmoid(known_log_odds(logits_k1))


def known_log_odds(logits_k1: Tensor) -> Tensor:
    """Our extension: the log-odds of "known" against "unknown".

    ``conf = log((1 - p_unk) / p_unk) = lse(z_{:K}) - z_K`` — a strictly increasing function of
    :func:`known_confidence` (same AUROC / FPR), exact for any ``p_unk``.
    """
    z = _check(logits_k1)
    return torch.logsumexp(z[:, :-1], dim=1) - z[:, -1]


def _msp_log_odds(z_known: Tensor) -> Tensor:
    """``logit(max_j q_j) = z_max - lse_{j != argmax} z_j``, exact in log space (needs K >= 2)."""
    top = z_known.max(dim=1)
    others = z_known.scatter(1, top.indices[:, None], float("-inf"))
    return top.values - torch.logsumexp(others, dim=1)


def unknown_aware_msp(logits_k1: Tensor) -> Tensor:
    """Our extension (not the paper's): MSP and the unknown head combined as evidence in log-odds.

    ``conf = logit(MSP_K) + logit(1 - p_unk)
           = [z_max - lse_{j<K, j != argmax} z_j] + [lse_{j<K} z_j - z_K]``,
    with ``MSP_K = max_j q_j`` the MSP over the K known logits (renormalised).

    Why: the paper's product ``(1 - p_unk) * MSP_K`` (= :func:`moon_confidence`; its log is
    ``log(1 - p_unk) + log MSP_K``) lets the unknown head speak only when ``p_unk`` is sizeable — for
    ``p_unk`` of 1e-5..1e-3 (trial-results.md) ``log(1 - p_unk) ~ -p_unk`` is negligible next to
    ``log MSP_K``, although ``p_unk`` ranks far-OOD well. Treating the two as independent pieces of
    evidence for "in-distribution" (naive Bayes: log-odds add) puts both on the same unbounded scale:
    ``p_unk`` = 1e-5 vs 1e-3 moves the score by 4.6, as much as MSP 0.99 vs 0.9. Equal weights, no
    tuning. Needs K >= 2.
    """
    z = _check(logits_k1, min_known=2)
    return _msp_log_odds(z[:, :-1]) + known_log_odds(z)


def unknown_aware_energy(logits_k1: Tensor) -> Tensor:
    """Our extension (not the paper's): negative energy over the K known logits plus the log-odds of
    "known".

    ``conf = -E_K(x) + log((1 - p_unk) / p_unk) = lse(z_{:K}) + [lse(z_{:K}) - z_K]
           = 2 lse(z_{:K}) - z_K``.

    Why: ``-E_K(x) = lse(z_{:K})`` is the energy score (Liu et al., NeurIPS 2020), a log density up to a
    constant, i.e. a log-likelihood ratio against a flat OOD density; ``lse(z_{:K}) - z_K`` is the
    unknown head's log-odds of "known". Assuming the two are conditionally independent given ID/OOD
    (naive Bayes), their log-likelihood ratios add. (``lse(z_{:K}) + log(1 - p_unk)``, the
    probability-space product, would be almost exactly the energy score when ``p_unk`` is small.)
    """
    z = _check(logits_k1)
    return torch.logsumexp(z[:, :-1], dim=1) + known_log_odds(z)
