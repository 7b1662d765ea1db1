"""evaluate_ood: OpenOOD's table layout, one forward pass per loader, ID metrics, plots."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from openood_moon.evaluation.outputs import NetOutputs
from openood_moon.engines.standalone.evaluate import (
    DEFAULT_POSTPROCESSORS,
    evaluate_ood,
    format_table,
    id_metrics,
)
from openood_moon.evaluation.metrics import ood_metrics
from openood_moon.evaluation.plots import plot_roc_curves, plot_score_histograms

from .tiny_net import D, F, K
from .tiny_net import TinyNet as _TinyNet


def TinyNet(unknown=False):
    return _TinyNet(unknown, scale=1.0, unknown_weight=-2.0, unknown_bias=4.0)


class DictDataset(Dataset):
    """OpenOOD-style items {'data', 'label'}."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"data": self.x[i], "label": int(self.y[i])}


def _id(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(K).repeat(n)
    return 4 * nn.functional.one_hot(y, D).float() + 0.5 * torch.randn(len(y), D, generator=g), y


def _ood(n, seed, centre):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(centre).float() + 0.5 * torch.randn(n, D, generator=g), -torch.ones(n).long()


def make_loaders(batch_size=16):
    tuples = lambda xy: DataLoader(TensorDataset(*xy), batch_size=batch_size)  # noqa: E731
    dicts = lambda xy: DataLoader(DictDataset(*xy), batch_size=batch_size)  # noqa: E731
    return {
        "id": {"train": tuples(_id(30, 0)), "val": dicts(_id(10, 1)), "test": dicts(_id(20, 2))},
        "ood": {
            "val": tuples(_ood(10, 3, [0, 0, 0, 0])),
            "near": {
                "between": tuples(_ood(40, 4, [2, 2, 0, 0])),
                "corner": dicts(_ood(30, 5, [2, 0, 2, 0])),
            },
            "far": {
                "origin": tuples(_ood(40, 6, [0, 0, 0, 0])),
                "flipped": tuples(_ood(20, 7, [-3, 0, 0, 3])),
            },
        },
    }


def run(net, names, loaders=None, **kwargs):
    loaders = make_loaders() if loaders is None else loaders
    return evaluate_ood(net, loaders, postprocessors=names, progress=False, **kwargs)


def _n_batches(loaders, keys):
    return sum(len(loader) for loader in keys(loaders))


def test_table_layout_and_values():
    net, loaders = TinyNet(), make_loaders()
    table, scores = run(net, ("msp", "knn", "react"), loaders, pp_args={"knn": {"k": 10}})
    assert list(table.columns) == ["FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    assert table.index.names == ["postprocessor", "dataset"]
    expected_rows = ["between", "corner", "nearood", "origin", "flipped", "farood"]
    assert list(table.loc["msp"].index) == expected_rows
    assert list(table.index.get_level_values(0).unique()) == ["msp", "knn", "react"]
    for name in ("msp", "knn", "react"):
        part = table.loc[name]
        for mean_row, rows in (("nearood", ["between", "corner"]), ("farood", ["origin", "flipped"])):
            pd.testing.assert_series_equal(part.loc[mean_row], part.loc[rows].mean(), check_names=False)
        # percent, recomputed from the returned confidences
        expected = ood_metrics(scores[name]["id"], scores[name]["far"]["origin"])
        for column, value in expected.items():
            assert part.loc["origin", column] == pytest.approx(100 * value)
        assert len(scores[name]["id"]) == 60 and len(scores[name]["near"]["corner"]) == 30
    assert (table["ACC"] == table.attrs["id"]["ACC"]).all()
    assert 0 < table.attrs["id"]["ACC"] <= 100 and set(table.attrs["id"]) == {"ACC", "ECE"}
    assert table.loc[("msp", "farood"), "AUROC"] > 90
    assert table.attrs["fpr_positive"] == "ood"
    text = format_table(table)
    assert "nearood" in text and "ID: ACC" in text and "OOD as the positive" in text


def test_each_loader_is_forwarded_once():
    net, loaders = TinyNet(), make_loaders()
    run(net, DEFAULT_POSTPROCESSORS, loaders, pp_args={"knn": {"k": 10}})
    expected = _n_batches(loaders, lambda l: [l["id"]["train"], l["id"]["val"], l["id"]["test"]])
    expected += _n_batches(loaders, lambda l: [*l["ood"]["near"].values(), *l["ood"]["far"].values()])
    assert net.calls == expected  # ood.val is not used; no postprocessor reruns the network


def test_logit_only_postprocessors_need_no_training_data():
    net, loaders = TinyNet(), make_loaders()
    del loaders["id"]["train"], loaders["id"]["val"]
    table, _ = run(net, ("msp", "ebo", "mls"), loaders)
    assert len(table) == 3 * 6
    with pytest.raises(ValueError, match=r"\['train'\], which is missing"):
        run(net, ("knn",), loaders)


def test_moon_net_and_unknown_aware_postprocessors():
    names = ("msp", "moon", "known", "ua_msp", "ua_energy")
    table, scores = run(TinyNet(unknown=True), names)
    assert list(table.index.get_level_values(0).unique()) == list(names)
    assert set(table.attrs["id"]) == {"ACC", "ECE", "ACC_K1", "ECE_K1"}
    assert np.all(scores["moon"]["id"] <= scores["msp"]["id"])
    assert table.attrs["skipped"] == {}


def test_plain_net_skips_unknown_aware_postprocessors_with_a_reason():
    with pytest.warns(UserWarning, match="skipping postprocessor 'known'"):
        table, scores = run(TinyNet(), ("msp", "known"))
    assert "known" in table.attrs["skipped"] and "known" not in scores
    assert list(table.index.get_level_values(0).unique()) == ["msp"]
    assert "skipped known" in format_table(table)


def test_invalid_requests_fail_before_any_forward_pass():
    net = TinyNet()
    with pytest.raises(ValueError, match="valid choices"):
        run(net, ("msp", "nope"))
    with pytest.raises(ValueError, match="not evaluated"):
        run(net, ("msp",), pp_args={"knn": {"k": 3}})
    with pytest.raises(ValueError, match="unknown settings"):
        run(net, ("knn",), pp_args={"knn": {"q": 3}})
    assert net.calls == 0


def test_fpr_convention_switch_and_training_mode_restored():
    net = TinyNet().train()
    ood_pos, _ = run(net, "msp")
    id_pos, _ = run(net, "msp", fpr_positive="id")
    assert net.training
    assert id_pos.attrs["fpr_positive"] == "id"
    pd.testing.assert_series_equal(ood_pos["AUROC"], id_pos["AUROC"])


def test_id_metrics_plain_and_moon_views():
    labels = torch.tensor([0, 1, 1, 0])
    # plain: softmax over K = 2; predictions 0, 1, 0, 0 -> 3 of 4 correct
    logits = torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]])
    plain = id_metrics(NetOutputs(logits, torch.zeros(4, 1), labels))
    assert plain["ACC"] == pytest.approx(75.0)
    # confidences 3/4, 3/4, 3/4, 1/2: bin (0.7, 0.8] acc 2/3 -> 3/4 * (3/4 - 2/3);
    # bin (0.4, 0.5] acc 1 -> 1/4 * 1/2
    assert plain["ECE"] == pytest.approx(100 * (0.75 * (0.75 - 2 / 3) + 0.25 * 0.5))
    # MOON: unknown logits log 0.5 (samples 1-3) and log 6 (sample 4: "unknown" in the K+1 view)
    logits_k1 = torch.cat([logits, torch.tensor([[math.log(0.5)]] * 3 + [[math.log(6)]])], dim=1)
    moon = id_metrics(NetOutputs(logits, torch.zeros(4, 1), labels, logits_k1))
    assert moon["ACC"] == pytest.approx(75.0) and moon["ACC_K1"] == pytest.approx(50.0)
    # K view: conf 3/4.5 x3 (bin (0.6, 0.7], acc 2/3 -> 0) and 1/8 (bin (0.1, 0.2], acc 1)
    assert moon["ECE"] == pytest.approx(100 * 0.25 * (1 - 1 / 8))
    # K+1 view: conf 3/4.5 x3 (acc 2/3 -> 0) and 6/8 for the unknown prediction (bin (0.7, 0.8], acc 0)
    assert moon["ECE_K1"] == pytest.approx(100 * 0.25 * 0.75)


def test_plots_are_written(tmp_path):
    _, scores = run(TinyNet(), ("msp", "knn"), pp_args={"knn": {"k": 5}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib backend or layout warnings
        hists = plot_score_histograms(scores, tmp_path / "hist")
        rocs = plot_roc_curves(scores, tmp_path / "roc")
    assert [p.name for p in hists] == ["hist_msp.png", "hist_knn.png"]
    assert [p.name for p in rocs] == ["roc_msp.png", "roc_knn.png"]
    for path in hists + rocs:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
