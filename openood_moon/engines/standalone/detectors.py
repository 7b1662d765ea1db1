"""OOD postprocessors of the standalone engine, built on pytorch-ood, in a registry named like OpenOOD's.

A postprocessor is fit on the ID training outputs of a network and turns the cached outputs of any
loader (:class:`NetOutputs`: logits, penultimate features, labels, and the K+1 logits of a MOON net)
into per-sample *confidences*, higher = more in-distribution (OpenOOD's convention). The network is run
once per loader by :func:`.evaluate.collect_outputs`; the detectors only see tensors, so every detector
reuses the same forward pass.

pytorch-ood scores are "higher = more OOD"; :func:`to_confidence` is the one place that converts them.

Registry (``POSTPROCESSORS``), with settings given as keyword arguments (OpenOOD's
``postprocessor_args`` names are accepted as aliases: ``K`` for knn, ``dim`` for vim):

* ``msp``   max softmax probability over the K logits (pytorch-ood ``MaxSoftmax``; Hendrycks & Gimpel 2017)
* ``ebo``   energy, ``temperature`` (default 1) (``EnergyBased``; Liu et al. 2020)
* ``mls``   max logit (``MaxLogit``; Hendrycks et al. 2022)
* ``knn``   distance to the k-th nearest normalised ID training feature, ``k`` (default 50),
  ``normalize`` (default True) (``KNN``; Sun et al. 2022)
* ``react`` energy of the logits of the features clipped at a percentile of ID activations,
  ``percentile`` in percent (default 90, as OpenOOD), ``fit_split`` 'val' (default, as OpenOOD; falls
  back to 'train' without an ID val set) or 'train' (``ReAct`` with ``net.get_fc_layer()`` as head, i.e.
  ``net.forward_threshold`` on cached features; Sun et al. 2021)
* ``vim``   virtual-logit matching, ``d`` = principal-subspace dimension, 1 <= d <= F-1 (default F//2)
  (``ViM`` with ``net.get_fc()``; Wang et al. 2022)
* ``mds``   Mahalanobis distance to the closest class mean, shared covariance (``Mahalanobis``; Lee et al.
  2018)
* ``moon``  the MOON paper's score, :func:`~openood_moon.moon.scores.moon_confidence` on the K+1 logits;
  on a network without an unknown head it is MSP
* ``known``, ``ua_msp``, ``ua_energy``: our unknown-aware scores (``known_log_odds`` — same ranking as
  1 - p_unknown —, ``unknown_aware_msp``, ``unknown_aware_energy``); they need a MOON network and raise
  :class:`UnknownHeadRequired` otherwise.
"""

import inspect
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from pytorch_ood.detector import KNN, EnergyBased, Mahalanobis, MaxLogit, MaxSoftmax, ReAct, ViM
from torch import Tensor, nn

from openood_moon.moon import scores as moon_scores

from ...evaluation.outputs import NetOutputs
from ...netutils import fc_layer, has_unknown_head

__all__ = [
    "NetOutputs",
    "Postprocessor",
    "UnknownHeadRequired",
    "POSTPROCESSORS",
    "available_postprocessors",
    "build_postprocessor",
    "has_unknown_head",
    "to_confidence",
]


class UnknownHeadRequired(ValueError):
    """Raised when an unknown-aware postprocessor meets a network without an unknown head."""


def to_confidence(ood_score: Tensor) -> np.ndarray:
    """pytorch-ood outlier score (higher = more OOD) -> OpenOOD confidence (higher = more ID).

    The only sign conversion in the standalone engine: ``confidence = -ood_score``, as float64 numpy.
    """
    return -ood_score.detach().cpu().double().numpy()


def _numpy(confidence: Tensor) -> np.ndarray:
    """A confidence that is already "higher = more ID" (our MOON scores) as float64 numpy."""
    return confidence.detach().cpu().double().numpy()


class Postprocessor:
    """Base class: ``fit(id_train, id_val=None)`` then ``confidence(outputs)`` (higher = more ID)."""

    name: str = ""
    #: whether the postprocessor needs the K+1 logits of a MOON network
    requires_unknown: bool = False
    #: which ID splits ``fit`` reads: () for none, ('train',) or ('train', 'val')
    fit_splits: Tuple[str, ...] = ()
    #: OpenOOD's names of settings -> ours
    aliases: Dict[str, str] = {}

    def __init__(self, net: nn.Module):
        if self.requires_unknown and not has_unknown_head(net):
            raise UnknownHeadRequired(
                f"postprocessor '{self.name}' needs a MOON network with an unknown head "
                f"(net.fc_unknown); {type(net).__name__} has none"
            )

    def fit(self, id_train: NetOutputs, id_val: Optional[NetOutputs] = None) -> "Postprocessor":
        return self

    def confidence(self, outputs: NetOutputs) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _LogitsPP(Postprocessor):
    """A pytorch-ood logits detector (``self.detector``) on the K class logits."""

    def confidence(self, outputs):
        return to_confidence(self.detector.predict_logits(outputs.logits.double()))


class MSP(_LogitsPP):
    name = "msp"

    def __init__(self, net):
        super().__init__(net)
        self.detector = MaxSoftmax(None)


class Energy(_LogitsPP):
    name = "ebo"

    def __init__(self, net, temperature: float = 1.0):
        super().__init__(net)
        if temperature <= 0:
            raise ValueError(f"ebo: temperature must be > 0, got {temperature}")
        self.detector = EnergyBased(None, t=float(temperature))


class MaxLogitPP(_LogitsPP):
    name = "mls"

    def __init__(self, net):
        super().__init__(net)
        self.detector = MaxLogit(None)


