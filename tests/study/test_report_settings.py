"""The study report never pools settings: cells of another preset, engine or dataset are reported
apart, and settings are compared only by explicit paired differences (hand-computed expectations)."""
import pandas as pd

from openood_moon.study.report import (differences, per_set_table, score_table, setting_differences, settings,
                                       write_summary)
from openood_moon.study.tidy import COLUMNS


def rows(preset, engine, variant, score, near, far, acc):
    """One run per seed: near and far AUROC per seed as given; ID accuracy ``acc`` per seed."""
    out = []
    for seed, (n, f, a) in enumerate(zip(near, far, acc)):
        rid = f"mnist6_small_cnn_e2_rigl_sp0.9_{variant}_{preset}_{engine}_s{seed}"
        for ood_set, group, auroc in (("nearood", "near", n), ("farood", "far", f)):
            out.append({"run_id": rid, "cell": "mnist6_small_cnn_e2_rigl_sp0.9", "dataset": "mnist6",
                        "network": "small_cnn", "method": "rigl", "sparsity": 0.9, "length": "e2",
                        "variant": variant, "seed": seed, "preset": preset, "engine": engine,
                        "score": score, "group": group, "ood_set": ood_set, "AUROC": auroc, "FPR95": 50.0,
                        "AUPR_IN": 50.0, "AUPR_OUT": 50.0, "ACC": a, "ECE": 1.0, "density": 0.1,
                        "config_hash": "0" * 12, "torch_version": "x", "openood_moon_version": "x",
                        "wall_s": 1.0})
    return out


def table():
    r = []
    # default: MOON's `moon` − sparse MSP = +2 on every seed (near), +1 (far)
    r += rows("default", "standalone", "sparse", "msp", [80, 81, 83], [90, 91, 95], [98, 97, 99])
    r += rows("default", "standalone", "sparse_moon", "moon", [82, 83, 85], [91, 92, 96], [98, 97, 99])
    r += rows("default", "standalone", "sparse", "knn", [60, 61, 62], [70, 71, 72], [98, 97, 99])
    # official: −10 on every seed (near), −5 (far); sparse MSP 10 below default's on every seed
    r += rows("official", "standalone", "sparse", "msp", [70, 71, 73], [80, 81, 85], [96, 95, 97])
    r += rows("official", "standalone", "sparse_moon", "moon", [60, 61, 63], [75, 76, 80], [96, 95, 97])
    return pd.DataFrame(r, columns=COLUMNS)


def moon_row(frame):
    d = differences(frame)["MOON − sparse"]
    return d[d["score"] == "moon vs sparse msp"].iloc[0]


def test_each_preset_is_its_own_setting_with_its_own_differences():
    parts = dict(settings(table()))
    assert set(parts) == {"mnist6 · standalone · default", "mnist6 · standalone · official"}
    default, official = moon_row(parts["mnist6 · standalone · default"]), moon_row(
        parts["mnist6 · standalone · official"])
    assert default["near"] == "+2.00 [+2.00, +2.00]" and default["far"] == "+1.00 [+1.00, +1.00]"
    assert official["near"] == "-10.00 [-10.00, -10.00]" and official["far"] == "-5.00 [-5.00, -5.00]"


def test_summary_reports_settings_apart_and_compares_them_paired(tmp_path):
    text = write_summary(table(), tmp_path / "summary.md")
    assert text.count("### MOON − sparse") == 2
    assert "+2.00 [+2.00, +2.00]" in text and "-10.00 [-10.00, -10.00]" in text
    # pooled, the two presets would give −4 with a wide interval: that row must not appear
    assert "-4.00" not in text
    across = setting_differences(table())
    sparse = across[(across["variant"] == "sparse") & (across["score"] == "msp")].iloc[0]
    assert sparse["comparison"] == "preset: official − default"
    assert sparse["near"] == "-10.00 [-10.00, -10.00]" and sparse["ACC"] == "-2.00 [-2.00, -2.00]"
    moon = across[(across["variant"] == "sparse_moon") & (across["score"] == "moon")].iloc[0]
    assert moon["near"] == "-22.00 [-22.00, -22.00]" and moon["far"] == "-16.00 [-16.00, -16.00]"


def test_score_table_keeps_presets_apart():
    t = score_table(table(), ["msp"])
    assert list(t["preset"]) == ["default", "official"] and list(t["seeds"]) == [3, 3]
    # near MSP: mean (80+81+83)/3 = 81.33, sd 1.53; official 10 lower, same sd
    assert list(t["near AUROC"]) == ["81.33 ± 1.53", "71.33 ± 1.53"]


def test_per_set_table_lists_every_score_and_set_of_one_setting():
    rows = dict(settings(table()))["mnist6 · standalone · default"]
    t = per_set_table(rows).set_index(["variant", "score"])
    assert list(t.index) == [("sparse", "msp"), ("sparse_moon", "moon"), ("sparse", "knn")]
    assert t.loc[("sparse", "knn"), "nearood"] == "61.00 ± 1.00"
    # far of sparse MSP: 90, 91, 95 -> mean 92.00, sd sqrt(7) = 2.65
    assert t.loc[("sparse", "msp"), "farood"] == "92.00 ± 2.65"
    assert t.loc[("sparse_moon", "moon"), "nearood"] == "83.33 ± 1.53"
    assert list(per_set_table(rows, ["msp"])["score"]) == ["msp"]
