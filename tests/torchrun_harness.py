"""``main.py`` as the multi-process tests launch it (``torchrun … tests/torchrun_harness.py <main.py args>``,
or in-process through :func:`register_test_network`), with records and faults for the tests.

* ``small_cnn_nobn``: the small CNN without BatchNorm (every per-sample computation independent of the
  other samples in the batch, so W processes and one process compute the same steps).
* ``HARNESS_OUT=<dir>``: after every topology update each rank appends ``<step> <sha256 of its masks>``
  to ``masks.rank<r>.txt``, read from the masks themselves (not the guard's checksum); after training
  each rank saves ``final.rank<r>.pt`` (weights, masks, α and its EWMA, the evaluated model).
* ``HARNESS_FAULT=<kind>:<rank>:<step>`` on that rank at that training step: ``kill`` SIGKILLs itself
  (after the step's backward, before its update), ``raise`` raises RuntimeError, ``corrupt`` moves one
  active weight of its masks right after the step's topology update.
"""
import hashlib
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from openood_moon.engines.standalone.run import StandaloneEngine
from openood_moon.networks import NETWORKS, SmallCNN
from openood_moon.sparse import Masking


class SmallCNNNoBN(SmallCNN):
    """SmallCNN with its BatchNorm layers replaced by identities."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bn1, self.bn2 = nn.Identity(), nn.Identity()


def register_test_network():
    NETWORKS.setdefault("small_cnn_nobn", SmallCNNNoBN)


def mask_digest(masks) -> str:
    h = hashlib.sha256()
    for name, mask in masks.items():
        h.update(name.encode())
        h.update(mask.to(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def install_hooks(out: Path, fault: str = "") -> None:
    kind, fault_rank, fault_step = (fault.split(":") + ["", "", ""])[:3] if fault else ("", "-1", "-1")
    fault_rank, fault_step = int(fault_rank), int(fault_step)
    mine = _rank() == fault_rank
    step, update = Masking.step, Masking.update_topology

    def faulty_step(self, optimizer, t):
        if mine and t == fault_step and kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mine and t == fault_step and kind == "raise":
            raise RuntimeError(f"injected failure on rank {fault_rank} at step {t}")
        return step(self, optimizer, t)

    def recorded_update(self, t, optimizer, scores):
        counts = update(self, t, optimizer, scores)
        if mine and t == fault_step and kind == "corrupt":      # move one active weight
            mask = next(iter(self.masks.values())).view(-1)
            on, off = mask.nonzero()[0, 0], (~mask).nonzero()[0, 0]
            mask[on], mask[off] = False, True
        with open(out / f"masks.rank{_rank()}.txt", "a") as f:
            f.write(f"{t} {mask_digest(self.masks)}\n")
        return counts

    Masking.step, Masking.update_topology = faulty_step, recorded_update
    trainers = []
    make_trainer, after_training = StandaloneEngine.make_trainer, StandaloneEngine.after_training

    def captured_trainer(self, *args, **kwargs):
        trainers.append(make_trainer(self, *args, **kwargs))
        return trainers[-1]

    def saved_final_state(self, model, is_main):
        t = trainers[-1]
        torch.save({"net": t.module.state_dict(), "masks": dict(t.masking.masks),
                    "alpha": t.tuner.alpha if t.tuner else None, "alpha0": t.tuner.alpha0 if t.tuner else None,
                    "ewma": t.tuner.ewma if t.tuner else None,
                    "evaluated": model.state_dict()}, out / f"final.rank{_rank()}.pt")
        return after_training(self, model, is_main)

    StandaloneEngine.make_trainer, StandaloneEngine.after_training = captured_trainer, saved_final_state


if __name__ == "__main__":
    from openood_moon.cli import main

    register_test_network()
    if os.environ.get("HARNESS_OUT"):
        install_hooks(Path(os.environ["HARNESS_OUT"]), os.environ.get("HARNESS_FAULT", ""))
    sys.exit(main(sys.argv[1:]))
