"""scripts/eval_ood.py's load_network refuses a truncated, foreign or code-carrying checkpoint and one of
another network or K, saying what differs (exit 2 through main); loads are weights_only."""
import os

import pytest
import torch

from openood_moon.networks import build_network

pytestmark = [pytest.mark.openood, pytest.mark.usefixtures("registered")]

RUN_CFG = {"network": {"name": "small_cnn", "in_channels": 3}}


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def write(run, kind):
    run.mkdir(parents=True, exist_ok=True)
    path = run / "best.ckpt"
    good = build_network("small_cnn", 6, in_channels=3).state_dict()
    if kind == "truncated":
        torch.save(good, str(path))
        path.write_bytes(path.read_bytes()[:4000])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "code":
        torch.save({"w": Evil()}, str(path))
    elif kind == "training checkpoint":
        torch.save({"net": good, "epoch": 3, "settings": {}}, str(path))
    elif kind == "other K":
        torch.save(build_network("small_cnn", 10, in_channels=3).state_dict(), str(path))
    elif kind == "other network":
        torch.save(build_network("resnet18_32x32", 6).state_dict(), str(path))
    else:
        torch.save(good, str(path))


@pytest.mark.parametrize("kind,message", [
    ("truncated", "is truncated or not a torch checkpoint"),
    ("text", "is truncated or not a torch checkpoint"),
    ("code", "holds objects other than tensors and plain Python values; refused, as checkpoints are loaded "
             "weights only"),
    ("training checkpoint", "a state_dict"),       # "is not a state_dict" / read_state_dict: "neither a state_dict"
    ("other K", "does not fit network 'small_cnn' (K=6): weights: other shape fc.weight (10, "),
    ("other network", "does not fit network 'small_cnn' (K=6): weights: missing "),
])
def test_load_network_refuses_bad_checkpoints_saying_what_differs(tmp_path, kind, message):
    from openood_moon.engines.openood.evaluate import EvalError, load_network, network_section

    write(tmp_path / "s0", kind)
    with pytest.raises(EvalError) as err:
        load_network(str(tmp_path / "s0"), network_section(RUN_CFG, None, 6))
    assert message in str(err.value) and str(tmp_path / "s0" / "best.ckpt") in str(err.value)


def test_load_network_loads_the_right_weights(tmp_path):
    from openood_moon.engines.openood.evaluate import load_network, network_section

    write(tmp_path / "s0", "good")
    net, name = load_network(str(tmp_path / "s0"), network_section(RUN_CFG, None, 6))
    assert name == "best.ckpt"
    saved = torch.load(str(tmp_path / "s0" / "best.ckpt"), weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())


def test_eval_ood_exits_2_for_a_checkpoint_of_another_k(tmp_path, mnist6_data, capsys):
    import yaml

    from openood_moon.engines.openood import compat
    from openood_moon.engines.openood.evaluate import main

    write(tmp_path / "s0", "other K")
    (tmp_path / "s0" / "config.yml").write_text(yaml.safe_dump(RUN_CFG))
    shim = compat.cpu_shim_active()
    try:
        code = main(["--root", str(tmp_path), "--postprocessor", "msp", "--id-data", "mnist6",
                     "--data-root", str(mnist6_data), "--num-workers", "0"])
    finally:
        if not shim:
            compat.uninstall_cpu_shim()
    err = capsys.readouterr().err
    assert code == 2 and "error: " in err and "weights: other shape fc.weight (10, " in err, err
