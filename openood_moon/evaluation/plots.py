"""Pictures of an evaluation: confidence histograms and ROC curves, one PNG per postprocessor.

Both take the ``scores`` of :func:`.evaluate.evaluate_ood`:
``{name: {'id': conf, 'near': {set: conf}, 'far': {set: conf}}}`` (higher = more ID). Figures are drawn
with matplotlib's object API on the Agg canvas, so no pyplot state or display is touched.
"""

from pathlib import Path
from typing import Dict, List

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import metrics

__all__ = ["plot_score_histograms", "plot_roc_curves"]

_COLORS = {"id": "tab:blue", "near": "tab:orange", "far": "tab:red"}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _concat(sets: Dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=float) for v in sets.values()]) if sets else np.array([])


def plot_score_histograms(scores: Dict[str, Dict], out_dir, bins: int = 50) -> List[Path]:
    """Per postprocessor, ``hist_<name>.png``: densities of the ID test, near-OOD and far-OOD
    confidences (the OOD sets of a split pooled). The x range covers the 0.5-99.5 % quantiles of all
    values; values beyond it are counted in the outer bins. Legends give n and the pooled AUROC."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, per_split in scores.items():
        groups = {"id": np.asarray(per_split["id"], dtype=float)}
        for split in ("near", "far"):
            pooled = _concat(per_split.get(split) or {})
            if pooled.size:
                groups[split] = pooled
        values = np.concatenate(list(groups.values()))
        low, high = np.quantile(values, [0.005, 0.995])
        if not high > low:
            low, high = values.min() - 0.5, values.max() + 0.5
        edges = np.linspace(low, high, bins + 1)
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot()
        for split, conf in groups.items():
            label = {"id": "ID test", "near": "near-OOD", "far": "far-OOD"}[split] + f" (n={conf.size}"
            if split != "id":
                label += f", pooled AUROC {100 * metrics.auroc(groups['id'], conf):.1f}"
            ax.hist(
                np.clip(conf, low, high), bins=edges, density=True, histtype="stepfilled",
                alpha=0.35, color=_COLORS[split], edgecolor=_COLORS[split], linewidth=1.2,
                label=label + ")",
            )
        ax.set_title(f"{name}: confidence on ID vs OOD data")
        ax.set_xlabel("confidence (higher = more in-distribution)")
        ax.set_ylabel("density")
        ax.legend(loc="best", fontsize="small")
        paths.append(_save(fig, out_dir / f"hist_{name}.png"))
    return paths


def plot_roc_curves(scores: Dict[str, Dict], out_dir) -> List[Path]:
    """Per postprocessor, ``roc_<name>.png``: one ROC curve per OOD set with ID as the positive class
    (x: fraction of OOD accepted, y: fraction of ID accepted); near sets solid, far sets dashed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, per_split in scores.items():
        id_conf = per_split["id"]
        fig = Figure(figsize=(5.2, 5.0))
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, linestyle=":", label="chance")
        for split, style in (("near", "-"), ("far", "--")):
            for set_name, conf in (per_split.get(split) or {}).items():
                fpr, tpr = metrics.roc_points(id_conf, conf)
                auc = 100 * metrics.auroc(id_conf, conf)
                label = f"{split}: {set_name} (AUROC {auc:.1f})"
                ax.plot(fpr, tpr, linestyle=style, linewidth=1.4, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_title(f"{name}: ROC, ID positive")
        ax.set_xlabel("false positive rate (OOD accepted as ID)")
        ax.set_ylabel("true positive rate (ID accepted)")
        ax.legend(loc="lower right", fontsize="small")
        paths.append(_save(fig, out_dir / f"roc_{name}.png"))
    return paths
