"""OpenOOD-style config stacking: merge order, overrides, references and clear errors."""
import pytest

from openood_moon.config import ConfigError, load_config


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_stacking_overrides_and_references(tmp_path):
    a = write(tmp_path, "a.yml", "dataset: {name: mnist6, num_classes: 6}\noptimizer: {lr: 0.1, num_epochs: 20}\n"
                                 "network: {num_classes: '@{dataset.num_classes}'}\ntags: [a, b]\n"
                                 "exp_name: \"'@{dataset.name}'_e'@{optimizer.num_epochs}'\"\n")
    b = write(tmp_path, "b.yml", "optimizer: {lr: 0.05}\ntags: [c]\n")
    cfg = load_config([a, b], ["--optimizer.num_epochs", "3", "--dataset.name=foo"])
    assert cfg["optimizer"] == {"lr": 0.05, "num_epochs": 3}
    assert cfg["tags"] == ["c"]                                  # lists are replaced whole
    assert cfg["network"]["num_classes"] == 6                    # type kept
    assert cfg["exp_name"] == "foo_e3"
    cfg = load_config([a, b], ["--tags", "[x, y]:eval", "--dataset.name", "12:str"])   # OpenOOD's forms
    assert cfg["tags"] == ["x", "y"] and cfg["dataset"]["name"] == "12"


def test_errors_name_the_problem(tmp_path):
    a = write(tmp_path, "a.yml", "optimizer: {lr: 0.1, nesterov: true}\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([str(tmp_path / "missing.yml")])
    with pytest.raises(ConfigError, match="only .yml"):
        load_config([write(tmp_path, "c.yaml", "a: 1\n")])
    with pytest.raises(ConfigError, match=r"did you mean 'lr'.*valid keys there: lr, nesterov"):
        load_config([a], ["--optimizer.lrr", "0.1"])
    with pytest.raises(ConfigError, match="expects true/false"):
        load_config([a], ["--optimizer.nesterov", "maybe"])
    with pytest.raises(ConfigError, match="expects a float"):
        load_config([a], ["--optimizer.lr", "fast"])
    with pytest.raises(ConfigError, match="shadows a dict method"):
        load_config([write(tmp_path, "d.yml", "sparse: {update: 1}\n")])
