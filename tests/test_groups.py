"""ood_dataset.separate_groups: far sets reported as a group of their own (e.g. fmnist6's noise), out of
the farood mean, in ood.csv and the study's tidy rows."""
import pandas as pd
import pytest
import yaml

from openood_moon.cli import main as cli_main
from openood_moon.config import ConfigError
from openood_moon.evaluation.groups import regroup, separate_groups
from openood_moon.study.grid import RunSpec
from openood_moon.study.tidy import tidy_rows
from tiny_benchmark import NAME, RUN_DIR, TINY_JOB, make_benchmark

OOD = {"nearood": {"datasets": ["a"]}, "farood": {"datasets": ["b", "c", "d"]}}


def test_regroup_by_hand():
    table = pd.DataFrame({"AUROC": [80.0, 80.0, 60.0, 70.0, 20.0, 50.0], "ACC": [90.0] * 6},
                         index=["a", "nearood", "b", "c", "d", "farood"])
    out = regroup(table, {"noise": ["d"]})
    assert list(out.index) == ["a", "nearood", "b", "c", "d", "farood", "noiseood"]
    assert out.loc["farood", "AUROC"] == 65.0            # (60 + 70) / 2, without d
    assert out.loc["noiseood", "AUROC"] == 20.0 and out.loc["noiseood", "ACC"] == 90.0
    assert out.loc["nearood", "AUROC"] == 80.0 and out.loc["d", "AUROC"] == 20.0
    two = regroup(table, {"noise": ["c", "d"]})
    assert two.loc["farood", "AUROC"] == 60.0 and two.loc["noiseood", "AUROC"] == 45.0
    assert regroup(table, {}).equals(table)


@pytest.mark.parametrize("groups, message", [
    ({"noise": ["x"]}, "'x' is not a far-OOD set; valid choices .*: b, c, d"),
    ({"noise": ["a"]}, "'a' is not a far-OOD set"),
    ({"far": ["b"]}, "group name 'far' must be a string other than near and far"),
    ({"noise": []}, "must be a non-empty list"),
    ({"n1": ["b"], "n2": ["b"]}, "'b' is in groups 'n1' and 'n2'"),
    ({"noise": ["b", "c", "d"]}, "takes every far-OOD set out of farood"),
    (["b"], "must map group names to lists"),
])
def test_bad_groups_are_named(groups, message):
    with pytest.raises(ConfigError, match=message):
        separate_groups({**OOD, "separate_groups": groups})
    assert separate_groups(OOD) == {} and separate_groups(None) == {}


@pytest.mark.slow
def test_a_run_reports_the_group_apart_and_the_study_rows_name_it(tmp_path, monkeypatch):
    make_benchmark(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ood = yaml.safe_load((tmp_path / f"{NAME}_ood.yml").read_text())
    ood["ood_dataset"]["separate_groups"] = {"noise": ["far2"]}
    (tmp_path / f"{NAME}_ood.yml").write_text(yaml.safe_dump(ood))
    argv = ["--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB, "--evaluation.postprocessors", "[msp]"]
    assert cli_main(argv) == 0
    run = tmp_path / RUN_DIR / "s0"
    msp = pd.read_csv(run / "ood.csv", index_col=[0, 1]).loc["msp"]
    assert list(msp.index) == ["near1", "nearood", "far1", "far2", "farood", "noiseood"]
    assert msp.loc["farood", "AUROC"] == pytest.approx(msp.loc["far1", "AUROC"])
    assert msp.loc["noiseood", "AUROC"] == pytest.approx(msp.loc["far2", "AUROC"])
    cfg = yaml.safe_load((run / "config.yml").read_text())
    spec = RunSpec("small_cnn", "rigl", 0.9, "e2", "sparse_moon", 0, dataset=NAME)
    groups = {r["ood_set"]: r["group"] for r in tidy_rows(spec, cfg, run, 1.0)}
    assert groups == {"near1": "near", "nearood": "near", "far1": "far", "farood": "far", "far2": "noise",
                      "noiseood": "noise"}
