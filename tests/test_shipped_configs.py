"""Run names and the OpenOOD-style assets: configs/networks/moon.yml, the test_ood pipeline config and
scripts/ood/moon/*.sh (their stacks load, and each test script reads what its train script writes)."""
import glob
import os
import shlex
import subprocess

import pytest

from openood_moon.config import CONFIGS_ROOT, load_config
from openood_moon.job_config import job_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts", "ood", "moon")
NAME_KEYS = {"optimizer": {"num_epochs": 20}, "sparse": {"method": "rigl", "density": 0.1}}


def _name(*files):
    """exp_name of moon.yml + ``files`` over the embedded dataset and the small CNN."""
    stack = ["datasets/mnist6/mnist6.yml", "networks/small_cnn.yml", "pipelines/train/moon.yml", *files]
    return load_config([os.path.join(CONFIGS_ROOT, f) for f in stack], base=NAME_KEYS)["exp_name"]


def test_dense_runs_are_named_without_a_density():
    assert _name() == "mnist6_small_cnn_rigl_d0.1_e20_moon/s0"
    assert _name("pipelines/train/dense.yml") == "mnist6_small_cnn_dense_e20_dense/s0"
    assert _name("masking/dense.yml") == "mnist6_small_cnn_dense_e20_moon/s0"            # dense + MOON
    assert _name("pipelines/train/sparse.yml") == "mnist6_small_cnn_rigl_d0.1_e20_sparse/s0"


def test_moon_network_and_test_pipeline_stack_as_openoods_test_ood():
    cfg = job_config(["configs/networks/moon.yml", "configs/pipelines/test/test_ood_moon.yml",
                      "configs/postprocessors/moon.yml"],
                     ["--network.backbone.name", "small_cnn", "--network.checkpoint", "run/moon_net.ckpt"])
    net = cfg["network"]
    assert net["name"] == "moon" and net["num_classes"] == 6 and net["pretrained"] is True
    assert net["checkpoint"] == "run/moon_net.ckpt"
    assert net["backbone"]["name"] == "small_cnn" and net["backbone"]["num_classes"] == 6
    assert cfg["pipeline"]["name"] == "test_ood" and cfg["evaluator"] == {"name": "ood", "ood_scheme": "ood"}
    assert cfg["merge_option"] == "merge"                       # OpenOOD's 'default' would ask on stdin
    assert cfg["exp_name"] == "mnist6_moon_test_ood_ood_moon_default/s0/ood"


def _main_py_args(script):
    """The arguments of every ``python <file>.py ...`` command in ``script`` (line continuations joined)."""
    with open(script) as f:
        text = f.read().replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in text.splitlines()]
    return {c[1]: c[2:] for c in commands if len(c) > 1 and c[0] == "python"}


def _job(args):
    configs, overrides = [], []
    i = args.index("--config") + 1
    while i < len(args) and not args[i].startswith("--"):
        configs.append(args[i])
        i += 1
    rest = args[i:]
    for j in range(0, len(rest), 2):
        if rest[j] != "--engine":
            overrides += rest[j:j + 2]
    assert all(os.path.isfile(os.path.join(REPO, c)) for c in configs), configs
    return job_config(configs, overrides), rest[rest.index("--engine") + 1]


@pytest.mark.parametrize("ds,k", [("cifar10", 10), ("cifar100", 100)])
def test_ood_scripts_train_and_test_the_same_run(ds, k):
    train_script, test_script = (os.path.join(SCRIPTS, f"{ds}_{kind}_moon.sh") for kind in ("train", "test"))
    for script in (train_script, test_script):
        assert subprocess.run(["bash", "-n", script]).returncode == 0
    train, engine = _job(_main_py_args(train_script)["main.py"])
    assert engine == "openood" and train["pipeline"]["name"] == "train_moon"
    assert train["network"]["name"] == "resnet18_32x32" and train["dataset"]["num_classes"] == k
    run_dir = os.path.join("./results", train["exp_name"])
    test_commands = _main_py_args(test_script)
    test, engine = _job(test_commands["main.py"])
    assert engine == "openood" and test["pipeline"]["name"] == "test_ood"
    assert test["network"]["name"] == "moon" and test["network"]["backbone"]["name"] == "resnet18_32x32"
    assert test["network"]["checkpoint"] == os.path.join(run_dir, "moon_net.ckpt")
    assert test["dataset"]["name"] == ds and test["ood_dataset"]["name"] == f"{ds}_ood"
    eval_args = test_commands["scripts/eval_ood.py"]
    assert eval_args[eval_args.index("--root") + 1] == os.path.dirname(run_dir)
    assert sorted(glob.glob(os.path.join(SCRIPTS, "*.sh"))) == sorted(
        os.path.join(SCRIPTS, f"{d}_{kind}_moon.sh") for d in ("cifar10", "cifar100") for kind in ("test", "train"))
