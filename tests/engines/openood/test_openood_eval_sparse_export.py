"""scripts/eval_ood.py's load_network reads a run's compressed ``best.sparse.pt`` (values + bitmask,
openood_moon.sparse_export) into OpenOOD's network exactly, when no ``best.ckpt`` is there."""
import pytest
import torch

from openood_moon.networks import build_network
from openood_moon.sparse_export import save_sparse_state_dict

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]

RUN_CFG = {"network": {"name": "small_cnn", "in_channels": 3}}


def sparse_state(seed=0):
    """A small CNN's state_dict with 90 % of every weight matrix zeroed, as a RigL run leaves it."""
    torch.manual_seed(seed)
    state = build_network("small_cnn", 6, in_channels=3).state_dict()
    for name, value in state.items():
        if name.endswith("weight") and value.dim() > 1:
            value.mul_((torch.rand(value.shape) < 0.1).float())
    return state


@pytest.mark.parametrize("which", ["auto", "best", "sparse"])
def test_load_network_reads_best_sparse_pt_bitwise(tmp_path, which):
    from openood_moon.engines.openood.evaluate import load_network, network_section

    run = tmp_path / "s0"
    run.mkdir()
    state = sparse_state()
    save_sparse_state_dict(state, str(run / "best.sparse.pt"))
    net, name = load_network(str(run), network_section(RUN_CFG, None, 6), which)
    assert name == "best.sparse.pt"
    loaded = net.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_best_ckpt_is_preferred_to_best_sparse_pt(tmp_path):
    from openood_moon.engines.openood.evaluate import load_network, network_section

    run = tmp_path / "s0"
    run.mkdir()
    dense = sparse_state(seed=1)
    torch.save(dense, str(run / "best.ckpt"))
    save_sparse_state_dict(sparse_state(seed=2), str(run / "best.sparse.pt"))
    net, name = load_network(str(run), network_section(RUN_CFG, None, 6))
    assert name == "best.ckpt"
    assert all(torch.equal(net.state_dict()[k], v) for k, v in dense.items())
