"""Config paths: found from the working directory first, else in the configs shipped with the package."""
import filecmp
import os
import subprocess
import sys

import pytest

from openood_moon.config import CONFIGS_ROOT, ConfigError, _configs_root, find_config, read_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOON = os.path.join("configs", "pipelines", "train", "moon.yml")


def test_a_file_in_the_working_directory_wins(tmp_path, monkeypatch):
    local = tmp_path / MOON
    local.parent.mkdir(parents=True)
    local.write_text("mark: local\n")
    monkeypatch.chdir(tmp_path)
    assert find_config(MOON) == MOON
    assert read_yaml(MOON) == {"mark": "local"}


def test_a_path_missing_here_is_read_from_the_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # no configs/ here
    packaged = os.path.join(CONFIGS_ROOT, "pipelines", "train", "moon.yml")
    assert find_config(MOON) == packaged
    assert find_config(os.path.join("pipelines", "train", "moon.yml")) == packaged   # without configs/
    assert filecmp.cmp(packaged, os.path.join(REPO, MOON), shallow=False)


def test_every_repository_config_is_in_the_packaged_configs():
    for folder, _, files in os.walk(os.path.join(REPO, "configs")):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), os.path.join(REPO, "configs"))
            assert filecmp.cmp(os.path.join(CONFIGS_ROOT, rel), os.path.join(folder, name), shallow=False), rel


def test_a_missing_file_names_the_path_and_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_yaml("configs/nope.yml")
    message = str(err.value)
    assert message.startswith("config file not found: 'configs/nope.yml'")
    assert str(tmp_path / "configs" / "nope.yml") in message
    assert os.path.join(CONFIGS_ROOT, "nope.yml") in message
    absolute = str(tmp_path / "nope.yml")            # an absolute path is never looked up elsewhere
    with pytest.raises(ConfigError, match="config file not found") as err:
        find_config(absolute)
    assert CONFIGS_ROOT not in str(err.value)


def test_configs_root_falls_back_to_the_checkout_without_a_package_copy(tmp_path):
    package = tmp_path / "openood_moon"
    package.mkdir()
    assert _configs_root(str(package)) == str(tmp_path / "configs")   # e.g. a checkout without symlinks
    (package / "configs").mkdir()
    assert _configs_root(str(package)) == str(package / "configs")


def test_python_m_runs_the_cli_with_packaged_configs_from_any_directory(tmp_path):
    """Exit 2 naming the bad value (not 'config file not found') shows the packaged file was read."""
    out = subprocess.run([sys.executable, "-m", "openood_moon", "--config", MOON, "--engine", "standalone",
                          "--sparse.method", "snip"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "snip" in out.stderr and "rigl" in out.stderr and "not found" not in out.stderr
