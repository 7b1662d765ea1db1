"""OpenOOD's ``scripts/eval_ood.py`` for MOON checkpoints (and any OpenOOD-layout run): ``main(argv)``.

Same interface and files as OpenOOD's script: ``--root`` holds ``s*/`` run folders; each is evaluated
with OpenOOD's Evaluator API and ``--save-csv`` writes ``<root>/ood/<pp>.csv`` ("mean ± std" over the
runs; rows near sets, ``nearood``, far sets, ``farood``; columns FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC).
What differs:

* the network comes from each run's ``config.yml`` (``--network`` overrides the name): our
  ``small_cnn``/``resnet18_32x32`` or any network OpenOOD's ``get_network`` knows. ``moon_net.ckpt``
  (a MOON net with its unknown head, so the ``moon`` postprocessor sees K+1 logits) is loaded when
  present, else ``best.ckpt``, else the compressed ``best.sparse.pt`` of a sparse run
  (``openood_moon.sparse_export``); all strictly.
* ``--id-data``: OpenOOD's benchmarks, the embedded ``mnist6`` (built offline under ``--data-root``)
  and any benchmark a run's ``config.yml`` describes (registered from its image lists, no download).
* postprocessor settings: ``<config_root>/postprocessors/<pp>.yml`` from ``--config-root``, then
  ours (``configs/``), then an OpenOOD checkout's (``$OPENOOD_ROOT/configs``, or next to the
  ``openood`` package); the Evaluator always gets a folder holding the file, so it never downloads.
  With no yml anywhere, fixed settings without parameter search are used (the train_moon defaults).
* ``--save-score`` writes ``s*/scores/<pp>.npz`` (numpy arrays, no pickle); they are reused when
  newer than the checkpoint and saved for the same checkpoint file and ``--id-data``. OpenOOD's
  pickled-postprocessor cache (``s*/postprocessors/*.pkl``) is neither read nor written.
* several postprocessors per call (``--postprocessor msp ebo knn``), one summary of near/far AUROC.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import yaml

from ...results import METRIC_COLUMNS as COLUMNS, provenance, with_provenance
from .postprocessor import settings_of
from ...config import ConfigError
from ...sparse_export import read_state_dict

from ...config import CONFIGS_ROOT as REPO_CONFIGS  # ours, shipped in the package

CHECKPOINTS = {"auto": ("moon_net.ckpt", "best.ckpt", "best.sparse.pt"), "moon_net": ("moon_net.ckpt",),
               "best": ("best.ckpt", "best.sparse.pt"), "sparse": ("best.sparse.pt",)}  # .sparse.pt: sparse_export


class EvalError(Exception):
    """A user error: printed as ``error: ...`` with exit status 2."""


# ------------------------------------------------------------------ run folders and their configs


class _TolerantLoader(yaml.SafeLoader):
    """Safe YAML that reads OpenOOD's python-tagged ``config.yml`` dumps as plain mappings."""


def _python_tag(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        mapping = loader.construct_mapping(node, deep=True)
        return mapping.get("dictitems", mapping)  # a dumped Config: its items; never an object
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _python_tag)


def run_folders(root: str) -> List[str]:
    """``<root>/s*`` folders (OpenOOD's layout), sorted; an error when there are none."""
    runs = sorted(p for p in glob.glob(os.path.join(root, "s*")) if os.path.isdir(p))
    if not runs:
        raise EvalError(f"no run folders {os.path.join(root, 's*')}/ found (expected s0/best.ckpt, ...)")
    return runs


def load_run_config(run_dir: str) -> Dict:
    """The run's ``config.yml`` as plain dicts ({} when absent); OpenOOD's own dumps are read safely."""
    path = os.path.join(run_dir, "config.yml")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        cfg = yaml.load(f, Loader=_TolerantLoader)  # noqa: S506 - SafeLoader subclass, builds no objects
    return cfg if isinstance(cfg, dict) else {}


# ------------------------------------------------------------------ benchmark


