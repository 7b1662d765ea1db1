"""sparse.updates_per_epoch: the topology-update interval per epoch, so a regime carries over to other
data sizes (interval = max(1, round(steps_per_epoch / updates_per_epoch))); at most one of it and
sparse.interval is set (a later config layer setting one unsets the other); the log states the
topology updates planned and done; runs recorded before the key existed keep their config."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from openood_moon.config import ConfigError
from openood_moon.job_config import job_config
from openood_moon.networks import SmallCNN
from openood_moon.settings import SparseSettings, TrainSettings
from openood_moon.study.grid import config_hash
from openood_moon.trainer import MoonTrainer


@pytest.mark.parametrize("steps, per_epoch, interval", [
    (18, 2, 9), (24, 1, 24), (1, 4, 1), (25, 2, 12), (27, 2, 14), (100, 3, 33), (10, 0.5, 20)])
def test_interval_from_updates_per_epoch(steps, per_epoch, interval):
    # by hand: 25 / 2 = 12.5 -> 12 and 27 / 2 = 13.5 -> 14 (round half to even); 1 / 4 -> 0 -> at least 1
    assert SparseSettings(updates_per_epoch=per_epoch).interval_for(steps) == interval
    assert SparseSettings(interval=7).interval_for(steps) == 7


def test_a_later_layer_setting_one_unsets_the_other():
    cfg = job_config(["configs/pipelines/train/moon.yml"], ["--sparse.updates_per_epoch", "2"])
    assert cfg["sparse"]["interval"] is None and cfg["sparse"]["updates_per_epoch"] == 2   # moon.yml's 10 gone
    assert TrainSettings.from_config(cfg).sparse.interval_for(18) == 9
    cfg = job_config(["configs/pipelines/train/moon.yml"], ["--sparse.updates_per_epoch", "2", "--sparse.interval", "5"])
    assert "updates_per_epoch" not in cfg["sparse"] and cfg["sparse"]["interval"] == 5
    assert TrainSettings.from_config(cfg).sparse.interval_for(18) == 5


def test_one_layer_setting_both_is_refused(tmp_path):
    both = tmp_path / "both.yml"
    both.write_text("sparse:\n  interval: 5\n  updates_per_epoch: 2\n")
    with pytest.raises(ConfigError, match=r"sparse.interval \(5\) and sparse.updates_per_epoch \(2.0\) are both set"):
        TrainSettings.from_config(job_config(["configs/pipelines/train/moon.yml", str(both)]))
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match="sparse.updates_per_epoch must be a number > 0"):
            TrainSettings.from_config(job_config([], ["--sparse.updates_per_epoch", bad]))


def test_unset_key_leaves_configs_hashes_and_checkpoints_as_before():
    cfg = job_config(["configs/pipelines/train/moon.yml"])
    assert "updates_per_epoch" not in cfg["sparse"]
    assert "updates_per_epoch" not in TrainSettings.from_config(cfg).training_dict()["sparse"]
    set_cfg = job_config(["configs/pipelines/train/moon.yml"], ["--sparse.updates_per_epoch", "2"])
    assert config_hash(set_cfg) != config_hash(cfg)


def _trainer(n_items, per_epoch, epochs=4):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(n_items, 1, 8, 8), torch.randint(0, 3, (n_items,)))
    loader = DataLoader(data, batch_size=4, shuffle=False)
    cfg = {"optimizer": {"num_epochs": epochs}, "sparse": {"method": "rigl", "density": 0.5,
                                                           "updates_per_epoch": per_epoch},
           "moon": {"enabled": False, "vote_epochs": 1}}
    return MoonTrainer(SmallCNN(3, in_channels=1, width=4, feature_size=8), loader, cfg)


@pytest.mark.parametrize("n_items", [24, 48])
def test_planned_and_done_updates_are_the_same_on_twice_the_data(n_items):
    """By hand: 4 epochs, the last (vote length 1) at constant LR, sparse.end 0.75. 24 items / batch 4 =
    6 steps/epoch, interval 6/2 = 3, end step min(0.75*24, 3*6) = 18: updates at 3, 6, 9, 12, 15 -> 5.
    48 items: 12 steps/epoch, interval 6, end step 36: updates at 6, 12, 18, 24, 30 -> 5."""
    trainer = _trainer(n_items, 2)
    assert trainer.update_interval == n_items // 4 // 2 and trainer.planned_updates == 5
    metrics = [trainer.train_epoch() for _ in range(4)]
    assert [m["topology_updates_done"] for m in metrics][-1] == 5 == trainer.masking.updates_done
    assert all(m["topology_updates_planned"] == 5 for m in metrics)
    assert sum(m["mask_updates"] for m in metrics) == 5
