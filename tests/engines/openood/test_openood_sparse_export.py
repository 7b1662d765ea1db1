"""The compressed sparse export (openood_moon/sparse_export.py) loads strictly into OpenOOD's own network."""
import pytest
import torch

from openood_moon.networks import ResNet18_32x32
from openood_moon.sparse import Masking
from openood_moon.sparse_export import load_sparse_state_dict, save_sparse_state_dict


@pytest.mark.openood
def test_the_export_loads_strictly_into_openoods_resnet18(openood_api, tmp_path):
    from openood.networks import ResNet18_32x32 as OpenOODResNet18

    torch.manual_seed(4)
    net = ResNet18_32x32(10)
    Masking(net, "rigl", 0.1, seed=4)                        # 90 % of the conv/linear weights exactly 0
    save_sparse_state_dict(net.state_dict(), str(tmp_path / "best.sparse.pt"))
    theirs = OpenOODResNet18(num_classes=10)
    theirs.load_state_dict(load_sparse_state_dict(str(tmp_path / "best.sparse.pt")), strict=True)
    net.eval(), theirs.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), theirs(x))