class _FeaturesPP(Postprocessor):
    """A pytorch-ood feature detector (``self.detector``) fitted on the ID training features."""

    fit_splits = ("train",)

    def fit(self, id_train, id_val=None):
        self.detector.fit_features(id_train.features.float(), id_train.labels)
        return self

    def confidence(self, outputs):
        return to_confidence(self.detector.predict_features(outputs.features.float()))


class KNNPP(_FeaturesPP):
    name = "knn"
    aliases = {"K": "k"}

    def __init__(self, net, k: int = 50, normalize: bool = True):
        super().__init__(net)
        if int(k) != k or k < 1:
            raise ValueError(f"knn: k must be a positive integer, got {k}")
        self.detector = KNN(None, k=int(k), normalize=bool(normalize))

    def __repr__(self):
        return f"KNNPP(k={self.detector.k}, normalize={self.detector.normalize})"


class ReActPP(Postprocessor):
    name = "react"
    fit_splits = ("train", "val")

    def __init__(self, net, percentile: float = 90, fit_split: str = "val"):
        super().__init__(net)
        # OpenOOD's react.yml gives the percentile in percent; pytorch-ood takes a fraction
        if not 1 <= percentile <= 100:
            raise ValueError(
                f"react: percentile is in percent (OpenOOD's convention, e.g. 90), got {percentile}"
            )
        if fit_split not in ("train", "val"):
            raise ValueError(f"react: fit_split must be 'train' or 'val', got {fit_split!r}")
        self.fit_split = fit_split
        # fc on the clipped penultimate features == net.forward_threshold(x, threshold)
        self.detector = ReAct(backbone=None, head=fc_layer(net), percentile=percentile / 100.0)

    def fit(self, id_train, id_val=None):
        data = id_val if (self.fit_split == "val" and id_val is not None) else id_train
        self.detector.fit_feature_maps(data.features.float(), data.labels)
        return self

    @property
    def threshold(self) -> Optional[float]:
        return self.detector.threshold

    def confidence(self, outputs):
        return to_confidence(self.detector.predict_feature_maps(outputs.features.float()))

    def __repr__(self):
        return f"ReActPP(percentile={self.detector.percentile * 100:g}, threshold={self.threshold})"


class ViMPP(_FeaturesPP):
    name = "vim"
    aliases = {"dim": "d"}

    def __init__(self, net, d: Optional[int] = None):
        super().__init__(net)
        w, b = net.get_fc()
        w = torch.as_tensor(np.asarray(w), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(b), dtype=torch.float32)
        n_features = w.shape[1]
        d = n_features // 2 if d is None else d
        if int(d) != d or not 1 <= d <= n_features - 1:
            raise ValueError(
                f"vim: d (principal-subspace dimension) must be an integer in [1, F-1] = "
                f"[1, {n_features - 1}], got {d}"
            )
        self.detector = ViM(None, d=int(d), w=w, b=b)

    def __repr__(self):
        return f"ViMPP(d={self.detector.d})"


class MahalanobisPP(_FeaturesPP):
    name = "mds"

    def __init__(self, net):
        super().__init__(net)
        self.detector = Mahalanobis(None)


class MoonPP(Postprocessor):
    """The paper's score on the K+1 logits; MSP on a network without an unknown head."""

    name = "moon"

    def confidence(self, outputs):
        if outputs.logits_k1 is None:
            return to_confidence(MaxSoftmax.score(outputs.logits.double()))
        return _numpy(moon_scores.moon_confidence(outputs.logits_k1))


class _UnknownAware(Postprocessor):
    requires_unknown = True
    score: Callable[[Tensor], Tensor]

    def confidence(self, outputs):
        if outputs.logits_k1 is None:
            raise UnknownHeadRequired(
                f"postprocessor '{self.name}' needs the K+1 logits of a MOON network; "
                f"the outputs have none"
            )
        return _numpy(type(self).score(outputs.logits_k1))


class KnownPP(_UnknownAware):
    name = "known"
    score = staticmethod(moon_scores.known_log_odds)


class UnknownAwareMSP(_UnknownAware):
    name = "ua_msp"
    score = staticmethod(moon_scores.unknown_aware_msp)


class UnknownAwareEnergy(_UnknownAware):
    name = "ua_energy"
    score = staticmethod(moon_scores.unknown_aware_energy)


POSTPROCESSORS: Dict[str, type] = {
    cls.name: cls
    for cls in (
        MSP,
        Energy,
        MaxLogitPP,
        KNNPP,
        ReActPP,
        ViMPP,
        MahalanobisPP,
        MoonPP,
        KnownPP,
        UnknownAwareMSP,
        UnknownAwareEnergy,
    )
}


def available_postprocessors() -> Tuple[str, ...]:
    """The registered names, in registry order."""
    return tuple(POSTPROCESSORS)


def build_postprocessor(name: str, net: nn.Module, **settings) -> Postprocessor:
    """Build the postprocessor ``name`` for ``net`` with its ``settings`` (e.g. ``k=50`` for knn).

    :raises ValueError: for an unknown name or setting
    :raises UnknownHeadRequired: (a ValueError) for an unknown-aware postprocessor on a plain network
    """
    if name not in POSTPROCESSORS:
        raise ValueError(
            f"unknown postprocessor {name!r}; valid choices: {', '.join(available_postprocessors())}"
        )
    cls = POSTPROCESSORS[name]
    settings = dict(settings or {})
    for alias, key in cls.aliases.items():
        if alias in settings:
            if key in settings:
                raise ValueError(f"{name}: give {key!r} or its alias {alias!r}, not both")
            settings[key] = settings.pop(alias)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "net")]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(
            f"postprocessor {name!r} got unknown settings {unknown}; it accepts "
            f"{accepted + list(cls.aliases) or 'none'}"
        )
    return cls(net, **settings)