def benchmark_choices(run_cfgs: List[Dict]) -> List[str]:
    import openood.evaluation_api.datasets as eds

    from openood_moon.data.builder import EMBEDDED_BENCHMARKS

    names = set(eds.DATA_INFO) | set(EMBEDDED_BENCHMARKS)
    names |= {c["dataset"]["name"] for c in run_cfgs if _describes_benchmark(c)}
    return sorted(names)


def _describes_benchmark(cfg: Dict) -> bool:
    return isinstance(cfg.get("dataset"), dict) and isinstance(cfg.get("ood_dataset"), dict) \
        and "name" in cfg["dataset"]


def prepare_benchmark(id_name: str, data_root: str, run_cfgs: List[Dict]) -> str:
    """Make ``id_name`` known to the Evaluator without downloads where we can; return its data_root."""
    import openood.evaluation_api.datasets as eds

    from openood_moon.data.builder import EMBEDDED_BENCHMARKS

    from .datasets import register_benchmark, register_embedded
    from openood.preprocessors.transform import normalization_dict

    from ...config import ConfigError
    from ...data.check import check_benchmark
    from ...data.imglist import info_from_configs
    from .run_data import data_root_of

    if id_name in EMBEDDED_BENCHMARKS:
        return register_embedded(data_root, id_name)
    if id_name in eds.DATA_INFO:  # OpenOOD's own (its Evaluator fetches missing data, as its script)
        return data_root
    for cfg in run_cfgs:
        if _describes_benchmark(cfg) and cfg["dataset"]["name"] == id_name:
            ds = cfg["dataset"]
            try:
                info = info_from_configs(ds, cfg["ood_dataset"])
                check_benchmark(info, open_images=False)     # lists, labels, images: file and line
            except ConfigError as err:
                raise EvalError(str(err)) from None
            return register_benchmark(id_name, info, data_root_of(info["id"]["train"]["imglist_path"]),
                                      int(ds["num_classes"]), int(ds.get("pre_size") or 32),
                                      int(ds.get("image_size") or 32),
                                      normalization_dict.get(ds.get("normalization_type"), [[0.5] * 3] * 2))
    raise EvalError(f"unknown --id-data {id_name!r}; valid choices: {', '.join(benchmark_choices(run_cfgs))}")


# ------------------------------------------------------------------ network


def network_section(run_cfg: Dict, override: Optional[str], num_classes: int) -> Dict:
    """OpenOOD ``network`` config for ``get_network``: the run's, name overridden, K from the benchmark."""
    section = dict(run_cfg.get("network") or {})
    if override:
        section = {k: v for k, v in section.items() if k != "backbone"} if override != "moon" else section
        section["name"] = override
    if not section.get("name"):
        raise EvalError("no network: the run has no config.yml with a network section; pass --network NAME")
    section.update(num_classes=num_classes, pretrained=False, checkpoint=None, num_gpus=0)
    if isinstance(section.get("backbone"), dict):
        section["backbone"] = {**section["backbone"], "num_classes": num_classes, "pretrained": False,
                               "checkpoint": None, "num_gpus": 0}
    return section


def load_network(run_dir: str, section: Dict, which: str = "auto") -> Tuple[torch.nn.Module, str]:
    """Build ``section`` with OpenOOD's (wrapped) ``get_network`` and load the run's checkpoint strictly.

    A state with an unknown head (``fc_unknown.*``) makes the net a MoonNet, so ``moon`` sees K+1 logits.
    A truncated, foreign or code-carrying file, or weights of another network or K, is refused saying
    what differs.
    """
    from openood.networks.utils import get_network
    from openood.utils import Config

    from openood_moon.moon.net import MoonNet

    names = [n for n in CHECKPOINTS[which] if os.path.isfile(os.path.join(run_dir, n))]
    if not names:
        raise EvalError(f"{run_dir}: no {' or '.join(CHECKPOINTS[which])}")
    path = os.path.join(run_dir, names[0])
    try:
        state = read_state_dict(path)                    # a plain state_dict or a compressed sparse export
    except ConfigError as err:
        raise EvalError(str(err)) from None
    try:
        net = get_network(Config(section))
    except Exception as err:  # noqa: BLE001 - OpenOOD raises a bare Exception for unknown names
        raise EvalError(f"cannot build network {section['name']!r}: {err}") from None
    if "fc_unknown.weight" in state and not hasattr(net, "fc_unknown"):
        net = MoonNet(net, int(section["num_classes"]))
    from openood_moon.checkpoint import tensor_mismatch

    problems = tensor_mismatch(state, net.state_dict(), "weights")      # what differs, by name and shape
    try:
        if not problems:
            net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        problems = [str(err).splitlines()[0]]
    if problems:
        raise EvalError(f"{path} does not fit network {section['name']!r} (K={section['num_classes']}): "
                        f"{'; '.join(problems)}; check --network / --id-data")
    return net, names[0]


