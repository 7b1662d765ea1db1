"""A run stopped at any moment — SIGKILL in the middle of an epoch or of a checkpoint write, Ctrl-C,
a full disk — resumes with the same command and ends bitwise equal to a run never stopped: every
tensor of checkpoint.pt (weights, masks, optimizer, α tuner, vote, RNG), best.ckpt and moon_net.ckpt,
and the bytes of ood.csv and metrics.json. A second run into a folder a live run holds is refused.

All runs are the embedded benchmark's 3-epoch smoke run (3 steps per epoch), one intra-op thread in
every process so that a run continued in another process computes with the same kernels.
"""
import errno
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bitwise import assert_same  # noqa: E402
from openood_moon.checkpoint import load_checkpoint
from openood_moon.cli import main
from openood_moon.engines.standalone.run import StandaloneEngine
from openood_moon.sparse import Masking

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--engine", "standalone", "--dataset.subset", "300", "--optimizer.num_epochs", "3",
        "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1", "--evaluation.postprocessors", "[msp]",
        "--evaluation.plots", "false"]
RUN = "mnist6_small_cnn_rigl_d0.1_e3_moon/s0"
STEPS_PER_EPOCH = 3                                    # 300 training items, batches of 128
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# main.py with a fault: "step N" SIGKILLs itself on training step N (after its backward pass, before
# its update), or when the evaluation starts if N is past the last step; "write N MARKER" stops the
# N-th checkpoint.pt write half way, touches MARKER and waits there to be killed.
FAULTY_MAIN = r"""
import io, os, signal, sys, time
import torch
from openood_moon.cli import main
from openood_moon.engines.standalone.run import StandaloneEngine
from openood_moon.sparse import Masking

mode, n, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "step":
    step = Masking.step
    def killed_at_step_n(self, optimizer, t):
        if t == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, optimizer, t)
    def killed_at_evaluation(self, *args):
        os.kill(os.getpid(), signal.SIGKILL)
    Masking.step = killed_at_step_n
    StandaloneEngine.evaluate = killed_at_evaluation
else:
    save, writes = torch.save, []
    def stalled_write(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "masking" in obj:
            writes.append(obj["epoch"])
            if len(writes) == n:
                whole = io.BytesIO()
                save(obj, whole)
                f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
                f.flush()
                open(marker, "w").close()
                time.sleep(600)
        return save(obj, f, *args, **kwargs)
    torch.save = stalled_write
sys.exit(main(sys.argv[4:]))
"""


def command(data_root, out):
    return ARGS + ["--dataset.data_root", str(data_root), "--output_dir", str(out)]


