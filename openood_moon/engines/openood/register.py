"""Make MOON's names known to a real OpenOOD: one idempotent ``register()``.

OpenOOD's pipeline-side factories build their name->class tables inside the function body, and
about 30 modules hold their own ``from x import get_*`` copy (openood-internals §4-5). So we wrap
each factory and rebind, **by identity**, every attribute of every loaded ``openood.*`` module
that is the original function. Names added:

* network ``moon``  — ``MoonNet`` over ``network.backbone`` (any name ``get_network`` knows);
  our own backbones unknown to OpenOOD (``small_cnn``) also resolve, and ours replace OpenOOD's
  class of the same name when the config sets an option it ignores (``width``, ``in_channels``);
* trainer ``moon``  — ``openood_moon.engines.openood.trainer.OpenOODMoonTrainer`` (lazy import);
* pipeline ``train_moon`` — ``openood_moon.engines.openood.pipeline.TrainMoonPipeline`` (lazy);
* postprocessor ``moon`` — in the evaluation-API ``postprocessors`` dict and the pipeline-side
  ``get_postprocessor``;
* preprocessor ``shift`` (train split) — :class:`openood_moon.data.transforms.ShiftPreprocessor`,
  the digit-friendly +-2 px shift the standalone engine uses for the same config; other splits get
  OpenOOD's ``TestStandardPreProcessor`` (its fallback for names without a test preprocessor). A
  config without a ``preprocessor`` section gets ``base``; an unknown name raises ``ConfigError``
  with the valid choices (OpenOOD raises a bare ``KeyError``).

Every other name goes to OpenOOD's original factory unchanged. A second call changes nothing.
Spawned workers (``openood.utils.launch`` with several GPUs) are fresh processes: call
``register()`` in each worker's main function too.
"""
import sys
from typing import Callable, Dict

import torch

NETWORK, TRAINER, PIPELINE, POSTPROCESSOR = "moon", "moon", "train_moon", "moon"
PREPROCESSOR = "shift"
_ORIGINAL = "_openood_moon_original"  # attribute of a wrapper: the function it wraps
_UNKNOWN_NETWORK = "Unexpected Network Architecture!"
_OWN_OPTIONS = {"in_channels": 3, "width": 64}  # our backbones' options OpenOOD's classes lack


def _rebind(original: Callable, wrapper: Callable) -> int:
    """Replace every reference to ``original`` in loaded ``openood`` modules; return the count."""
    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "openood" or name.startswith("openood.")):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, wrapper)
                count += 1
    return count


def _install(module, attr: str, make_wrapper: Callable[[Callable], Callable]) -> int:
    current = getattr(module, attr)
    if hasattr(current, _ORIGINAL):  # already wrapped: rebinding stragglers is all that is left
        return _rebind(getattr(current, _ORIGINAL), current)
    wrapper = make_wrapper(current)
    setattr(wrapper, _ORIGINAL, current)
    wrapper.__wrapped__ = current
    wrapper.__doc__ = f"{current.__doc__ or ''}\n(wrapped by openood_moon: adds MOON's names)"
    return _rebind(current, wrapper)


# ------------------------------------------------------------------ network


def _load_pretrained(net: torch.nn.Module, checkpoint: str) -> None:
    """Strict load of a full MoonNet state, or of a plain backbone state into ``net.backbone``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    target = net
    if hasattr(net, "backbone") and set(state) == set(net.backbone.state_dict()):
        target = net.backbone  # an exported plain checkpoint: fc_unknown keeps its init
    target.load_state_dict(state, strict=True)


def _finish(net: torch.nn.Module, cfg) -> torch.nn.Module:
    """What OpenOOD's get_network does after building: pretrained load, device, DDP."""
    if cfg.pretrained and cfg.checkpoint not in (None, "none"):
        _load_pretrained(net, cfg.checkpoint)
    num_gpus = cfg.num_gpus or 0
    if num_gpus > 0 and torch.cuda.is_available():
        net = net.to(torch.device("cuda", torch.cuda.current_device()))
    if num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        ids = [torch.cuda.current_device()] if torch.cuda.is_available() else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=True)
    return net


def _build_moon(network_config, get_network: Callable) -> torch.nn.Module:
    from openood_moon.moon.net import MoonNet

    backbone_cfg = network_config.backbone
    if backbone_cfg is None:
        raise KeyError("network.name 'moon' needs a network.backbone section (name, num_classes, ...)")
    backbone_cfg = backbone_cfg()  # a copy: the wrapper places the whole net, not the backbone
    backbone_cfg.num_gpus = 0
    if backbone_cfg.num_classes is None:
        backbone_cfg.num_classes = network_config.num_classes
    return MoonNet(get_network(backbone_cfg), num_classes=network_config.num_classes)


def _build_own(network_config) -> torch.nn.Module:
    from openood_moon.networks import build_network

    kwargs = {key: network_config[key] for key in _OWN_OPTIONS if network_config.get(key) is not None}
    return build_network(network_config.name, network_config.num_classes, **kwargs)


def _needs_own(network_config) -> bool:
    """True when the config asks for an option OpenOOD's class of that name ignores (width, channels)."""
    return any(network_config.get(key) not in (None, default) for key, default in _OWN_OPTIONS.items())