# ------------------------------------------------------------------ postprocessors


def config_roots(explicit: Optional[str]) -> List[str]:
    """Folders searched for ``postprocessors/<pp>.yml``: --config-root, ours, an OpenOOD checkout's."""
    roots = [explicit] if explicit else []
    roots.append(REPO_CONFIGS)
    candidates = []
    if os.environ.get("OPENOOD_ROOT"):
        candidates.append(os.path.join(os.environ["OPENOOD_ROOT"], "configs"))
    try:
        import openood

        candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(openood.__file__))),
                                       "configs"))
    except ImportError:
        pass
    roots += [c for c in candidates if os.path.isdir(os.path.join(c, "postprocessors"))]
    return list(dict.fromkeys(os.path.abspath(r) for r in roots))


def postprocessor_choices() -> List[str]:
    import openood.evaluation_api.postprocessor as epp

    return sorted(epp.postprocessors)


def make_postprocessor(name: str, id_name: str, roots: List[str], feature_size: Optional[int]):
    """(config_root, None) when a yml exists there, else (None, instance with fixed settings, APS off)."""
    for root in roots:
        if os.path.isfile(os.path.join(root, "postprocessors", f"{name}.yml")):
            return root, None
    import openood.evaluation_api.postprocessor as epp
    from openood.utils import Config

    from .postprocessor import postprocessor_config

    cfg = postprocessor_config(name, id_name, None, feature_size)
    print(f"[{name}] no postprocessors/{name}.yml in {', '.join(roots)}: fixed settings "
          f"{cfg['postprocessor']['postprocessor_args']} (no parameter search)", flush=True)
    instance = epp.postprocessors[name](Config(cfg))
    instance.APS_mode, instance.hyperparam_search_done = False, False
    return None, instance


# ------------------------------------------------------------------ scores (npz, no pickle)


def flatten_scores(scores: Dict, prefix: str = "") -> Dict[str, np.ndarray]:
    """Evaluator.scores as flat ``a/b/c`` -> array; [pred, conf, gt] triples become .../pred etc."""
    out = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict):
            out.update(flatten_scores(value, name + "/"))
        elif isinstance(value, (list, tuple)) and len(value) == 3:
            out.update({f"{name}/{part}": np.asarray(v) for part, v in zip(("pred", "conf", "gt"), value)})
        else:
            out[name] = np.asarray(value.cpu() if torch.is_tensor(value) else value)
    return out


def restore_scores(scores: Dict, flat: Dict[str, np.ndarray]) -> int:
    """Put flattened scores back into an Evaluator's ``scores`` (known slots only); return how many."""
    triples: Dict[str, Dict[str, np.ndarray]] = {}
    count = 0
    for key, value in flat.items():
        head, _, part = key.rpartition("/")
        if part in ("pred", "conf", "gt") and head:
            triples.setdefault(head, {})[part] = value
        elif key in scores:  # id_preds / id_labels: tensors in OpenOOD
            scores[key] = torch.as_tensor(value)
            count += 1
    for path, parts in triples.items():
        node, keys = scores, path.split("/")
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node and len(parts) == 3:
            node[keys[-1]] = [parts["pred"], parts["conf"], parts["gt"]]
            count += 1
    return count


