"""``moon`` postprocessor: the paper's OOD score on a MOON net, inside OpenOOD.

Score (Lei et al., TMLR 2024; moon-method §1.6): softmax over all K+1 logits (index K = unknown),
confidence = max over the first K, prediction = argmax over the first K. No renormalisation, so
mass on the unknown logit lowers the confidence. The net is called as ``net(x, return_unknown=True)``.
A plain K-way net (no ``return_unknown``) gets plain MSP, so the name works for any model.

``MoonPostprocessor`` subclasses OpenOOD's ``BasePostprocessor`` and is created on first access,
so importing this module never imports OpenOOD.
"""
import inspect
import json
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ...netutils import device_of, unwrap


ARG_ALIASES = {"knn": {"k": "K"}, "vim": {"d": "dim"}}  # standalone names -> OpenOOD's
DEFAULT_ARGS = {"knn": {"K": 50}, "react": {"percentile": 90}, "ebo": {"temperature": 1},
                "ash": {"percentile": 90}, "dice": {"p": 90}, "scale": {"percentile": 85}}


def postprocessor_config(name: str, id_name: str, user_args: Optional[Dict] = None,
                         feature_size: Optional[int] = None) -> Dict:
    """OpenOOD postprocessor config (yml form) with APS off; ``user_args`` may use our names."""
    args = dict(DEFAULT_ARGS.get(name, {}))
    if name == "vim" and feature_size:
        args["dim"] = max(1, feature_size // 2)
    aliases = ARG_ALIASES.get(name, {})
    args.update({aliases.get(k, k): v for k, v in (user_args or {}).items()})
    return {"postprocessor": {"name": name, "APS_mode": False, "postprocessor_args": args},
            "dataset": {"name": id_name}}


def settings_of(postprocessor) -> Tuple[str, bool]:
    """(settings as JSON, whether they came from OpenOOD's automatic parameter search) of an OpenOOD
    postprocessor after evaluation: its ``postprocessor_args``, each replaced by the attribute of the
    same name when the search set one."""
    args = {}
    for key, value in dict(getattr(postprocessor, "args", None) or {}).items():
        value = getattr(postprocessor, key, value)
        args[key] = value.tolist() if hasattr(value, "tolist") else value
    return json.dumps(args, sort_keys=True, default=str), bool(getattr(postprocessor, "APS_mode", False))


def accepts_unknown(net: nn.Module) -> bool:
    """True when ``net.forward`` takes ``return_unknown`` (a MoonNet)."""
    try:
        return "return_unknown" in inspect.signature(unwrap(net).forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def moon_scores(net: nn.Module, data: torch.Tensor):
    """(pred, conf): argmax and max of softmax(K+1 logits)[:, :K]; plain MSP for a K-way net."""
    if accepts_unknown(net):
        from openood_moon.moon.scores import moon_confidence

        logits = net(data, return_unknown=True)
        return logits[:, :-1].argmax(dim=1), moon_confidence(logits)
    conf, pred = torch.softmax(net(data), dim=1).max(dim=1)
    return pred, conf


def _build_class():
    from openood.postprocessors import BasePostprocessor

    class MoonPostprocessor(BasePostprocessor):
        """OpenOOD postprocessor ``moon``; no hyperparameters (APS off)."""

        def __init__(self, config):
            super().__init__(config)
            self.APS_mode = False
            self.hyperparam_search_done = False

        def postprocess(self, net, data):
            return moon_scores(net, data)

        def inference(self, net, data_loader, progress: bool = True):
            """As BasePostprocessor.inference, but on the net's device instead of ``.cuda()``."""
            device = device_of(net)
            preds, confs, labels = [], [], []
            for batch in data_loader:
                pred, conf = self.postprocess(net, batch["data"].to(device))
                preds.append(pred.cpu())
                confs.append(conf.cpu())
                labels.append(torch.as_tensor(batch["label"]).cpu())
            return (torch.cat(preds).numpy().astype(int), torch.cat(confs).numpy(),
                    torch.cat(labels).numpy().astype(int))

    MoonPostprocessor.__module__ = __name__
    MoonPostprocessor.__qualname__ = "MoonPostprocessor"
    return MoonPostprocessor


def __getattr__(name):
    if name == "MoonPostprocessor":
        cls = _build_class()
        globals()["MoonPostprocessor"] = cls  # build once: later accesses get the same class
        return cls
    raise AttributeError(name)
