"""OOD evaluation of the standalone engine: OpenOOD's eval_ood table, computed with pytorch-ood detectors.

:func:`evaluate_ood` runs the network once per loader (:func:`collect_outputs`), fits every requested
postprocessor on the cached ID training outputs, scores the ID test set and every OOD set, and lays the
results out like OpenOOD's ``Evaluator.eval_ood``: rows near sets…, ``nearood`` (their mean), far
sets…, ``farood``; columns FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC, in percent (metrics: see
:mod:`.metrics`). The ACC column repeats the ID test accuracy, as in OpenOOD.
"""

import warnings
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ...evaluation import metrics
from ...evaluation.outputs import NetOutputs, collect_outputs, id_metrics
from ...settings import DEFAULT_POSTPROCESSORS
from .detectors import UnknownHeadRequired, build_postprocessor

__all__ = [
    "DEFAULT_POSTPROCESSORS",
    "TABLE_COLUMNS",
    "collect_outputs",
    "id_metrics",
    "evaluate_ood",
    "format_table",
]

TABLE_COLUMNS = metrics.OOD_METRIC_NAMES + ("ACC",)


def _build_all(net, postprocessors, pp_args):
    built, skipped = {}, {}
    pp_args = dict(pp_args or {})
    extra = sorted(set(pp_args) - set(postprocessors))
    if extra:
        raise ValueError(f"pp_args name postprocessors that are not evaluated: {extra}")
    for name in postprocessors:
        try:
            built[name] = build_postprocessor(name, net, **(pp_args.get(name) or {}))
        except UnknownHeadRequired as err:
            skipped[name] = str(err)
            warnings.warn(f"skipping postprocessor {name!r}: {err}")
    return built, skipped


def evaluate_ood(
    net: nn.Module,
    loaders: Mapping,
    postprocessors: Sequence[str] = DEFAULT_POSTPROCESSORS,
    pp_args: Optional[Mapping[str, Mapping]] = None,
    device="cpu",
    progress: bool = True,
    fpr_positive: str = "ood",
) -> Tuple[pd.DataFrame, Dict[str, Dict]]:
    """Evaluate ``net`` with each postprocessor on every OOD set of ``loaders``.

    :param loaders: ``{'id': {'train', 'val', 'test'}, 'ood': {'val', 'near': {name: loader},
        'far': {name: loader}}}``; batches are ``{'data', 'label'}`` dicts or ``(x, y)`` tuples.
        ``id.test`` is required, ``id.train`` when a postprocessor is fit (knn, react, vim, mds),
        ``id.val`` is optional (react fits on it, as OpenOOD does), ``ood.val`` is not used (no
        hyper-parameter search). Give the ID training set with test-time transforms.
    :param postprocessors: registered names (see :mod:`.detectors`). Unknown-aware ones (known,
        ua_msp, ua_energy) are skipped with a warning on a network without an unknown head.
    :param pp_args: settings per postprocessor, e.g. ``{'knn': {'k': 50}, 'vim': {'d': 64}}``.
    :param device: where the network runs; ``net`` is moved there and put in eval mode (its training
        mode is restored afterwards).
    :param fpr_positive: FPR@95 convention, 'ood' (OpenOOD v1.5, default) or 'id' (OpenOOD v1, MOON
        paper code); see :mod:`.metrics`.
    :return: ``(table, scores)``. ``table``: DataFrame indexed by (postprocessor, dataset) with the
        columns FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC in percent; ``table.loc[name]`` is OpenOOD's
        eval_ood frame for one postprocessor. ``table.attrs``: ``'id'`` (:func:`id_metrics`),
        ``'fpr_positive'``, ``'skipped'`` ({name: reason}), ``'settings'`` ({name: repr}).
        ``scores``: ``{name: {'id': conf, 'near': {set: conf}, 'far': {set: conf}}}``, float64
        confidence arrays (higher = more ID) on the ID test set and each OOD set.
    """
    if fpr_positive not in ("ood", "id"):
        raise ValueError(f"fpr_positive must be 'ood' or 'id', got {fpr_positive!r}")
    if isinstance(postprocessors, str):
        postprocessors = (postprocessors,)
    built, skipped = _build_all(net, list(postprocessors), pp_args)
    id_loaders, ood_loaders = loaders["id"], loaders.get("ood", {})
    ood_sets = {split: dict(ood_loaders.get(split) or {}) for split in ("near", "far")}
    if "test" not in id_loaders:
        raise ValueError("loaders['id'] needs a 'test' loader")
    needed = {split for pp in built.values() for split in pp.fit_splits}
    if "train" in needed and id_loaders.get("train") is None:
        raise ValueError(
            f"postprocessors {[n for n, pp in built.items() if pp.fit_splits]} are fit on "
            f"loaders['id']['train'], which is missing"
        )

    was_training = net.training
    net.to(device).eval()
    try:
        def forward(loader, desc):
            return collect_outputs(net, loader, device=device, progress=progress, desc=desc)

        id_train = forward(id_loaders["train"], "id/train") if "train" in needed else None
        id_val = None
        if "val" in needed and id_loaders.get("val") is not None:
            id_val = forward(id_loaders["val"], "id/val")
        id_test = forward(id_loaders["test"], "id/test")
        ood_outputs = {
            split: {name: forward(loader, f"{split}/{name}") for name, loader in sets.items()}
            for split, sets in ood_sets.items()
        }
    finally:
        net.train(was_training)

    id_summary = id_metrics(id_test)
    rows, index, scores = [], [], {}
    for name, pp in tqdm(built.items(), desc="postprocessors", disable=not progress, leave=False):
        pp.fit(id_train, id_val)
        id_conf = pp.confidence(id_test)
        scores[name] = {"id": id_conf, "near": {}, "far": {}}
        for split in ("near", "far"):
            split_rows = []
            for set_name, outputs in ood_outputs[split].items():
                conf = pp.confidence(outputs)
                scores[name][split][set_name] = conf
                result = metrics.ood_metrics(id_conf, conf, fpr_positive=fpr_positive)
                split_rows.append([100 * result[m] for m in metrics.OOD_METRIC_NAMES])
                index.append((name, set_name))
            if split_rows:
                rows.extend(split_rows)
                rows.append(list(np.mean(split_rows, axis=0)))
                index.append((name, f"{split}ood"))
    table = pd.DataFrame(
        rows,
        index=pd.MultiIndex.from_tuples(index, names=["postprocessor", "dataset"]),
        columns=list(metrics.OOD_METRIC_NAMES),
    )
    table["ACC"] = id_summary["ACC"]
    table.attrs.update(
        id=id_summary,
        fpr_positive=fpr_positive,
        skipped=skipped,
        settings={name: repr(pp) for name, pp in built.items()},
    )
    return table, scores


def format_table(table: pd.DataFrame) -> str:
    """The table as text, two decimals, with the ID accuracy / ECE line on top."""
    lines = []
    id_summary = table.attrs.get("id")
    if id_summary:
        lines.append("ID: " + "  ".join(f"{k} {v:.2f}" for k, v in id_summary.items()) + "  (percent)")
    if "fpr_positive" in table.attrs:
        lines.append(f"FPR@95 with {table.attrs['fpr_positive'].upper()} as the positive class")
    for name, reason in table.attrs.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        lines.append(table.to_string(float_format=lambda v: f"{v:.2f}"))
    return "\n".join(lines)