def _fresh_scores(score_file: str, ckpt_path: str, meta: Dict[str, np.ndarray]) -> bool:
    """Saved scores are reused only for the same checkpoint file and benchmark, written after it."""
    if not os.path.isfile(score_file) or os.path.getmtime(score_file) < os.path.getmtime(ckpt_path):
        return False
    with np.load(score_file) as saved:
        return all(key in saved.files and str(saved[key]) == str(value) for key, value in meta.items())


# ------------------------------------------------------------------ main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Evaluate <root>/s*/ checkpoints with OpenOOD's Evaluator (OpenOOD's eval_ood.py "
                    "interface; MOON nets, offline benchmarks).")
    parser.add_argument("--root", required=True, help="folder whose s*/ subfolders hold best.ckpt "
                        "(and, for MOON runs, moon_net.ckpt + config.yml)")
    parser.add_argument("--postprocessor", nargs="+", default=["msp"],
                        help="OpenOOD evaluation-API postprocessor name(s), plus 'moon' (default msp)")
    parser.add_argument("--id-data", default=None, help="ID benchmark: cifar10, cifar100, imagenet200, ..., "
                        "mnist6 or a run's own; default: the runs' dataset.name, else cifar10")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--save-csv", action="store_true", help="write <root>/ood/<pp>.csv (mean ± std)")
    parser.add_argument("--save-score", action="store_true", help="write <root>/s*/scores/<pp>.npz")
    parser.add_argument("--fsood", action="store_true", help="full-spectrum OOD (covariate-shifted ID too)")
    parser.add_argument("--data-root", default="./data", help="folder holding benchmark_imglist/ (./data)")
    parser.add_argument("--config-root", default=None,
                        help="folder with postprocessors/<pp>.yml, searched before ours and OpenOOD's")
    parser.add_argument("--network", default=None, help="network name (default: the run's config.yml)")
    parser.add_argument("--checkpoint", default="auto", choices=sorted(CHECKPOINTS),
                        help="auto: moon_net.ckpt when present, else best.ckpt, else best.sparse.pt")
    parser.add_argument("--num-workers", type=int, default=4)
    return parser.parse_args(argv)


def _default_id(run_cfgs: List[Dict]) -> str:
    names = {c["dataset"]["name"] for c in run_cfgs if isinstance(c.get("dataset"), dict) and
             c["dataset"].get("name")}
    if len(names) > 1:
        raise EvalError(f"the runs were trained on different benchmarks {sorted(names)}; pass --id-data")
    return names.pop() if names else "cifar10"


