"""Data: the embedded offline benchmarks "mnist6" and "fmnist6", OpenOOD image-list loading and checks,
and 8x8 digits for tests.

Names are imported lazily, so ``python -m openood_moon.data.embedded`` does not import torch.
"""

_EXPORTS = {
    "build_embedded": "embedded", "verify_embedded": "embedded", "EMBEDDED_INFO": "embedded",
    "EMBEDDED": "embedded", "save_montage": "embedded",
    "ImglistDataset": "imglist", "benchmark_loaders": "imglist", "build_loaders": "imglist",
    "EpochSampler": "imglist", "epoch_seed": "imglist", "train_transform": "imglist",
    "eval_transform": "imglist", "read_imglist": "imglist",
    "digits_benchmark": "digits", "digits_loaders": "digits",
    "build_fashion": "fashion", "verify_fashion": "fashion", "FMNIST6_INFO": "fashion",
    "EmbeddedBenchmark": "builder", "embedded_benchmark": "builder", "EMBEDDED_BENCHMARKS": "builder",
    "check_benchmark": "check", "check_list": "check", "imglist_lines": "imglist",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
