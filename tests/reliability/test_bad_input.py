"""Every bad input — settings, config files, data keys, checkpoints, a run folder in use — exits 2 with
a message naming the key (or file), the value and what is allowed; never a traceback.

Most cases run ``openood_moon.cli.main`` in-process; two run ``main.py`` in a subprocess.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from openood_moon.checkpoint import save_checkpoint
from openood_moon.cli import main
from openood_moon.engines.standalone.run import StandaloneEngine, build_model
from openood_moon.job_config import job_config
from openood_moon.settings import TrainSettings

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--engine", "standalone", "--dataset.subset", "300", "--optimizer.num_epochs", "3",
        "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1", "--evaluation.postprocessors", "[msp]",
        "--evaluation.plots", "false"]
RUN = "mnist6_small_cnn_rigl_d0.1_e3_moon/s0"

SETTINGS_CASES = [  # (overrides, message)
    (["--moon.alpha_final", "-1"], "moon.alpha_final must be a number > 0, got -1.0"),
    (["--moon.alpha_final", "0"], "moon.alpha_final must be a number > 0, got 0.0"),
    (["--moon.init_factor", "0"], "moon.init_factor must be a number > 0, got 0.0"),
    (["--moon.ewma_mu", "1.5"], "moon.ewma_mu must be in (0, 1], got 1.5"),
    (["--moon.ewma_mu", "0"], "moon.ewma_mu must be in (0, 1], got 0.0"),
    (["--moon.warmup_epochs", "0"], "moon.warmup_epochs (0) must be in [1, optimizer.num_epochs=3)"),
    (["--moon.warmup_epochs", "3"], "moon.warmup_epochs (3) must be in [1, optimizer.num_epochs=3)"),
    (["--moon.vote_epochs", "3"], "moon.vote_epochs (3) must be in [1, optimizer.num_epochs=3)"),
    (["--moon.warmup_epochs", "2", "--moon.vote_epochs", "2"],
     "moon.warmup_epochs + moon.vote_epochs (4) must be <= optimizer.num_epochs=3"),
    (["--moon.vote", "false", "--moon.vote_epochs", "-1"], "moon.vote_epochs must be an integer >= 0, got -1"),
    (["--moon.snapshots_per_epoch", "0"], "moon.snapshots_per_epoch must be an integer >= 1, got 0"),
    (["--moon.vote", "maybe"], "--moon.vote expects true/false, got 'maybe'"),
    (["--moon.alpha_finale", "1"], "did you mean 'alpha_final'"),
    (["--sparse.density", "0"], "sparse.density must be in (0, 1], got 0.0"),
    (["--sparse.density", "1.5"], "sparse.density must be in (0, 1], got 1.5"),
    (["--sparse.drop_fraction", "1"], "sparse.drop_fraction must be in [0, 1), got 1.0"),
    (["--sparse.interval", "0"], "sparse.interval must be an integer >= 1 (steps), got 0"),
    (["--sparse.end", "1.2"], "sparse.end must be a fraction of training in [0, 1], got 1.2"),
    (["--sparse.init", "random"], "unknown sparse.init 'random'; valid choices: erk, uniform"),
    (["--sparse.method", "snip"], "unknown sparse.method 'snip'; valid choices: dense, static, set, rigl"),
    (["--optimizer.lr", "0"], "optimizer.lr must be a number > 0, got 0.0"),
    (["--optimizer.lr", "-0.1"], "optimizer.lr must be a number > 0, got -0.1"),
    (["--optimizer.lr_end", "-0.5"], "optimizer.lr_end must be a number >= 0"),
    (["--optimizer.momentum", "1"], "optimizer.momentum must be in [0, 1), got 1.0"),
    (["--optimizer.momentum", "0"], "optimizer.nesterov must be false when optimizer.momentum is 0"),
    (["--optimizer.weight_decay", "-0.0005"], "optimizer.weight_decay must be a number >= 0, got -0.0005"),
    (["--optimizer.num_epochs", "0"], "optimizer.num_epochs must be an integer in [1, 100000], got 0"),
    (["--optimizer.num_epochs", "1000000000"], "optimizer.num_epochs must be an integer in [1, 100000], got 1000000000"),
    (["--optimizer.num_epochs", "2.5"], "--optimizer.num_epochs expects a int, got '2.5'"),
    (["--evaluation.postprocessors", "[]"], "evaluation.postprocessors must be a non-empty list of postprocessor"),
    (["--evaluation.postprocessors", "[msp, msp]"], "evaluation.postprocessors must be listed once each"),
    (["--evaluation.postprocessors", "[msp, 3]"], "evaluation.postprocessors must be a non-empty list of"),
    (["--evaluation.postprocessor_args", "{knn: 5}"], "evaluation.postprocessor_args.knn must be a mapping"),
    (["--evaluation.batch_size", "-1"], "evaluation.batch_size must be an integer >= 0"),
    (["--seed", "-1"], "seed must be an integer in [0, 2**32), got -1"),
    (["--seed", "4294967296"], "seed must be an integer in [0, 2**32), got 4294967296"),
    (["--dataset.subset", "0"], "dataset.subset must be null (every item) or an integer >= 1"),
    (["--dataset.subset", "-5"], "dataset.subset must be null (every item) or an integer >= 1 (the first N "
                                 "items of every list), got -5"),
    (["--dataset.train.batch_size", "0"], "dataset.train.batch_size must be an integer >= 1, got 0"),
    (["--dataset.test.batch_size", "-4"], "dataset.test.batch_size must be an integer >= 1, got -4"),
]

YAML_CASES = [  # (a config file stacked last, no overrides, message)
    ("moon: 5\n", "moon must be a mapping of keys to values, got 5"),
    ("evaluation: {plots: 'no'}\n", "evaluation.plots must be true or false, got 'no'"),
    ("optimizer: {nesterov: 1}\n", "optimizer.nesterov must be true or false, got 1"),
    ("optimizer: {lr: abc}\n", "optimizer.lr must be a finite number, got 'abc'"),
    ("sparse: {density: .nan}\n", "sparse.density must be a finite number, got nan"),
    ("moon: {alpha_final: true}\n", "moon.alpha_final must be a number, got True"),
    ("moon: {snapshots_per_epoch: 1.5}\n", "moon.snapshots_per_epoch must be an integer, got 1.5"),
    ("evaluation: {resume: 'no'}\n", "evaluation.resume must be true or false, got 'no'"),
    ("evaluation: {postprocessors: msp}\n", "evaluation.postprocessors must be a list, got 'msp'"),
    ("evaluation: {postprocessor_args: {knn: [5]}}\n", "evaluation.postprocessor_args.knn must be a mapping"),
    ("sparse: {method: 3}\n", "sparse.method must be a string, got 3"),
    ("seed: [1]\n", "seed must be an integer, got [1]"),
]


def command(data_root, out):
    return ARGS + ["--dataset.data_root", str(data_root), "--output_dir", str(out)]


def exits_2(argv, capsys, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert message in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("overrides,message", SETTINGS_CASES, ids=[" ".join(c[0]) for c in SETTINGS_CASES])
def test_bad_settings_exit_2_naming_key_value_and_range(overrides, message, mnist6_root, tmp_path, capsys):
    exits_2(command(mnist6_root, tmp_path) + overrides, capsys, message)


@pytest.mark.parametrize("text,message", YAML_CASES, ids=[c[0].strip() for c in YAML_CASES])
def test_bad_config_files_exit_2_naming_key_value_and_type(text, message, mnist6_root, tmp_path, capsys):
    (tmp_path / "bad.yml").write_text(text)
    exits_2(["--engine", "standalone", "--config", "configs/pipelines/train/moon.yml", str(tmp_path / "bad.yml"),
             "--dataset.data_root", str(mnist6_root), "--output_dir", str(tmp_path)], capsys, message)


# ------------------------------------------------------------------ checkpoints of another run


@pytest.fixture(scope="module")
def resumable(mnist6_root, tmp_path_factory):
    """A run folder ready to resume (its config.yml as the run path writes it) and a genuine training
    state of that run (the untrained trainer's), to damage case by case."""
    out = tmp_path_factory.mktemp("resumable")
    cfg = job_config([], command(mnist6_root, out)[2:])
    settings = TrainSettings.from_config(cfg)
    engine = StandaloneEngine(cfg)
    cfg, run_dir = engine.resolve(settings)
    net, loader, device = engine.build(settings)
    state = engine.make_trainer(net, loader, settings, device).state_dict()
    return {"out": out, "run_dir": Path(run_dir), "cfg": cfg, "settings": settings,
            "state": copy.deepcopy(state)}


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def damaged(kind, r):
    """The bytes of checkpoint.pt for case ``kind``."""
    state = copy.deepcopy(r["state"])
    if kind == "truncated":
        save_checkpoint(state, str(r["out"] / "whole.pt"))
        return (r["out"] / "whole.pt").read_bytes()[:5000]
    if kind == "text":
        return b"epoch: 3\n"
    if kind == "weights only":                      # best.ckpt copied over checkpoint.pt
        state = {k: v for k, v in state["net"].items()}
    elif kind == "code":
        state["net"] = Evil()
    elif kind == "other density":
        state["settings"]["sparse"]["density"] = 0.05
    elif kind == "other architecture":
        other = dict(r["cfg"], network={"name": "resnet18_32x32", "num_classes": 6})
        state["net"] = build_model(other, r["settings"]).state_dict()
    elif kind == "other K":
        other = dict(r["cfg"], network={**r["cfg"]["network"], "num_classes": 10})
        state["net"] = build_model(other, r["settings"]).state_dict()
    elif kind == "denser masks":
        state["masking"]["masks"] = {k: torch.ones_like(m) for k, m in state["masking"]["masks"].items()}
    elif kind == "missing mask":
        state["masking"]["masks"].popitem()
    elif kind == "other optimizer":
        state["optimizer"]["param_groups"] = []
    path = r["out"] / "damaged.pt"
    torch.save(state, str(path))
    return path.read_bytes()


CHECKPOINT_CASES = [
    ("truncated", "is truncated or not a torch checkpoint"),
    ("text", "is truncated or not a torch checkpoint"),
    ("weights only", "does not belong to this run: not a training checkpoint"),
    ("code", "holds objects other than tensors and plain Python values; refused, as checkpoints are loaded "
             "weights only"),
    ("other density", "trained with other settings: sparse.density (0.05 in the checkpoint vs 0.1)"),
    ("other architecture", "network (other architecture or K?): missing"),
    ("other K", "network (other architecture or K?): other shape backbone.fc.weight (10, "),
    ("denser masks", "masks: density 1.0000 in the checkpoint vs 0.1000"),
    ("missing mask", "masks: missing "),
    ("other optimizer", "does not belong to this run: loaded state dict has a different number of"),
]


@pytest.mark.parametrize("kind,message", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_a_checkpoint_of_another_run_is_refused_saying_what_differs(kind, message, resumable, capsys):
    r = resumable
    run_dir = r["run_dir"]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config.yml", "w") as f:
        yaml.safe_dump(r["cfg"], f, sort_keys=False)
    (run_dir / "checkpoint.pt").write_bytes(damaged(kind, r))
    err = exits_2(command(Path(r["cfg"]["dataset"]["data_root"]), r["out"]), capsys, message)
    assert "or pass --evaluation.resume false to retrain there from scratch" in err


def test_a_run_folder_in_use_is_refused_with_the_holders_pid(mnist6_root, tmp_path, capsys):
    folder = tmp_path / RUN
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from openood_moon.run_lock import "
                               "RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        exits_2(command(mnist6_root, tmp_path), capsys, f"is in use by another run (pid {holder.pid} on host")
    finally:
        holder.kill()
        holder.wait()


def test_main_py_exits_2_for_a_negative_alpha_and_a_truncated_checkpoint(mnist6_root, tmp_path):
    """The same through ``python main.py`` (two processes at once)."""
    truncated = tmp_path / "b"
    first = command(mnist6_root, tmp_path / "a") + ["--moon.alpha_final", "-1"]
    second = command(mnist6_root, truncated)
    cfg = job_config([], second[2:])
    run_dir = truncated / RUN
    run_dir.mkdir(parents=True)
    with open(run_dir / "config.yml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    procs = [subprocess.Popen([sys.executable, "main.py", *argv], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in (first, second)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], [o[1][-2000:] for o in outs]
    assert "error: moon.alpha_final must be a number > 0, got -1.0" in outs[0][1]
    assert f"error: {run_dir / 'checkpoint.pt'} is truncated or not a torch checkpoint" in outs[1][1]
    assert all("Traceback" not in o[1] for o in outs)
