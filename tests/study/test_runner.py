"""The study runner resumes (finished runs are skipped) and writes the tidy CSV schema."""
import pandas as pd

from openood_moon.study.report import differences, write_summary
from openood_moon.study.runner import run_study
from openood_moon.study.tidy import COLUMNS, read_tidy


def grid(data_root):
    return {"networks": ["small_cnn"], "methods": ["rigl"], "sparsities": [0.9],
            "lengths": {"e2": {"epochs": 2, "interval": 2, "warmup_epochs": 1, "vote_epochs": 1}},
            "variants": ["dense", "sparse", "sparse_moon"], "seeds": [0, 1],
            "postprocessors": ["msp", "moon", "known"],
            "overrides": {"dataset.subset": 150, "dataset.data_root": str(data_root)}}


def test_runner_resumes_and_writes_the_tidy_schema(tmp_path, mnist6_root):
    g, out = grid(mnist6_root), tmp_path / "study"
    ran = run_study(g, ["configs/pipelines/train/moon.yml"], out, log=lambda *_: None)
    assert len(ran) == 6
    table = read_tidy(out / "study.csv")
    assert list(table.columns) == COLUMNS
    assert table["run_id"].nunique() == 6 and set(table["seed"]) == {0, 1}
    assert {"nearood", "farood", "mnist6789", "noise"} <= set(table["ood_set"])
    assert table["AUROC"].between(0, 100).all() and table["config_hash"].str.len().eq(12).all()
    moon_rows = table[table["variant"] == "sparse_moon"]
    assert set(moon_rows["score"]) == {"msp", "moon", "known"}
    assert set(table[table["variant"] == "sparse"]["score"]) == {"msp", "moon"}   # known needs the head

    assert run_study(g, ["configs/pipelines/train/moon.yml"], out, log=lambda *_: None) == []
    kept = table[table["run_id"] != table["run_id"].iloc[0]]
    kept.to_csv(out / "study.csv", index=False)
    again = run_study(g, ["configs/pipelines/train/moon.yml"], out, log=lambda *_: None)
    assert [s.run_id for s in again] == [table["run_id"].iloc[0]]
    assert read_tidy(out / "study.csv")["run_id"].nunique() == 6

    diffs = differences(read_tidy(out / "study.csv"))
    assert set(diffs) >= {"sparse − dense", "MOON − sparse"}
    assert (diffs["MOON − sparse"]["score"] == "moon vs sparse msp").any()
    text = write_summary(read_tidy(out / "study.csv"), out / "summary.md")
    assert "95 % Student-t CI" in text and (out / "summary.md").exists()
    assert isinstance(pd.read_csv(out / "study.csv"), pd.DataFrame)
