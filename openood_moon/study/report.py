"""Markdown summary and plots of a study CSV: per-cell means, paired differences with 95 % CIs.

Runs of different settings (dataset × engine × preset, :data:`SETTING`) are never pooled: every table
is written per setting, and settings are compared only by explicit paired differences
(:func:`setting_differences`: ``official − default``, ``openood − standalone``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .stats import Interval, mean_std, paired_interval  # noqa: E402
from .tidy import IMPLIED  # noqa: E402

PAIR_KEYS = ["network", "length", "seed"]
SETTING = ["dataset", "engine", "preset"]
# the axes compared across settings: (column, baseline value, other value)
SETTING_AXES = (("preset", "default", "official"), ("engine", "standalone", "openood"))
UNKNOWN_AWARE = ("known", "ua_msp", "ua_energy")
MOON_SCORES = ("moon", "msp", "ebo", "knn") + UNKNOWN_AWARE


def _group_rows(table: pd.DataFrame, metric: str = "AUROC") -> pd.DataFrame:
    """Near/far means only (``ood_set`` nearood / farood)."""
    t = table[table["ood_set"].isin(["nearood", "farood"])]
    return t[["network", "length", "method", "sparsity", "variant", "seed", "score", "ood_set", metric,
              "ACC", "ECE"]]


def aligned_interval(left: pd.Series, right: pd.Series) -> Interval:
    """Paired interval of ``left − right`` over the index values (the pairing keys) both hold."""
    both = left.index.intersection(right.index)
    return paired_interval(left.loc[both].values, right.loc[both].values)


def paired(table: pd.DataFrame, a: Dict, b: Dict, score_a: str, score_b: str, ood_set: str,
           metric: str = "AUROC", keys: Sequence[str] = PAIR_KEYS) -> Interval:
    """Interval of ``metric(a) − metric(b)`` paired by ``keys`` (seed included)."""
    t = _group_rows(table, metric)
    t = t[t["ood_set"] == ood_set]

    def pick(sel, score):
        m = t["score"] == score
        for k, v in sel.items():
            m &= t[k] == v
        return t[m].set_index(list(keys))[metric]

    return aligned_interval(pick(a, score_a), pick(b, score_b))


def sparse_cells(table: pd.DataFrame) -> List[Tuple]:
    t = table[table["method"] != "dense"]
    return sorted(set(map(tuple, t[["network", "length", "method", "sparsity"]].values)))


def cell_summary(table: pd.DataFrame, scores=("msp", "moon")) -> pd.DataFrame:
    t = _group_rows(table)
    rows = []
    for keys, g in t.groupby(["network", "length", "method", "sparsity", "variant"]):
        row = dict(zip(["network", "length", "method", "sparsity", "variant"], keys))
        first = g.drop_duplicates("seed")
        row["seeds"] = len(first)
        row["ACC"] = mean_std(first["ACC"])
        row["ECE"] = mean_std(first["ECE"])
        for s in scores:
            for group in ("nearood", "farood"):
                v = g[(g["score"] == s) & (g["ood_set"] == group)]["AUROC"]
                row[f"{group[:-3]} AUROC {s}"] = mean_std(v)
        rows.append(row)
    return pd.DataFrame(rows)


def score_table(table: pd.DataFrame, scores: Sequence[str] = None) -> pd.DataFrame:
    """Mean ± std over seeds of ACC, ECE and near/far AUROC and FPR@95, per setting × cell × variant × score."""
    t = with_setting(table)
    t = t[t["ood_set"].isin(["nearood", "farood"])]
    if scores:
        t = t[t["score"].isin(scores)]
    rows = []
    keys_of = SETTING + ["network", "length", "method", "sparsity", "variant", "score"]
    for keys, g in t.groupby(keys_of, sort=False):
        near, far = g[g["ood_set"] == "nearood"], g[g["ood_set"] == "farood"]
        rows.append({**dict(zip(keys_of, keys)), "seeds": near["seed"].nunique(),
                     "ACC": mean_std(near["ACC"]), "ECE": mean_std(near["ECE"]),
                     "near AUROC": mean_std(near["AUROC"]), "far AUROC": mean_std(far["AUROC"]),
                     "near FPR95": mean_std(near["FPR95"]), "far FPR95": mean_std(far["FPR95"])})
    return pd.DataFrame(rows)


def differences(table: pd.DataFrame, threshold: float = 2.0) -> Dict[str, pd.DataFrame]:
    """sparse − dense, MOON − sparse and the two ablations, per sparse cell, near and far."""
    out = {"sparse − dense": [], "MOON − sparse": [], "vote − sparse": [], "loss − sparse": []}
    variants = set(table["variant"])
    for network, length, method, sparsity in sparse_cells(table):
        cell = {"network": network, "length": length, "method": method, "sparsity": sparsity}
        base = {"cell": f"{network} {length} {method} {sparsity:g}"}
        if "dense" in variants and "sparse" in variants:
            for s in ("msp", "ebo", "knn"):
                row = {**base, "score": s, "n": 0}
                for g in ("nearood", "farood"):
                    iv = paired(table, {**cell, "variant": "sparse"}, {"network": network, "length": length,
                                "variant": "dense"}, s, s, g)
                    row[g[:-3]] = str(iv)
                    row[f"{g[:-3]} ≤ −{threshold:g} & CI<0"] = iv.mean <= -threshold and iv.excludes_zero
                    row["n"] = iv.n
                out["sparse − dense"].append(row)
        for name, variant, scores in (("MOON − sparse", "sparse_moon", MOON_SCORES),
                                      ("vote − sparse", "sparse_vote", ("msp", "ebo", "knn")),
                                      ("loss − sparse", "sparse_loss", ("moon", "msp") + UNKNOWN_AWARE)):
            if variant not in variants or "sparse" not in variants:
                continue
            for s in scores:
                baseline_score = "msp" if s in UNKNOWN_AWARE + ("moon",) else s
                row = {**base, "score": s if baseline_score == s else f"{s} vs sparse msp", "n": 0}
                for g in ("nearood", "farood"):
                    iv = paired(table, {**cell, "variant": variant}, {**cell, "variant": "sparse"}, s,
                                baseline_score, g)
                    row[g[:-3]] = str(iv)
                    row[f"{g[:-3]} CI excludes 0"] = iv.excludes_zero
                    row["n"] = iv.n
                if row["n"]:                             # scores this study did not evaluate: no row
                    out[name].append(row)
    return {k: pd.DataFrame(v) for k, v in out.items() if v}


def with_setting(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every :data:`SETTING` column (a missing one takes its implied value)."""
    missing = {c: IMPLIED[c] for c in SETTING if c not in table.columns}
    return table.assign(**missing) if missing else table


