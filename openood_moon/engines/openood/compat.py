"""Make a pinned OpenOOD (commit 3c35632) importable and runnable on a plain machine.

Two independent helpers, neither touches OpenOOD's files:

* ``install_import_stubs()`` — OpenOOD imports, at package import time, a few modules that only
  some of its methods use: ``imgaug.augmenters`` (DRAEM; imgaug 0.4 breaks under numpy 2),
  ``timm`` and ``foolbox`` (adversarial attacks, imported by ``openood.evaluation_api``). A name is
  stubbed **only when importing it fails** (absent or broken); an installed, working module is
  never replaced. Using anything from a stub raises ``RuntimeError``.
* ``install_cpu_shim()`` — opt-in: when CUDA is absent, ``torch.Tensor.cuda`` and
  ``torch.nn.Module.cuda`` return ``self`` so OpenOOD's many hard-coded ``.cuda()`` calls become
  no-ops. It does nothing when a GPU exists. It does NOT cover (these still fail on CPU):
  ``torch.cuda.FloatTensor``/``LongTensor`` (gmm, mds_ensemble), ``device='cuda'``,
  ``.to('cuda')`` and ``torch.device('cuda')`` (temp_scaling, openmax, vos, npos, palm, clip),
  ``torch.load`` without ``map_location`` of a GPU-saved checkpoint (e.g. ``get_network``'s
  ``pretrained`` path), NCCL in ``openood.utils.launch`` when ``num_gpus > 1``, and any
  ``torch.cuda.*`` call other than ``is_available``. Our own code never relies on it; it uses
  ``.to(device)``.
"""
import importlib
import sys
import types
from typing import Iterable, List

import torch

DEFAULT_STUBS = ("imgaug.augmenters", "timm", "foolbox", "foolbox.attacks", "foolbox.criteria")
_STUB_FLAG = "_openood_moon_stub"
_ORIGINAL_CUDA = {}


class _Missing:
    """Placeholder for any attribute of a stubbed module; using it raises."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("this optional OpenOOD dependency is stubbed by openood_moon.compat; "
                           "install the real package to use it")


def _stub_getattr(name: str):
    # Dunders must raise, or inspect.getmodule (torchvision's register_fake) crashes on the stub.
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    return _Missing


def is_stub(name: str) -> bool:
    """True when ``sys.modules[name]`` is one of our stubs."""
    return getattr(sys.modules.get(name), _STUB_FLAG, False)


def _make_stub(name: str) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        qual = ".".join(parts[:i])
        if qual not in sys.modules:
            mod = types.ModuleType(qual, "stub installed by openood_moon.engines.openood.compat")
            mod.__path__ = []
            setattr(mod, _STUB_FLAG, True)
            mod.__getattr__ = _stub_getattr
            sys.modules[qual] = mod
        if i > 1:
            setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[qual])


def _forget(top: str) -> None:
    """Drop a half-imported real package (e.g. imgaug after its numpy-2 failure)."""
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        if not is_stub(key):
            del sys.modules[key]


def install_import_stubs(names: Iterable[str] = DEFAULT_STUBS) -> List[str]:
    """Stub each module in ``names`` that cannot be imported; return the names stubbed."""
    stubbed = []
    for name in names:
        if is_stub(name):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # absent, or broken at import (imgaug + numpy 2)
            _forget(name.split(".")[0])
            _make_stub(name)
            stubbed.append(name)
    return stubbed


def install_cpu_shim() -> bool:
    """Make ``.cuda()`` an identity on tensors and modules when CUDA is absent; True if installed."""
    if torch.cuda.is_available():
        return False
    if not _ORIGINAL_CUDA:
        _ORIGINAL_CUDA["tensor"] = torch.Tensor.cuda
        _ORIGINAL_CUDA["module"] = torch.nn.Module.cuda
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    return True


def uninstall_cpu_shim() -> None:
    """Restore the original ``.cuda`` methods (no-op when the shim is not installed)."""
    if _ORIGINAL_CUDA:
        torch.Tensor.cuda = _ORIGINAL_CUDA.pop("tensor")
        torch.nn.Module.cuda = _ORIGINAL_CUDA.pop("module")


def cpu_shim_active() -> bool:
    return bool(_ORIGINAL_CUDA)


def prepare(cpu_shim: bool = False) -> List[str]:
    """Install the import stubs (always) and the CPU shim (only if asked); return stubbed names."""
    stubbed = install_import_stubs()
    if cpu_shim:
        install_cpu_shim()
    return stubbed
