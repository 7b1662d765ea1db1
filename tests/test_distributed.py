"""Multi-process training (openood_moon.distributed) on CPU: gloo, launched with PyTorch's own ``torchrun``
(``python -m torch.distributed.run``) on tests/torchrun_harness.py, which is ``main.py`` plus records
(every rank's masks after every topology update, every rank's final state) and injected faults.

The runs are the embedded benchmark's 300-item smoke run with a global batch of 64 (5 steps per epoch,
3 epochs, RigL/SET updates at steps 2, 4, 6 and 8), sparse + MOON (warm-up 1 epoch, vote 1 epoch).
"""
import copy
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openood_moon import distributed
from bitwise import assert_same  # noqa: E402
from openood_moon.checkpoint import load_checkpoint
from openood_moon.cli import main
from openood_moon.config import ConfigError
from openood_moon.moon import recalibrate_batchnorm

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "torchrun_harness.py"
sys.path.insert(0, str(HARNESS.parent))
import torchrun_harness  # noqa: E402

ARGS = ["--engine", "standalone", "--device", "cpu", "--dataset.subset", "300", "--dataset.train.batch_size", "64",
        "--optimizer.num_epochs", "3", "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1",
        "--sparse.interval", "2", "--evaluation.postprocessors", "[msp]", "--evaluation.plots", "false"]
UPDATE_STEPS = [2, 4, 6, 8]        # interval 2 until end_step = min(0.75·15, 2 epochs·5 steps) = 10
NO_BN_NET = """network:
  name: small_cnn_nobn
  num_classes: 6
  in_channels: 3
  width: 8
  pretrained: False
  checkpoint: none
  num_gpus: 1
"""


def command(data_root, out, *extra):
    return ARGS + ["--dataset.data_root", str(data_root), "--output_dir", str(out), *extra]


def no_bn(tmp, method):
    """Args of the network without BatchNorm (a config file declares its keys) and sparse.method."""
    path = Path(tmp) / "no_bn.yml"
    path.write_text(NO_BN_NET)
    return ["--config", str(path), "--sparse.method", method]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(records, nproc=2, fault="", rdzv=None):
    """The torchrun command line and environment (one intra-op thread per process); ``rdzv``: multi-node."""
    env = {**os.environ, "HARNESS_OUT": str(records), "HARNESS_FAULT": fault, "OMP_NUM_THREADS": "1"}
    records.mkdir(parents=True, exist_ok=True)
    if rdzv is None:
        where = ["--standalone", "--nnodes", "1"]
    else:
        where = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv, "--rdzv-id", "moon-test"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *where, "--nproc-per-node", str(nproc),
           "--log-dir", str(records / "logs"), "--tee", "3", str(HARNESS)]
    return cmd, env


