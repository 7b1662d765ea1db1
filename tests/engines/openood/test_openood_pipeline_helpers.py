"""Pure helpers of the train_moon pipeline and of scripts/eval_ood.py (no OpenOOD needed)."""
import numpy as np
import pandas as pd
import torch

from openood_moon.engines.openood.evaluate import flatten_scores, restore_scores
from openood_moon.engines.openood.postprocessor import postprocessor_config
from openood_moon.results import aggregate_seeds, eval_root


def test_eval_root_is_the_parent_of_a_seed_folder(tmp_path):
    assert eval_root(str(tmp_path / "exp" / "s3")) == str(tmp_path / "exp")
    assert eval_root(str(tmp_path / "exp" / "run")) == str(tmp_path / "exp" / "run")


def test_aggregate_seeds_writes_eval_ood_strings(tmp_path):
    index = ["near1", "nearood", "far1", "farood"]
    for seed, value in ((0, 10.0), (1, 20.0)):
        (tmp_path / f"s{seed}" / "ood").mkdir(parents=True)
        pd.DataFrame(value, index=index, columns=["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]).to_csv(
            tmp_path / f"s{seed}" / "ood" / "msp.csv")
    table = aggregate_seeds(str(tmp_path), "msp")
    assert list(table.index) == index and table.loc["farood", "AUROC"] == "15.00 \u00b1 5.00"
    assert aggregate_seeds(str(tmp_path), "knn") is None


def test_postprocessor_config_maps_our_argument_names():
    knn = postprocessor_config("knn", "mnist6", {"k": 5})
    assert knn == {"postprocessor": {"name": "knn", "APS_mode": False, "postprocessor_args": {"K": 5}},
                   "dataset": {"name": "mnist6"}}
    assert postprocessor_config("vim", "x", None, feature_size=128)["postprocessor"]["postprocessor_args"] == \
        {"dim": 64}
    assert postprocessor_config("vim", "x", {"d": 16}, 128)["postprocessor"]["postprocessor_args"] == {"dim": 16}
    assert postprocessor_config("react", "x")["postprocessor"]["postprocessor_args"] == {"percentile": 90}


def test_scores_round_trip_through_npz(tmp_path):
    triple = [np.array([1, 0]), np.array([0.9, 0.2], dtype=np.float32), np.array([1, 1])]
    scores = {"id": {"train": None, "test": triple}, "ood": {"near": {"a": triple}, "far": {"b": None}},
              "id_preds": torch.tensor([1, 0]), "id_labels": None}
    np.savez(tmp_path / "s.npz", **flatten_scores(scores))
    empty = {"id": {"train": None, "test": None}, "ood": {"near": {"a": None}, "far": {"b": None}},
             "id_preds": None, "id_labels": None}
    with np.load(tmp_path / "s.npz") as saved:
        assert restore_scores(empty, dict(saved)) == 3
    assert np.array_equal(empty["ood"]["near"]["a"][1], triple[1]) and empty["ood"]["far"]["b"] is None
    assert torch.equal(empty["id_preds"], torch.tensor([1, 0]))
