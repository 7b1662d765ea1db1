"""Backbones that follow OpenOOD's network contract, and a name-checked factory."""
from .contract import OODNetwork
from .resnet18_32x32 import ResNet18_32x32
from .small_cnn import SmallCNN

NETWORKS = {"small_cnn": SmallCNN, "resnet18_32x32": ResNet18_32x32}


def build_network(name: str, num_classes: int, **kwargs) -> OODNetwork:
    """Build a registered backbone by name; unknown names list the valid choices."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network.name {name!r}; valid choices: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name](num_classes=num_classes, **kwargs)


__all__ = ["NETWORKS", "OODNetwork", "ResNet18_32x32", "SmallCNN", "build_network"]