def _make_get_network(original: Callable) -> Callable:
    import openood.networks.utils as network_utils
    from openood_moon.networks import NETWORKS

    def get_network(network_config):
        if network_config.name == NETWORK:
            # module global, i.e. this wrapper: the backbone may be any name, ours included
            return _finish(_build_moon(network_config, network_utils.get_network), network_config)
        if network_config.name in NETWORKS:
            if not _needs_own(network_config):
                try:
                    return original(network_config)  # OpenOOD's own class wins when it has one
                except Exception as err:  # noqa: BLE001 - only the "unknown name" error falls through
                    if str(err) != _UNKNOWN_NETWORK:
                        raise
            return _finish(_build_own(network_config), network_config)
        return original(network_config)

    return get_network


# ------------------------------------------------------------------ trainer, pipeline, postprocessor


def _make_get_trainer(original: Callable) -> Callable:
    def get_trainer(net, train_loader, val_loader, config):
        if config.trainer.name == TRAINER:
            from .trainer import OpenOODMoonTrainer

            return OpenOODMoonTrainer(net, train_loader, config)
        return original(net, train_loader, val_loader, config)

    return get_trainer


def _make_get_pipeline(original: Callable) -> Callable:
    def get_pipeline(config):
        if config.pipeline.name == PIPELINE:
            from .pipeline import TrainMoonPipeline

            return TrainMoonPipeline(config)
        return original(config)

    return get_pipeline


def _make_get_postprocessor(original: Callable) -> Callable:
    def get_postprocessor(config):
        if config.postprocessor.name == POSTPROCESSOR:
            from .postprocessor import MoonPostprocessor

            return MoonPostprocessor(config)
        return original(config)

    return get_postprocessor


def _make_get_preprocessor(original: Callable) -> Callable:
    def get_preprocessor(config, split):
        section = config.preprocessor
        if section is None or section.name is None:  # OpenOOD would fail on config.preprocessor.name
            from openood.preprocessors import BasePreprocessor, TestStandardPreProcessor

            return BasePreprocessor(config) if split == "train" else TestStandardPreProcessor(config)
        if section.name not in choices("preprocessor"):
            from ...config import ConfigError

            raise ConfigError(f"unknown preprocessor.name {section.name!r}; valid choices (OpenOOD "
                              f"engine): {', '.join(choices('preprocessor'))}")
        if section.name == PREPROCESSOR and split == "train":
            from ...data.transforms import ShiftPreprocessor

            return ShiftPreprocessor(config)
        return original(config, split)

    return get_preprocessor


def register(cpu_shim: bool = False) -> Dict[str, int]:
    """Register MOON's names into OpenOOD (idempotent); return how many references were rebound.

    ``cpu_shim=True`` also installs :func:`compat.install_cpu_shim` (only acts without CUDA).
    """
    from . import compat

    compat.prepare(cpu_shim=cpu_shim)
    import openood.evaluation_api  # noqa: F401 - loads every module that holds a factory copy
    import openood.evaluation_api.postprocessor as eval_postprocessors
    import openood.networks.utils as network_utils
    import openood.pipelines  # noqa: F401
    import openood.pipelines.utils as pipeline_utils
    import openood.postprocessors.utils as postprocessor_utils
    import openood.preprocessors.utils as preprocessor_utils
    import openood.trainers.utils as trainer_utils
    from .postprocessor import MoonPostprocessor

    rebound = {
        "get_network": _install(network_utils, "get_network", _make_get_network),
        "get_trainer": _install(trainer_utils, "get_trainer", _make_get_trainer),
        "get_pipeline": _install(pipeline_utils, "get_pipeline", _make_get_pipeline),
        "get_postprocessor": _install(postprocessor_utils, "get_postprocessor",
                                      _make_get_postprocessor),
        "get_preprocessor": _install(preprocessor_utils, "get_preprocessor", _make_get_preprocessor),
    }
    if eval_postprocessors.postprocessors.get(POSTPROCESSOR) is not MoonPostprocessor:
        eval_postprocessors.postprocessors[POSTPROCESSOR] = MoonPostprocessor
    return rebound


def is_registered() -> bool:
    """True when OpenOOD is loaded and its factories are wrapped."""
    utils = sys.modules.get("openood.networks.utils")
    return utils is not None and hasattr(utils.get_network, _ORIGINAL)


def choices(kind: str) -> list:
    """Names OpenOOD (with MOON's added) accepts for ``kind`` in network | trainer | pipeline |
    postprocessor | preprocessor. OpenOOD's factories hold their names in function-local dicts or
    if/elif chains, so they are read from the factory's source (``'name':`` keys, ``.name == 'name'``
    tests)."""
    import inspect
    import re

    register()
    if kind == "postprocessor":
        import openood.evaluation_api.postprocessor as eval_postprocessors

        return sorted(eval_postprocessors.postprocessors)
    import openood.networks.utils as network_utils
    import openood.pipelines.utils as pipeline_utils
    import openood.preprocessors.utils as preprocessor_utils
    import openood.trainers.utils as trainer_utils
    from openood_moon.networks import NETWORKS

    module, attr, ours = {"network": (network_utils, "get_network", {NETWORK, *NETWORKS}),
                          "trainer": (trainer_utils, "get_trainer", {TRAINER}),
                          "pipeline": (pipeline_utils, "get_pipeline", {PIPELINE}),
                          "preprocessor": (preprocessor_utils, "get_preprocessor", {PREPROCESSOR})}[kind]
    source = inspect.getsource(getattr(getattr(module, attr), _ORIGINAL))
    names = re.findall(r"^\s*'(\w+)'\s*:", source, re.M) + re.findall(r"\.name\s*==\s*'(\w+)'", source)
    return sorted(set(names) | ours)