def settings(table: pd.DataFrame) -> List[Tuple[str, pd.DataFrame]]:
    """``(label, rows)`` per dataset × engine × preset, e.g. ``"mnist6 · standalone · official"``."""
    t = with_setting(table)
    return [(" · ".join(map(str, keys)), g) for keys, g in t.groupby(SETTING, sort=True)]


def per_set_table(table: pd.DataFrame, scores: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """AUROC mean ± std over seeds for every OOD set (the near/far aggregates and each set apart),
    per cell × variant × score (default: every score the rows hold); one setting's rows."""
    t = table if scores is None else table[table["score"].isin(scores)]
    sets = list(dict.fromkeys(t["ood_set"]))
    rows = []
    for keys, g in t.groupby(["cell", "variant", "score"], sort=False):
        row = dict(zip(["cell", "variant", "score"], keys))
        row.update({s: mean_std(g[g["ood_set"] == s]["AUROC"]) for s in sets})
        rows.append(row)
    return pd.DataFrame(rows)


def setting_differences(table: pd.DataFrame, scores: Sequence[str] = ("msp", "moon")) -> pd.DataFrame:
    """``other − baseline`` of one :data:`SETTING_AXES` axis (the other setting columns held fixed),
    per cell × variant × score, near and far AUROC and ACC, paired by seed."""
    t = with_setting(table)
    t = t[t["ood_set"].isin(["nearood", "farood"]) & t["score"].isin(scores)]
    rows = []
    for axis, base, other in SETTING_AXES:
        if not {base, other} <= set(t[axis]):
            continue
        fixed = [c for c in SETTING if c != axis]
        keys_of = fixed + ["network", "length", "method", "sparsity", "variant", "score"]
        for keys, g in t.groupby(keys_of, sort=True):
            row = {"comparison": f"{axis}: {other} − {base}", **dict(zip(keys_of, keys))}
            for group in ("nearood", "farood"):
                gg = g[g["ood_set"] == group]
                left, right = (gg[gg[axis] == v].set_index("seed")["AUROC"] for v in (other, base))
                iv = aligned_interval(left, right)
                row[group[:-3]], row["n"] = str(iv), iv.n
            acc = g[g["ood_set"] == "nearood"]
            left, right = (acc[acc[axis] == v].set_index("seed")["ACC"] for v in (other, base))
            row["ACC"] = str(aligned_interval(left, right))
            if row["n"]:
                rows.append(row)
    return pd.DataFrame(rows)


def write_summary(table: pd.DataFrame, path: Path, title: str = "Study summary") -> str:
    lines = [f"# {title}", "",
             f"{table['run_id'].nunique()} runs; AUROC in percent; mean ± std over seeds; "
             "differences are paired by seed, mean [95 % Student-t CI]. Settings (dataset · engine · "
             "preset) are reported apart, never pooled.", ""]
    for label, rows in settings(table):
        lines += [f"## {label}", "", f"Runs: {rows['run_id'].nunique()}.", "",
                  "### Cells", "", cell_summary(rows).to_markdown(index=False), "",
                  "### AUROC per OOD set", "", per_set_table(rows).to_markdown(index=False), ""]
        for name, frame in differences(rows).items():
            lines += [f"### {name} (AUROC points)", "", frame.to_markdown(index=False), ""]
    across = setting_differences(table)
    if len(across):
        lines += ["## Between settings (AUROC and ACC points)", "", across.to_markdown(index=False), ""]
    text = "\n".join(lines)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def plot_auroc_vs_sparsity(table: pd.DataFrame, out_dir: Path, score: str = "msp") -> List[Path]:
    """AUROC vs sparsity per variant (mean ± std over seeds); dense as a horizontal band; one figure
    per setting × network × length × method."""
    paths = []
    for label, rows in settings(table):
        paths += _plot_setting(rows, Path(out_dir), score, label)
    return paths


def _plot_setting(table: pd.DataFrame, out_dir: Path, score: str, label: str) -> List[Path]:
    t = _group_rows(table)
    t = t[t["score"] == score]
    tag = label.replace(" · ", "_")
    paths = []
    for (network, length), g in t.groupby(["network", "length"]):
        for method in sorted(set(g["method"]) - {"dense"}):
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            for ax, group in zip(axes, ("nearood", "farood")):
                gg = g[g["ood_set"] == group]
                dense = gg[gg["variant"] == "dense"]["AUROC"]
                if len(dense):
                    ax.axhline(dense.mean(), color="k", lw=1, label="dense")
                    ax.axhspan(dense.mean() - dense.std(), dense.mean() + dense.std(), color="k", alpha=0.1)
                for variant, vg in gg[gg["method"] == method].groupby("variant"):
                    stats = vg.groupby("sparsity")["AUROC"].agg(["mean", "std"])
                    ax.errorbar(100 * stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                                label=variant)
                ax.set_xlabel("sparsity (%)")
                ax.set_ylabel(f"{group[:-3]}-OOD AUROC (%)")
                ax.set_title(f"{group[:-3]}-OOD, score {score}")
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=8)
            fig.suptitle(f"{label}: {network}, {length}, {method}: AUROC vs sparsity (mean ± std over seeds)")
            fig.tight_layout()
            path = Path(out_dir) / f"auroc_vs_sparsity_{tag}_{network}_{length}_{method}_{score}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


def report(table: pd.DataFrame, out_dir: Path, title: Optional[str] = None) -> str:
    text = write_summary(table, Path(out_dir) / "summary.md", title or "Study summary")
    for score in ("msp", "moon"):
        plot_auroc_vs_sparsity(table, Path(out_dir) / "plots", score)
    return text
