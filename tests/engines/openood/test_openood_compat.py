"""compat: import stubs only for broken/missing modules, and the opt-in CPU shim (no OpenOOD needed)."""
import subprocess
import sys

import pytest
import torch

from openood_moon.engines.openood import compat


def test_stub_only_when_missing(monkeypatch):
    missing = "openood_moon_test_absent_pkg.sub"
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    assert compat.install_import_stubs([missing, "json"]) == [missing]
    assert compat.is_stub(missing) and not compat.is_stub("json")
    from openood_moon_test_absent_pkg.sub import Anything  # noqa: E402 - resolved from the stub

    with pytest.raises(RuntimeError, match="stubbed"):
        Anything()
    with pytest.raises(AttributeError):
        sys.modules[missing].__file__  # dunders must raise (inspect.getmodule relies on it)
    assert sys.modules["openood_moon_test_absent_pkg"].sub is sys.modules[missing]
    assert compat.install_import_stubs([missing]) == []  # idempotent


def test_broken_module_is_replaced(monkeypatch, tmp_path):
    (tmp_path / "openood_moon_test_broken").mkdir()
    (tmp_path / "openood_moon_test_broken" / "__init__.py").write_text("raise AttributeError('np.sctypes')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    assert compat.install_import_stubs(["openood_moon_test_broken.augmenters"]) == \
        ["openood_moon_test_broken.augmenters"]
    assert compat.is_stub("openood_moon_test_broken")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the shim acts only without CUDA")
def test_cpu_shim_is_opt_in_and_reversible():
    t = torch.ones(2)
    original = torch.Tensor.cuda
    assert not compat.cpu_shim_active()
    assert compat.install_cpu_shim() and compat.install_cpu_shim()
    try:
        assert t.cuda() is t
        m = torch.nn.Linear(2, 2)
        assert m.cuda() is m
    finally:
        compat.uninstall_cpu_shim()
    assert torch.Tensor.cuda is original and not compat.cpu_shim_active()


def test_importing_the_engine_does_not_import_openood():
    code = ("import sys, openood_moon.engines.openood as e, openood_moon.engines.openood.postprocessor, "
            "openood_moon.engines.openood.datasets, openood_moon.engines.openood.compat; "
            "assert callable(e.register) and callable(e.register_benchmark); "
            "assert not [m for m in sys.modules if m == 'openood' or m.startswith('openood.')]")
    subprocess.run([sys.executable, "-c", code], check=True)
