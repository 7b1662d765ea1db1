"""OpenOOD engine: hosts MOON inside a real OpenOOD (pinned commit 3c35632).

Importing this package never imports OpenOOD; each name below loads its module on first use::

    from openood_moon.engines import openood as engine
    engine.register()                      # names: network/trainer 'moon', pipeline 'train_moon',
                                           # postprocessor 'moon' (idempotent)
    root = engine.register_embedded('data')  # benchmark 'mnist6' in the Evaluator API, offline
"""
import importlib

# The function shadows its submodule's name; importing it here (register.py imports no OpenOOD)
# keeps ``openood_moon.engines.openood.register`` the function however the submodule is reached.
from .register import is_registered, register

_EXPORTS = {
    "register_benchmark": "datasets",
    "unregister_benchmark": "datasets",
    "register_embedded": "datasets",
    "MoonPostprocessor": "postprocessor",
    "install_import_stubs": "compat",
    "install_cpu_shim": "compat",
    "prepare": "compat",
}

__all__ = sorted([*_EXPORTS, "register", "is_registered", "openood_available"])


def openood_available() -> bool:
    """True when ``import openood`` can succeed (after our import stubs); imports it to check."""
    try:
        from . import compat

        compat.install_import_stubs()
        importlib.import_module("openood.evaluation_api")
    except Exception:  # noqa: BLE001 - absent or broken install
        return False
    return True


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
