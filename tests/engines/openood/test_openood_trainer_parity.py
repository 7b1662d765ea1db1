"""Both engines' trainer adapters do the same step: from the same weights, masks and batch, one step of
the standalone engine's trainer and of the trainer OpenOOD's ``get_trainer`` returns for ``moon`` leave
bitwise-identical weights, masks, α statistics and optimizer state."""
import copy

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]


class _Batch(Dataset):
    """OpenOOD-style samples ``{'data', 'label'}``."""

    def __init__(self, n=16):
        gen = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(n, 3, 28, 28, generator=gen), torch.randint(0, 6, (n,), generator=gen)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"data": self.x[i], "label": self.y[i]}


@pytest.mark.parametrize("method", ["rigl", "set"])
@pytest.mark.parametrize("interval", [1, 5])  # 1: the step is a topology update; 5: a plain step
def test_one_step_is_bitwise_identical_in_both_engines(method, interval):
    import openood.trainers.utils as trainer_utils
    from openood.utils import Config

    from openood_moon.engines.openood.trainer import OpenOODMoonTrainer
    from openood_moon.engines.standalone.run import StandaloneEngine, build_model
    from openood_moon.job_config import job_config
    from openood_moon.settings import TrainSettings

    cfg = job_config([], ["--sparse.method", method, "--sparse.interval", str(interval), "--sparse.density", "0.2",
                          "--moon.warmup_epochs", "1", "--optimizer.num_epochs", "3", "--moon.vote_epochs", "1"])
    settings = TrainSettings.from_config(cfg)
    torch.manual_seed(0)
    net_a = build_model(cfg, settings)
    net_b = copy.deepcopy(net_a)
    loader = DataLoader(_Batch(), batch_size=16, shuffle=False)     # one batch = one step per epoch

    ours = StandaloneEngine(cfg).make_trainer(net_a, loader, settings, torch.device("cpu"))
    adapter = trainer_utils.get_trainer(net_b, loader, loader, Config(cfg))
    assert isinstance(adapter, OpenOODMoonTrainer)
    theirs = adapter.core
    theirs.masking.load_state_dict(copy.deepcopy(ours.masking.state_dict()))   # same masks...
    theirs.masking.apply()
    for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()):  # ...and weights
        assert torch.equal(a, b)

    metrics_a = ours.train_epoch()
    _, metrics_b = adapter.train_epoch(1)                     # OpenOOD counts epochs from 1
    assert metrics_b["epoch_idx"] == 1 and metrics_a["mask_updates"] == metrics_b["mask_updates"]
    assert metrics_a["mask_updates"] == (1 if interval == 1 else 0)
    state_a, state_b = ours.state_dict(), theirs.state_dict()
    for key in state_a["net"]:
        assert torch.equal(state_a["net"][key], state_b["net"][key]), key
    for name, mask in ours.masking.masks.items():
        assert torch.equal(mask, theirs.masking.masks[name]), name
    assert state_a["tuner"] == state_b["tuner"]                                  # α's EWMA statistic
    momentum_a, momentum_b = state_a["optimizer"]["state"], state_b["optimizer"]["state"]
    assert momentum_a.keys() == momentum_b.keys()
    assert momentum_a or interval == 1        # on an update step the topology update replaces the SGD step
    for key in momentum_a:
        assert torch.equal(momentum_a[key]["momentum_buffer"], momentum_b[key]["momentum_buffer"]), key
    assert state_a["optimizer"]["param_groups"] == state_b["optimizer"]["param_groups"]
    assert ours.step == theirs.step == 1
