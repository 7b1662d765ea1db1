"""One forward pass of a network over a loader, and the ID metrics computed from it (both engines)."""
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..netutils import has_unknown_head, model_input, unpack_batch
from . import metrics


@dataclass
class NetOutputs:
    """What one forward pass over a loader yields, on the CPU.

    ``logits`` (N, K) are ``net(x)``; ``features`` (N, F) the penultimate features (the input of
    ``net.fc``); ``labels`` (N,) the loader's labels (OOD sets: -1); ``logits_k1`` (N, K+1) the
    logits with the unknown class last, for MOON networks only (else ``None``).
    """

    logits: Tensor
    features: Tensor
    labels: Tensor
    logits_k1: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def collect_outputs(
    net: nn.Module, loader, device="cpu", progress: bool = False, desc: Optional[str] = None
) -> NetOutputs:
    """One forward pass over ``loader``: logits, penultimate features, labels (and K+1 logits).

    Plain networks: ``net(x, return_feature=True)``. MOON networks (``net.fc_unknown``):
    ``net(x, return_unknown=True, return_feature=True)``, whose first K logits are ``net(x)``.
    The caller puts ``net`` on ``device`` and in eval mode; the outputs are kept on the CPU.
    """
    unknown = has_unknown_head(net)
    logits, features, labels, logits_k1 = [], [], [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        x, y = unpack_batch(batch)
        x = model_input(x, device)
        if unknown:
            out_k1, feat = net(x, return_unknown=True, return_feature=True)
            logits_k1.append(out_k1.float().cpu())
            out = out_k1[:, :-1]
        else:
            out, feat = net(x, return_feature=True)
        logits.append(out.float().cpu())
        features.append(feat.reshape(feat.shape[0], -1).float().cpu())
        labels.append(torch.as_tensor(y).long().reshape(-1).cpu())
    if not labels:
        raise ValueError(f"loader {desc or ''} yielded no batches")
    return NetOutputs(
        logits=torch.cat(logits),
        features=torch.cat(features),
        labels=torch.cat(labels),
        logits_k1=torch.cat(logits_k1) if unknown else None,
    )


def id_metrics(outputs: NetOutputs) -> Dict[str, float]:
    """ID accuracy and ECE (10 bins) in percent, from the model's own view.

    ``ACC`` / ``ECE``: plain network: softmax over K; MOON network: softmax over all K+1, confidence =
    max of the first K, prediction = argmax of the first K (= ``net(x)``'s argmax, as OpenOOD's
    ``eval_acc``). MOON networks also get ``ACC_K1`` / ``ECE_K1``, the MOON code's ``eval_acc``
    (moon-method §1.6): prediction = argmax over K+1 (predicting "unknown" is an error), confidence =
    max over K+1.
    """
    labels = outputs.labels.numpy()
    result = {}
    if outputs.logits_k1 is None:
        probs = torch.softmax(outputs.logits.double(), dim=1)
        conf, pred = probs.max(dim=1)
    else:
        probs = torch.softmax(outputs.logits_k1.double(), dim=1)
        conf, pred = probs[:, :-1].max(dim=1)
        conf_k1, pred_k1 = probs.max(dim=1)
        correct_k1 = pred_k1.numpy() == labels
        result["ACC_K1"] = 100 * metrics.accuracy(pred_k1.numpy(), labels)
        result["ECE_K1"] = 100 * metrics.expected_calibration_error(conf_k1.numpy(), correct_k1)
    result["ACC"] = 100 * metrics.accuracy(pred.numpy(), labels)
    result["ECE"] = 100 * metrics.expected_calibration_error(conf.numpy(), pred.numpy() == labels)
    return {key: result[key] for key in ("ACC", "ECE", "ACC_K1", "ECE_K1") if key in result}
