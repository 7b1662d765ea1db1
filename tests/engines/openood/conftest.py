"""Fixtures for tests against a real OpenOOD (venv outside the repo; skipped when it is absent)."""
import importlib.util
import os

import pytest
import torch

from openood_moon.engines.openood import compat


@pytest.fixture(scope="session")
def openood_api():
    """The real ``openood.evaluation_api``; skips when OpenOOD is not installed or not importable."""
    if importlib.util.find_spec("openood") is None:  # never stub anything in an OpenOOD-less python
        pytest.skip("OpenOOD is not installed")
    compat.install_import_stubs()
    return pytest.importorskip("openood.evaluation_api")


@pytest.fixture(scope="session")
def registered(openood_api):
    from openood_moon.engines.openood import register

    register()
    return openood_api


@pytest.fixture(scope="module")
def device(openood_api):
    """CUDA when present; otherwise CPU with the .cuda() shim installed for this module only."""
    if torch.cuda.is_available():
        yield torch.device("cuda")
        return
    compat.install_cpu_shim()
    yield torch.device("cpu")
    compat.uninstall_cpu_shim()


@pytest.fixture(scope="session")
def mnist6_data(openood_api, tmp_path_factory):
    """The embedded benchmark built in a temporary data_root and registered as 'mnist6'."""
    from openood_moon.engines.openood.datasets import register_embedded

    return register_embedded(tmp_path_factory.mktemp("openood") / "data")


@pytest.fixture(scope="session")
def config_root(tmp_path_factory):
    """A config_root holding the postprocessor ymls the tests use (ours: moon; tiny msp)."""
    from openood_moon.config import CONFIGS_ROOT

    root = tmp_path_factory.mktemp("configs")
    (root / "postprocessors").mkdir()
    (root / "postprocessors" / "msp.yml").write_text("postprocessor:\n  name: msp\n  APS_mode: False\n")
    with open(os.path.join(CONFIGS_ROOT, "postprocessors", "moon.yml")) as f:
        (root / "postprocessors" / "moon.yml").write_text(f.read())
    return root


@pytest.fixture
def no_downloads(monkeypatch, openood_api):
    """Every download path OpenOOD's Evaluator has (gdown, urllib) raises."""
    import urllib.request

    import gdown

    import openood.evaluation_api.datasets as eds

    def refuse(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(gdown, "download", refuse)
    monkeypatch.setattr(eds.gdown, "download", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
