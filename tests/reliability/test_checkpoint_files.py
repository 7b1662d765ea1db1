"""Checkpoint files under failure: a full disk or a kill during a write keeps the previous checkpoint
loadable; truncated, foreign and code-carrying files are refused with ConfigError saying which."""
import errno
import io
import os

import pytest
import torch

from openood_moon.checkpoint import (load_checkpoint, remove_partial_writes, save_checkpoint, tensor_mismatch,
                                     training_checkpoint_mismatch)
from openood_moon.config import ConfigError


class DiskFull(io.FileIO):
    """A file on a disk with ``room`` bytes left: writes what fits, then raises ENOSPC."""
    room = 0

    def write(self, data):
        fits = min(len(data), DiskFull.room)
        if fits:
            super().write(bytes(data[:fits]))
            DiskFull.room -= fits
        if fits < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fits


def full_disk(monkeypatch, room):
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" in mode:
            DiskFull.room = room
            return DiskFull(fd, "wb", closefd=True)
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("room", [0, 100, 3000, 40_000])
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, room):
    path = tmp_path / "checkpoint.pt"
    old = {"w": torch.arange(10_000.0), "epoch": 1}
    save_checkpoint(old, str(path))
    full_disk(monkeypatch, room)
    with pytest.raises(OSError) as err:
        save_checkpoint({"w": torch.zeros(10_000), "epoch": 2}, str(path))
    assert err.value.errno == errno.ENOSPC            # the file system's error, not torch's RuntimeError
    monkeypatch.undo()
    back = load_checkpoint(str(path))
    assert back["epoch"] == 1 and torch.equal(back["w"], old["w"])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]          # the partial temporary is gone


def test_a_write_killed_midway_leaves_only_a_temporary_which_is_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, str(path))
    buf = io.BytesIO()
    torch.save({"epoch": 2, "w": torch.ones(1000)}, buf)
    (tmp_path / ".tmp-abc123.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # as a kill leaves it
    (tmp_path / "notes.tmp").write_text("not ours")
    assert load_checkpoint(str(path)) == {"epoch": 1}
    assert remove_partial_writes(tmp_path) == [".tmp-abc123.pt"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "notes.tmp"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("content,message", [
    (b"", "truncated or not a torch checkpoint"),
    (b"epoch: 3\n", "truncated or not a torch checkpoint"),
    ("half", "truncated or not a torch checkpoint"),
    ("evil", r"holds objects other than tensors and plain Python values; refused, as checkpoints are "
             r"loaded weights only \(torch.load\(weights_only=True\)\)"),
])
def test_truncated_foreign_and_code_carrying_files_are_refused(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content == "half":
        save_checkpoint({"w": torch.arange(1000.0)}, str(path))
        path.write_bytes(path.read_bytes()[:-300])
    elif content == "evil":
        torch.save({"x": Evil()}, str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_checkpoint(str(path))
    assert str(path) in str(err.value)


def test_tensor_mismatch_names_missing_unexpected_and_reshaped_tensors():
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}
    found = {"a": torch.zeros(3, 3), "b": torch.zeros(4), "d": torch.zeros(1)}
    assert tensor_mismatch(found, expected, "net") == [
        "net: missing c", "net: unexpected d", "net: other shape a (3, 3) in the checkpoint vs (2, 3) here"]
    assert tensor_mismatch(expected, expected, "net") == []
    assert tensor_mismatch({"a": 1}, expected, "net") == ["net: not a mapping of names to tensors"]


def test_a_training_checkpoint_of_other_settings_or_masks_is_described():
    masks = {"conv.weight": torch.zeros(10, 10, dtype=torch.bool)}
    masks["conv.weight"][0] = True                                   # 10 of 100 active
    state = {"net": {"conv.weight": torch.zeros(10, 10)}, "optimizer": {}, "masking": {"masks": masks},
             "epoch": 1, "step": 3, "settings": {"sparse": {"density": 0.1}, "seed": 0}}
    assert training_checkpoint_mismatch(state, expected=state, settings=state["settings"]) == []
    assert training_checkpoint_mismatch({"conv.weight": torch.zeros(1)})[0].startswith(
        "not a training checkpoint (it holds conv.weight")
    other = training_checkpoint_mismatch(state, settings={"sparse": {"density": 0.05}, "seed": 0})
    assert other == ["trained with other settings: sparse.density (0.1 in the checkpoint vs 0.05)"]
    denser = {"conv.weight": torch.ones(10, 10, dtype=torch.bool)}
    problems = training_checkpoint_mismatch({**state, "masking": {"masks": denser}}, expected=state)
    assert problems == ["masks: density 1.0000 in the checkpoint vs 0.1000 for this run's sparse.density "
                        "(or masks not boolean)"]
