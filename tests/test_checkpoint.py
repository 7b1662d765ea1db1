"""Checkpoints are written atomically and read without running code."""
import os

import pytest
import torch

from openood_moon.checkpoint import load_checkpoint, save_checkpoint


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.arange(3), "epoch": 2, "ok": None}, str(path))
    assert load_checkpoint(str(path))["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_failed_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 1}, str(path))
    with pytest.raises(Exception):
        save_checkpoint({"bad": lambda: 0}, str(path))          # not picklable
    assert load_checkpoint(str(path)) == {"epoch": 1}
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, str(path))
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(str(path))