def evaluate_root(args) -> Dict[str, pd.DataFrame]:
    """Evaluate every s*/ run with every postprocessor; return {pp: mean ± std table}."""
    from openood.evaluation_api import Evaluator
    import openood.evaluation_api.datasets as eds

    from ...evaluation.groups import regroup, separate_groups
    from . import compat
    from .register import register

    register(cpu_shim=not torch.cuda.is_available())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = run_folders(args.root)
    run_cfgs = [load_run_config(r) for r in runs]
    valid = postprocessor_choices()
    unknown = [p for p in args.postprocessor if p not in valid]
    if unknown:
        raise EvalError(f"unknown postprocessor {unknown[0]!r}; valid choices: {', '.join(valid)}")
    id_name = args.id_data or _default_id(run_cfgs)
    data_root = prepare_benchmark(id_name, args.data_root, run_cfgs)
    num_classes = int(eds.DATA_INFO[id_name]["num_classes"])
    roots = config_roots(args.config_root)
    print(f"ID data {id_name} (K={num_classes}) under {data_root}; device {device}"
          + (" (CPU shim on)" if compat.cpu_shim_active() else "") + f"; config roots: {', '.join(roots)}",
          flush=True)

    results: Dict[str, List[pd.DataFrame]] = {pp: [] for pp in args.postprocessor}
    for run_dir, run_cfg in zip(runs, run_cfgs):
        section = network_section(run_cfg, args.network, num_classes)
        net, ckpt = load_network(run_dir, section, args.checkpoint)
        net = net.to(device).eval()
        feature_size = getattr(net, "feature_size", None)
        for pp in args.postprocessor:
            start = time.time()
            config_root, instance = make_postprocessor(pp, id_name, roots, feature_size)
            try:
                evaluator = Evaluator(net, id_name=id_name, data_root=data_root,
                                      config_root=config_root or roots[0], postprocessor_name=pp,
                                      postprocessor=instance, batch_size=args.batch_size, shuffle=False,
                                      num_workers=args.num_workers)
            except AttributeError as err:
                raise EvalError(f"postprocessor {pp!r} needs settings ({err}); give it a "
                                f"postprocessors/{pp}.yml under --config-root") from None
            score_file = os.path.join(run_dir, "scores", f"{pp}.npz")
            meta = {"meta/checkpoint": np.array(ckpt), "meta/id_data": np.array(id_name)}
            if _fresh_scores(score_file, os.path.join(run_dir, ckpt), meta):
                with np.load(score_file) as saved:
                    if restore_scores(evaluator.scores, dict(saved)):
                        print(f"[{pp}] loaded pre-computed scores from {score_file}", flush=True)
            table = evaluator.eval_ood(fsood=args.fsood, progress=False)[COLUMNS]
            table = regroup(table, separate_groups(run_cfg.get("ood_dataset")))  # e.g. noise: not in farood
            pp_settings, searched = settings_of(evaluator.postprocessor)
            table = with_provenance(table, provenance("openood", pp_settings, searched, ckpt))
            results[pp].append(table)
            if args.save_score:
                os.makedirs(os.path.dirname(score_file), exist_ok=True)
                np.savez(score_file, **flatten_scores(evaluator.scores), **meta)
            print(f"[{pp}] {os.path.basename(run_dir)} ({ckpt}): near AUROC {table.loc['nearood', 'AUROC']:.2f}, "
                  f"far AUROC {table.loc['farood', 'AUROC']:.2f}, ID ACC {table['ACC'].iloc[0]:.2f} "
                  f"({time.time() - start:.1f} s)", flush=True)
    return {pp: tables for pp, tables in results.items()}


def summarize(results: Dict[str, List[pd.DataFrame]], root: str, save_csv: bool, fsood: bool) -> pd.DataFrame:
    """Write/print each postprocessor's mean ± std table; return the near/far AUROC summary."""
    from ...results import mean_std_table

    rows = {}
    for pp, tables in results.items():
        table = mean_std_table(tables)
        if save_csv:
            out_dir = os.path.join(root, "fsood" if fsood else "ood")
            os.makedirs(out_dir, exist_ok=True)
            table.to_csv(os.path.join(out_dir, f"{pp}.csv"))
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
            print(f"\n{pp} ({len(tables)} run{'s' if len(tables) > 1 else ''}):\n{table[COLUMNS]}", flush=True)
        rows[pp] = {"near AUROC": table.loc["nearood", "AUROC"], "far AUROC": table.loc["farood", "AUROC"],
                    "ID ACC": table["ACC"].iloc[0], "settings": table["postprocessor_settings"].iloc[0],
                    "searched": table["searched"].iloc[0]}
    summary = pd.DataFrame.from_dict(rows, orient="index")
    print(f"\nnear/far AUROC (mean ± std over runs):\n{summary.to_string()}", flush=True)
    if save_csv:
        print(f"CSV written to {os.path.join(root, 'fsood' if fsood else 'ood')}/<postprocessor>.csv", flush=True)
    return summary


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from . import openood_available

    if not openood_available():
        print("error: OpenOOD is not importable; install it (README, OpenOOD section)", file=sys.stderr)
        return 2
    try:
        results = evaluate_root(args)
    except EvalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summarize(results, args.root, args.save_csv, args.fsood)
    return 0