def start(cmd, env):
    """A launch in its own process group, so that a hung one is killed with all its workers."""
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc, timeout=600):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s (killed): {err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def torchrun(args, records, nproc=2, fault=""):
    cmd, env = launcher(records, nproc, fault)
    return finish(start(cmd + list(args), env))


def rank_log(records, rank, attempt_glob="*"):
    """What local rank ``rank`` wrote to stderr (torchrun --log-dir/--tee)."""
    return "".join(p.read_text() for p in sorted(records.glob(f"logs/*/attempt_{attempt_glob}/{rank}/stderr.log")))


def run_dir(out) -> Path:
    (found,) = Path(out).glob("*/s0")
    return found


def mask_records(records, rank):
    return [line.split() for line in (records / f"masks.rank{rank}.txt").read_text().splitlines()]


def final(records, rank):
    return torch.load(records / f"final.rank{rank}.pt", weights_only=True)


def parameters_only(state):
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches_tracked" not in k}


def assert_close(a, b, where, atol=1e-5):
    assert list(a) == list(b), where
    for key in a:
        diff = (a[key].double() - b[key].double()).abs().max().item() if a[key].numel() else 0.0
        assert diff <= atol, f"{where}.{key}: max |difference| {diff}"


def assert_equal(a, b, where):
    assert list(a) == list(b), where
    for key in a:
        assert torch.equal(a[key], b[key]), f"{where}.{key}"


# ---------------------------------------------------------------------------- helpers, one process
def test_mask_checksum_is_count_sum_and_hash_of_the_active_positions_laid_end_to_end():
    masks = {"a": torch.tensor([[True, False], [False, True]]), "b": torch.tensor([False, True, True])}
    positions = [0, 3, 4 + 1, 4 + 2]                           # b starts after a's 4 entries
    expected = [4, sum(positions), sum(i * 2654435761 % 1_000_000_007 for i in positions)]
    assert distributed.mask_checksum(masks).tolist() == expected
    moved = {"a": masks["a"], "b": torch.tensor([True, False, True])}   # one active weight moved
    assert distributed.mask_checksum(moved).tolist() != expected


def test_one_process_helpers_change_nothing():
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.per_rank_batch(128) == 128
    assert distributed.global_mean(0.25, 7) == 0.25
    assert distributed.sums_over_ranks([1.5, 2, 3]) == [1.5, 2, 3]
    with pytest.raises(ConfigError, match="boom"):
        distributed.from_rank0(lambda: (_ for _ in ()).throw(ConfigError("boom")))
    distributed.check_masks_agree({"a": torch.ones(3, dtype=torch.bool)}, 1)       # nothing to compare with


def test_batchnorm_recalibration_summed_over_two_shards_equals_one_pass_over_all_data():
    """Two "ranks" each see half the batches; ``reduce`` returns the sum of both ranks' packed statistics
    (what an all-reduce returns). Both must end with the statistics of one pass over all the batches
    (tests/moon/test_vote.py checks that pass against a hand computation)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5), torch.nn.BatchNorm1d(5))
    batches = [torch.randn(n, 3, 6, 6) for n in (7, 5, 3, 9)]
    shards, packed = (batches[:2], batches[2:]), []
    ranks = [copy.deepcopy(net) for _ in shards]
    for model, shard in zip(ranks, shards):                     # what each rank contributes
        recalibrate_batchnorm(model, shard, reduce=lambda t: packed.append(t.clone()) or t)
    total = packed[0] + packed[1]
    for model, shard in zip(ranks, shards):
        assert recalibrate_batchnorm(model, shard, reduce=lambda t: total.clone()) == 24
    whole = copy.deepcopy(net)
    recalibrate_batchnorm(whole, batches)
    for model in ranks:
        for name, buffer in whole.state_dict().items():
            if "running" in name:
                assert torch.allclose(model.state_dict()[name], buffer, rtol=1e-6, atol=1e-7), name
    alone = copy.deepcopy(net)                                  # one shard without the sum: other statistics
    recalibrate_batchnorm(alone, shards[0])
    assert not torch.allclose(alone[1].running_mean, whole[1].running_mean, rtol=1e-3)


# ---------------------------------------------------------------------------- torchrun runs
@pytest.fixture(scope="module")
def one_process_rigl(mnist6_root, tmp_path_factory):
    """The 1-process run of the network without BatchNorm, RigL (in this process: no torchrun)."""
    out = tmp_path_factory.mktemp("one_rigl")
    torchrun_harness.register_test_network()
    assert main(command(mnist6_root, out, *no_bn(out, "rigl"))) == 0
    return run_dir(out)


@pytest.fixture(scope="module")
def two_process_rigl(mnist6_root, tmp_path_factory):
    """The same run in 2 processes (torchrun), never stopped: (run folder, records)."""
    out = tmp_path_factory.mktemp("two_rigl")
    done = torchrun(command(mnist6_root, out, *no_bn(out, "rigl")), out / "records")
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir(out), out / "records"


def assert_matches_one_process(run, records, reference):
    """Identical masks, weights / α / voted model within 1e-5, and the ranks in lock-step."""
    got, ref = load_checkpoint(str(run / "checkpoint.pt")), load_checkpoint(str(reference / "checkpoint.pt"))
    assert_equal(got["masking"]["masks"], ref["masking"]["masks"], "masks")
    assert_close(got["net"], ref["net"], "net")
    assert_close(got["voted"], ref["voted"], "voted")
    for key in ("alpha0", "ewma", "alpha"):                      # α0: the tuned start, from the EWMA
        assert got["tuner"][key] == pytest.approx(ref["tuner"][key], rel=1e-5), key
    assert mask_records(records, 0) == mask_records(records, 1)
    assert [int(step) for step, _ in mask_records(records, 0)] == UPDATE_STEPS


@pytest.mark.slow
def test_two_processes_sparse_moon_keep_every_rank_in_lock_step_and_write_one_results_folder(mnist6_root, tmp_path):
    """The main job (small CNN with BatchNorm, RigL + MOON) in 2 gloo processes."""
    records = tmp_path / "records"
    done = torchrun(command(mnist6_root, tmp_path / "out"), records)
    assert done.returncode == 0, done.stderr[-4000:]
    masks = [mask_records(records, r) for r in (0, 1)]
    assert [int(step) for step, _ in masks[0]] == UPDATE_STEPS
    assert masks[0] == masks[1], "the ranks' masks differ after an update"
    states = [final(records, r) for r in (0, 1)]
    assert_equal(parameters_only(states[0]["net"]), parameters_only(states[1]["net"]), "weights")
    assert_equal(states[0]["masks"], states[1]["masks"], "masks")
    assert states[0]["ewma"] == states[1]["ewma"] and states[0]["alpha"] == states[1]["alpha"] is not None
    # the voted model, its BatchNorm recalibrated from both ranks' data, is the same on both ranks
    assert_equal(states[0]["evaluated"], states[1]["evaluated"], "voted model")
    assert any("running_var" in k for k in states[0]["evaluated"])
    # one results folder, written once (rank 0): one table, one progress bar
    assert [p.parent.name for p in (tmp_path / "out").rglob("ood.csv")] == ["s0"]
    assert done.stdout.count("results written to") == 1
    assert done.stdout.count("FPR@95 with OOD as the positive class") == 1
    saved = load_checkpoint(str(run_dir(tmp_path / "out") / "checkpoint.pt"))
    assert_equal(saved["masking"]["masks"], states[0]["masks"], "saved masks")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rigl", "set"])
def test_two_processes_without_batchnorm_end_where_one_process_ends(method, mnist6_root, tmp_path, request):
    """Same global batch and data order: 2 processes end with the 1-process masks, weights within 1e-5."""
    if method == "rigl":
        run, records = request.getfixturevalue("two_process_rigl")
        reference = request.getfixturevalue("one_process_rigl")
    else:
        torchrun_harness.register_test_network()
        assert main(command(mnist6_root, tmp_path / "one", *no_bn(tmp_path, method))) == 0
        reference, records = run_dir(tmp_path / "one"), tmp_path / "records"
        done = torchrun(command(mnist6_root, tmp_path / "two", *no_bn(tmp_path, method)), records)
        assert done.returncode == 0, done.stderr[-4000:]
        run = run_dir(tmp_path / "two")
    assert_matches_one_process(run, records, reference)


@pytest.mark.slow
def test_two_nodes_of_one_process_each_train_together_to_the_one_process_result(
        mnist6_root, tmp_path, one_process_rigl, two_process_rigl):
    """Two ``torchrun --nnodes 2 --nproc-per-node 1`` launches meeting at a c10d rendezvous on 127.0.0.1."""
    records, endpoint = tmp_path / "records", f"127.0.0.1:{free_port()}"
    args = command(mnist6_root, tmp_path / "out", *no_bn(tmp_path, "rigl"))
    nodes = []
    for node in (0, 1):
        cmd, env = launcher(records / f"node{node}", nproc=1, rdzv=endpoint)
        env["HARNESS_OUT"] = str(records)                      # both nodes record side by side
        nodes.append(start(cmd + args, env))
    outputs = [finish(node) for node in nodes]
    assert [node.returncode for node in outputs] == [0, 0], [node.stderr[-3000:] for node in outputs]
    assert sum(node.stdout.count("results written to") for node in outputs) == 1
    assert_matches_one_process(run_dir(tmp_path / "out"), records, one_process_rigl)
    assert_equal(load_checkpoint(str(run_dir(tmp_path / "out") / "checkpoint.pt"))["net"],
                 load_checkpoint(str(two_process_rigl[0] / "checkpoint.pt"))["net"], "2 nodes vs 2 processes")


@pytest.mark.slow
def test_a_rank_killed_mid_training_stops_the_run_and_torchrun_resumes_it_bitwise(
        mnist6_root, tmp_path, two_process_rigl):
    args = command(mnist6_root, tmp_path / "out", *no_bn(tmp_path, "rigl"))
    killed = torchrun(args, tmp_path / "killed", fault="kill:1:8")    # rank 1 dies at step 8 (epoch 2)
    assert killed.returncode != 0
    assert "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    run = run_dir(tmp_path / "out")
    assert load_checkpoint(str(run / "checkpoint.pt"))["epoch"] == 1
    assert not (run / "best.ckpt").exists() and not (run / "ood.csv").exists()   # rank 0 was stopped too
    resumed = torchrun(args, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resumed from {run / 'checkpoint.pt'} at epoch 1" in resumed.stdout
    reference = two_process_rigl[0]
    for name in ("checkpoint.pt", "best.ckpt", "moon_net.ckpt"):
        assert_same(load_checkpoint(str(run / name)), load_checkpoint(str(reference / name)), name)
    for name in ("ood.csv", "metrics.json"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_masks_that_differ_across_ranks_stop_every_rank_loudly(mnist6_root, tmp_path):
    records = tmp_path / "records"
    done = torchrun(command(mnist6_root, tmp_path / "out"), records, fault="corrupt:1:4")
    assert done.returncode != 0
    message = "the masks differ across ranks after the topology update at step 4"
    assert message in rank_log(records, 0), rank_log(records, 0)[-3000:]     # the healthy rank stops with it
    assert not list((tmp_path / "out").rglob("ood.csv"))
    assert not (run_dir(tmp_path / "out") / "checkpoint.pt").exists()       # stopped in epoch 1 (step 4)


def test_an_error_of_rank_0_before_training_is_raised_by_every_rank(mnist6_root, tmp_path):
    """A run folder holding another config: rank 0 refuses it, and every rank exits 2 with its message."""
    run = tmp_path / "out" / "mnist6_small_cnn_rigl_d0.1_e3_moon" / "s0"
    run.mkdir(parents=True)
    (run / "config.yml").write_text("seed: 1\n")
    records = tmp_path / "records"
    done = torchrun(command(mnist6_root, tmp_path / "out"), records)
    assert done.returncode != 0
    for rank in (0, 1):
        log = rank_log(records, rank)
        assert "error: " in log and "holds a run with another config" in log, f"rank {rank}: {log[-2000:]}"
    assert (run / "config.yml").read_text() == "seed: 1\n"


def test_the_global_batch_is_split_evenly_over_the_processes_or_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert distributed.per_rank_batch(128) == 32
    with pytest.raises(ConfigError, match=r"dataset.train.batch_size 126 is the global batch and must be "
                                          r"divisible by the number of processes \(4\); e.g. 124"):
        distributed.per_rank_batch(126)