def faulty_main(mode, n, marker, cmd):
    return subprocess.Popen([sys.executable, "-c", FAULTY_MAIN, mode, str(n), str(marker), *cmd], cwd=REPO,
                            env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(mnist6_root, tmp_path_factory):
    """The run never stopped."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(command(mnist6_root, out)) == 0
    return out / RUN


def assert_same_run(run, reference):
    for name in ("checkpoint.pt", "best.ckpt", "moon_net.ckpt"):
        assert_same(load_checkpoint(str(run / name)), load_checkpoint(str(reference / name)), name)
    for name in ("ood.csv", "metrics.json"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


def saved_epoch(run):
    return load_checkpoint(str(run / "checkpoint.pt"))["epoch"]


def test_sigkill_mid_epoch_then_the_same_command_ends_bitwise_equal(reference, mnist6_root, tmp_path, capsys):
    n = random.randrange(STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 2)   # a step of epoch 2 or 3, or the
    cmd = command(mnist6_root, tmp_path)                                  # evaluation (n = 10)
    child = faulty_main("step", n, "-", cmd)
    _, err = child.communicate(timeout=900)
    assert child.returncode == -signal.SIGKILL, f"step {n}: {err[-3000:]}"
    run = tmp_path / RUN
    done = min((n - 1) // STEPS_PER_EPOCH, 3)
    assert saved_epoch(run) == done and not (run / "ood.csv").exists(), f"killed at step {n}"
    assert main(cmd) == 0
    assert f"resumed from {run / 'checkpoint.pt'} at epoch {done}" in capsys.readouterr().out
    assert_same_run(run, reference)


def test_killed_mid_checkpoint_write_holds_the_folder_until_kill_9_then_a_new_run_takes_over_and_resumes(
        reference, mnist6_root, tmp_path, capsys):
    n = random.choice([2, 3])                           # the write after epoch 2 or 3 stops half way
    cmd, marker = command(mnist6_root, tmp_path), tmp_path / "stalled"
    first = faulty_main("write", n, marker, cmd)
    try:
        give_up = time.monotonic() + 1200                # a guard against a hung child, not a timing
        while not marker.exists():
            assert first.poll() is None, f"write {n}: {first.communicate()[1][-3000:]}"
            assert time.monotonic() < give_up, "the first run never reached its checkpoint write"
            time.sleep(0.2)
        run = tmp_path / RUN
        assert len(list(run.glob(".tmp-*.pt"))) == 1     # the partial write
        assert saved_epoch(run) == n - 1
        assert main(cmd) == 2                           # a second run while the first lives: refused
        err = capsys.readouterr().err
        assert f"is in use by another run (pid {first.pid} on host {socket.gethostname()}" in err, err
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert main(cmd) == 0                               # the lock of the dead run is taken over
    assert f"resumed from {run / 'checkpoint.pt'} at epoch {n - 1}" in capsys.readouterr().out
    assert not list(run.glob(".tmp-*")), "the partial write is cleaned up"
    assert_same_run(run, reference)


def test_ctrl_c_keeps_the_last_complete_epoch_exits_130_and_the_same_command_resumes(
        reference, mnist6_root, tmp_path, capsys, monkeypatch, request):
    cmd, run = command(mnist6_root, tmp_path), tmp_path / RUN
    message = f"interrupted: {run / 'checkpoint.pt'} holds the last complete epoch; run the same command again"
    # Ctrl-C as a terminal delivers it: a shell starts background jobs with SIGINT ignored, and Python
    # then keeps it ignored, so the test sets the handler an interactive Python has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))

    def ctrl_c_after_epoch_2(self, trainer, metrics, is_main):    # epoch 2 trained, not yet saved
        if trainer.epoch == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(StandaloneEngine, "after_epoch", ctrl_c_after_epoch_2)
    assert main(cmd) == 130
    assert message in capsys.readouterr().err
    assert saved_epoch(run) == 2                        # saved on the way out
    monkeypatch.undo()

    n = random.randrange(2 * STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 1)   # a step of epoch 3
    step, before = Masking.step, (run / "checkpoint.pt").read_bytes()

    def ctrl_c_at_step_n(self, optimizer, t):
        if t == n:
            signal.raise_signal(signal.SIGINT)
        return step(self, optimizer, t)

    monkeypatch.setattr(Masking, "step", ctrl_c_at_step_n)
    assert main(cmd) == 130
    assert message in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == before, f"a mid-epoch state (step {n}) was saved"
    monkeypatch.undo()

    assert main(cmd) == 0
    assert f"resumed from {run / 'checkpoint.pt'} at epoch 2" in capsys.readouterr().out
    assert_same_run(run, reference)


def test_a_full_disk_at_a_checkpoint_write_exits_1_keeps_the_previous_checkpoint_and_the_run_resumes(
        reference, mnist6_root, tmp_path, capsys, monkeypatch):
    cmd, run = command(mnist6_root, tmp_path), tmp_path / RUN
    real_fdopen, writes = os.fdopen, []

    class DiskFull:
        """The second checkpoint write (after epoch 2) finds 5000 bytes of room."""

        def __init__(self, f):
            self.f, self.room = f, 5000

        def write(self, data):
            fits = min(len(data), self.room)
            self.f.write(bytes(data[:fits]))
            self.room -= fits
            if fits < len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return fits

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        if "w" in mode:
            writes.append(fd)
            if len(writes) == 2:
                return DiskFull(f)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert f"error: could not write {run / 'checkpoint.pt'}: No space left on device; " in err
    assert "keeps the last complete epoch. Free space (or fix the folder) and run the same command again" in err
    monkeypatch.undo()
    assert saved_epoch(run) == 1 and not list(run.glob(".tmp-*"))
    assert main(cmd) == 0
    assert f"resumed from {run / 'checkpoint.pt'} at epoch 1" in capsys.readouterr().out
    assert_same_run(run, reference)
