"""Benchmarks (issue 13): training step, topology update, vote, memory, export size, sparse inference
and the main job, printed as ratios side by side. Not part of the tests (no timing is asserted anywhere).

    python scripts/bench.py steps      [--reps 15] [--threads 1]   # dense / sparse / sparse+MOON, plain loop,
                                                                    # OpenOOD's base trainer when importable
    python scripts/bench.py topology   [--reps 7]                   # a RigL update vs a training step
    python scripts/bench.py memory                                  # peak RSS per variant (one process each)
    python scripts/bench.py export                                  # best.ckpt vs best.sparse.pt, checkpoint.pt
    python scripts/bench.py inference  [--reps 5]                   # sparse (CSR) vs dense CPU inference
    python scripts/bench.py hotpaths   [--reps 15]                  # before/after of the faster hot paths
    python scripts/bench.py job        [--reps 1] [--old DIR] [--seeds 0 1 2]  # the main job: wall, breakdown, vote share,
                                                                    # evaluation per postprocessor, peak RSS
    python scripts/bench.py all

Timings are interleaved: every repetition times each variant once, in a rotated order, and a ratio is
taken inside one repetition, so load that changes slowly cancels; each figure is ``median [min–max] n``.
``--device cuda`` (or ``auto`` with a GPU) times on the GPU with ``torch.cuda.synchronize``.
``--old DIR``: a checkout of another commit (``git worktree add /tmp/old acecc38``); ``job`` then
alternates the two checkouts.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
CLOCK = {"now": time.perf_counter}          # --clock cpu: time.process_time (this process's CPU seconds)


def now() -> float:
    return CLOCK["now"]()


def _import_repo(repo: Path = REPO) -> None:
    sys.path.insert(0, str(repo))


# ------------------------------------------------------------------ helpers
def summary(values: List[float], fmt: str = "{:.3f}") -> str:
    """``median [min–max] n``."""
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}] {len(values)}"


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: Dict[str, Callable[[], float]], reps: int) -> Dict[str, List[float]]:
    """Each repetition calls every fn once (rotated order); fn returns seconds."""
    names, out = list(fns), defaultdict(list)
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            out[name].append(fns[name]())
    return out


def ratio_lines(times: Dict[str, List[float]], ref: str, unit: float = 1e3, per: int = 1) -> List[str]:
    lines = []
    for name, ts in times.items():
        ratios = [t / r for t, r in zip(ts, times[ref])]
        lines.append(f"  {name:<26} {summary([t * unit / per for t in ts], '{:.1f}')} ms/step   "
                     f"x{ref}: {summary(ratios)}")
    return lines


def devices(arg: str) -> List[str]:
    import torch

    if arg == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [arg]


# ------------------------------------------------------------------ networks, batches, trainers
NETS = {"small_cnn": {"batch": 128, "shape": (3, 28, 28), "classes": 6},
        "resnet18": {"batch": 32, "shape": (3, 32, 32), "classes": 10}}


def build_net(name: str, moon: bool = False):
    from openood_moon.moon import MoonNet
    from openood_moon.networks import ResNet18_32x32, SmallCNN

    k = NETS[name]["classes"]
    net = SmallCNN(k) if name == "small_cnn" else ResNet18_32x32(k)
    return MoonNet(net) if moon else net


class Batches(list):
    """Fixed batches that look like a DataLoader to both trainers (``len(iter(loader))`` works)."""

    class _It:
        def __init__(self, items):
            self.items, self.i = items, 0

        def __len__(self):
            return len(self.items)

        def __iter__(self):
            return self

        def __next__(self):
            if self.i >= len(self.items):
                raise StopIteration
            self.i += 1
            return self.items[self.i - 1]

    def __iter__(self):
        return Batches._It(self[:])


def make_batches(name: str, n: int, device, as_dict: bool = False, seed: int = 0, batch: int = 0) -> Batches:
    import torch

    spec, g = NETS[name], torch.Generator().manual_seed(seed)
    batch = batch or spec["batch"]
    out = Batches()
    for _ in range(n):
        x = torch.randn(batch, *spec["shape"], generator=g).to(device)
        y = torch.randint(0, spec["classes"], (batch,), generator=g).to(device)
        out.append({"data": x, "label": y} if as_dict else (x, y))
    return out


def moon_trainer(name: str, variant: str, batches, device, interval: int = 10 ** 9, seed: int = 0):
    """MoonTrainer for ``variant`` in dense / sparse / sparse+moon (RigL 90 %, no vote); topology
    updates off unless ``interval`` is given; one warm-up epoch run (MOON's α is then active)."""
    import torch

    from openood_moon.trainer import MoonTrainer

    torch.manual_seed(seed)
    moon = variant == "sparse+moon"
    cfg = {"seed": seed, "optimizer": {"num_epochs": 100_000},
           "sparse": {"method": "dense" if variant == "dense" else "rigl", "density": 0.1,
                      "interval": interval},
           "moon": {"enabled": moon, "warmup_epochs": 1, "vote": False}}
    trainer = MoonTrainer(build_net(name, moon), batches, cfg, device)
    trainer.train_epoch()
    return trainer


def plain_loop(name: str, batches, device, syncs: bool = False, channels_last: bool = False):
    """A plain PyTorch loop (SGD Nesterov, CE): the floor any trainer is compared with. ``syncs``: read
    the loss and the accuracy on the host every step, as a loop printing them would."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = build_net(name).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    batches = [(x.contiguous(memory_format=fmt), y) for x, y in batches]

    def epoch() -> float:
        net.train()
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        total, hits = 0.0, 0
        for x, y in batches:
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if syncs:
                if not torch.isfinite(loss).item():
                    raise FloatingPointError
                total += loss.item() * len(y)
                hits += int((logits.argmax(1) == y).sum())
            else:
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
        return float(loss_sum) + total + int(correct) + hits

    epoch()
    return epoch


def openood_base(name: str, batches, device):
    """OpenOOD's ``BaseTrainer.train_epoch`` on the same batches (None when OpenOOD is not importable)."""
    try:
        from openood_moon.engines.openood import compat

        compat.install_import_stubs()
        from openood.trainers.base_trainer import BaseTrainer
        from openood.utils import Config
    except Exception:  # noqa: BLE001 - any import problem: not available
        return None
    import torch

    if torch.device(device).type == "cpu":
        compat.install_cpu_shim()
    torch.manual_seed(0)
    net = build_net(name).to(device)
    cfg = Config({"optimizer": {"num_epochs": 100, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}})
    trainer = BaseTrainer(net, Batches({"data": x, "label": y} for x, y in batches), cfg)
    import openood.trainers.base_trainer as bt

    bt.tqdm = lambda it, **kw: it                      # no progress bar in a timing
    trainer.train_epoch(0)
    return lambda: trainer.train_epoch(0)


def timed(fn: Callable[[], object], device) -> Callable[[], float]:
    def run() -> float:
        sync(device)
        start = now()
        fn()
        sync(device)
        return now() - start
    return run


# ------------------------------------------------------------------ steps
def bench_steps(args) -> None:
    for device in devices(args.device):
        for name, steps in (("small_cnn", args.steps_small), ("resnet18", args.steps_resnet)):
            if name not in args.nets:
                continue
            batches = make_batches(name, steps, device)
            fns = {v: timed(moon_trainer(name, v, batches, device).train_epoch, device)
                   for v in ("dense", "sparse", "sparse+moon")}
            fns["plain loop"] = timed(plain_loop(name, batches, device), device)
            base = openood_base(name, batches, device)
            if base:
                fns["openood base trainer"] = timed(base, device)
            times = interleaved(fns, args.reps)
            moon_vs_sparse = [m / s for m, s in zip(times["sparse+moon"], times["sparse"])]
            print(f"step time, {name} batch {NETS[name]['batch']}, {device}, {steps} steps per timing, "
                  f"{args.reps} interleaved repetitions:")
            print("\n".join(ratio_lines(times, "dense", per=steps)))
            print(f"  sparse+moon / sparse: {summary(moon_vs_sparse)}  (target <= 1.05)")


# ------------------------------------------------------------------ topology
def bench_topology(args) -> None:
    import torch

    for device in devices(args.device):
        for name in args.nets:
            batches = make_batches(name, 1, device)
            trainer = moon_trainer(name, "sparse", batches, device)
            x, y = batches[0]
            masking, net = trainer.masking, trainer.net
            updates, steps = [], []
            for _ in range(args.reps):
                for kind in ("update", "step"):
                    net.train()
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                    trainer.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    sync(device)
                    start = now()
                    if kind == "update":
                        masking.update_topology(1, trainer.optimizer, masking._grow_scores())
                        masking.mask_gradients()
                    else:
                        masking.step(trainer.optimizer, 2)     # step 2 is no update step (interval huge)
                    sync(device)
                    (updates if kind == "update" else steps).append(now() - start)
            step_times = [timed(trainer.train_epoch, device)() for _ in range(args.reps)]
            interval = 100                                   # settings.py's default
            share = [u / (interval * s) for u, s in zip(updates, step_times)]
            job = [u / (10 * s) for u, s in zip(updates, step_times)]   # configs/pipelines/train/moon.yml
            print(f"topology update (RigL, 90 %), {name}, {device}: update {summary([u * 1e3 for u in updates], '{:.1f}')} ms, "
                  f"optimizer step alone {summary([s * 1e3 for s in steps], '{:.1f}')} ms, whole training step "
                  f"{summary([s * 1e3 for s in step_times], '{:.1f}')} ms")
            print(f"  update / whole step: {summary([u / s for u, s in zip(updates, step_times)])}; "
                  f"share of training at the default interval ({interval} steps): {summary([100 * v for v in share], '{:.2f}')} % "
                  f"(target <= 1 %); at the main job's interval (10): {summary([100 * v for v in job], '{:.2f}')} %")


# ------------------------------------------------------------------ memory
def _memory_child(net: str, variant: str, steps: int) -> None:
    import torch

    torch.set_num_threads(1)
    batches = make_batches(net, 1, "cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer = moon_trainer(net, variant, Batches(batches * steps), "cpu")
    trainer.train_epoch()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "peak_kb": peak}))


def bench_memory(args) -> None:
    for net in args.nets:
        peaks, grown = defaultdict(list), defaultdict(list)
        for _ in range(args.mem_reps):
            for variant in ("dense", "sparse", "sparse+moon"):
                out = subprocess.run([sys.executable, __file__, "_memory", net, variant, "3"], capture_output=True,
                                     text=True, check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                peaks[variant].append(got["peak_kb"] / 1024)
                grown[variant].append((got["peak_kb"] - got["before_kb"]) / 1024)
        ratio = [m / s for m, s in zip(peaks["sparse+moon"], peaks["sparse"])]
        print(f"peak RSS (ru_maxrss, one process per run, 1 thread), {net} batch {NETS[net]['batch']}, 4 steps: "
              + ", ".join(f"{v} {summary(p, '{:.0f}')} MB" for v, p in peaks.items()))
        print("  of which after the imports (network, masks, optimizer, activations): "
              + ", ".join(f"{v} {summary(p, '{:.0f}')} MB" for v, p in grown.items()))
        print(f"  sparse+moon / sparse: {summary(ratio)} (target <= 1.1); sparse / dense: "
              f"{summary([s / d for s, d in zip(peaks['sparse'], peaks['dense'])])}; after the imports, "
              f"sparse+moon / sparse: {summary([m / s for m, s in zip(grown['sparse+moon'], grown['sparse'])])}")


# ------------------------------------------------------------------ export sizes
def _size(obj) -> int:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def bench_export(args) -> None:
    import torch

    from openood_moon.moon.net import export_state_dict
    from openood_moon.sparse_export import compress_state_dict, decompress_state_dict, pack_tree, unpack_tree

    from openood_moon.trainer import MoonTrainer

    batches = make_batches("resnet18", 2, "cpu", seed=1, batch=8)

    torch.manual_seed(0)
    cfg = {"seed": 0, "optimizer": {"num_epochs": 2}, "sparse": {"method": "rigl", "density": 0.1, "interval": 1},
           "moon": {"warmup_epochs": 1, "vote_epochs": 1, "snapshots_per_epoch": 2}}
    trainer = MoonTrainer(build_net("resnet18", moon=True), batches, cfg)
    trainer.fit()                                       # 2 epochs: topology updates, vote, averaged model
    best = export_state_dict(trainer.model_for_eval())
    dense = _size(best)
    full, half = compress_state_dict(best), compress_state_dict(best, half=True)
    exact = all(torch.equal(a, b) for a, b in zip(decompress_state_dict(full).values(), best.values()))
    print(f"90 %-sparse ResNet-18 (density {trainer.masking.density():.4f}) best.ckpt {dense / 1e6:.1f} MB; "
          f"best.sparse.pt fp32 {_size(full) / 1e6:.2f} MB ({100 * _size(full) / dense:.1f} %, bitwise equal "
          f"after loading: {exact}); fp16 {_size(half) / 1e6:.2f} MB ({100 * _size(half) / dense:.1f} %) "
          "(target <= 15 %)")
    state = trainer.state_dict()
    before, after = _size(state), _size(pack_tree(state))
    same = _size(unpack_tree(pack_tree(state))) == before
    print(f"checkpoint.pt of that run (net, momentum, vote mean, averaged model, masks): {before / 1e6:.1f} MB "
          f"dense -> {after / 1e6:.1f} MB packed ({100 * after / before:.1f} %; target <= 30 %; "
          f"unpacks to the same size: {same})")
    for label, fn in (("compress best (fp32)", lambda: compress_state_dict(best)),
                      ("pack checkpoint", lambda: pack_tree(state)),
                      ("unpack checkpoint", lambda: unpack_tree(pack_tree(state)))):
        ts = []
        for _ in range(3):
            start = now()
            fn()
            ts.append(now() - start)
        print(f"  {label}: {summary([t * 1e3 for t in ts], '{:.0f}')} ms")


# ------------------------------------------------------------------ sparse inference
def sparse_copy(net, min_sparsity: float = 0.5):
    """A copy of ``net`` whose conv/linear layers with >= ``min_sparsity`` zeros run as CSR matmuls
    (convs: im2col with ``F.unfold``, then ``W_csr @ columns``)."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    class CSRConv(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv = conv
            self.w = conv.weight.detach().reshape(conv.out_channels, -1).to_sparse_csr()

        def forward(self, x):
            c = self.conv
            b, _, h, w = x.shape
            cols = F.unfold(x, c.kernel_size, c.dilation, c.padding, c.stride)       # B, C·k·k, L
            ho = (h + 2 * c.padding[0] - c.kernel_size[0]) // c.stride[0] + 1
            wo = (w + 2 * c.padding[1] - c.kernel_size[1]) // c.stride[1] + 1
            cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)                   # C·k·k, B·L
            out = (self.w @ cols).reshape(c.out_channels, b, ho * wo).transpose(0, 1)
            out = out.reshape(b, c.out_channels, ho, wo)
            return out if c.bias is None else out + c.bias.view(1, -1, 1, 1)

    class CSRLinear(nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.linear = linear
            self.w = linear.weight.detach().to_sparse_csr()

        def forward(self, x):
            out = (self.w @ x.t()).t()
            return out if self.linear.bias is None else out + self.linear.bias

    out = copy.deepcopy(net)
    for parent in list(out.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                zeros = float((child.weight == 0).float().mean())
                if zeros >= min_sparsity and (not isinstance(child, nn.Conv2d) or child.groups == 1):
                    setattr(parent, child_name, CSRConv(child) if isinstance(child, nn.Conv2d) else CSRLinear(child))
    return out


def bench_inference(args) -> None:
    import torch

    from openood_moon.networks import ResNet18_32x32
    from openood_moon.sparse import Masking

    print(f"inference, ResNet-18 32x32, CPU, {torch.get_num_threads()} thread(s); sparse = CSR matmul for every "
          "layer with >= 50 % zeros (convs via im2col), dense = torch's conv; ratio sparse/dense (< 1: sparse wins)")
    for batch in (1, 16):
        x = torch.randn(batch, 3, 32, 32)
        for density in (0.1, 0.05, 0.02):
            torch.manual_seed(0)
            net = ResNet18_32x32(10).eval()
            Masking(net, "rigl", density)
            sparse = sparse_copy(net).eval()
            with torch.no_grad():
                diff = float((sparse(x) - net(x)).abs().max())
                times = interleaved({"dense": timed(lambda: net(x), "cpu"),
                                     "sparse": timed(lambda: sparse(x), "cpu")}, args.reps)
            ratio = [s / d for s, d in zip(times["sparse"], times["dense"])]
            print(f"  batch {batch:>2}, {100 * (1 - density):.0f} % sparse: dense {summary([t * 1e3 for t in times['dense']], '{:.1f}')} ms, "
                  f"sparse {summary([t * 1e3 for t in times['sparse']], '{:.1f}')} ms, sparse/dense {summary(ratio)} "
                  f"(max |diff| {diff:.1e})")
    # one large layer alone: where the CSR matmul itself stands
    conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False)
    x = torch.randn(16, 512, 4, 4)
    for density in (0.1, 0.05, 0.02, 0.01):
        with torch.no_grad():
            w = conv.weight
            w.mul_((torch.rand(w.shape) < density).float())
            layer = sparse_copy(torch.nn.Sequential(conv))
            times = interleaved({"dense": timed(lambda: conv(x), "cpu"), "sparse": timed(lambda: layer(x), "cpu")},
                                args.reps)
        print(f"  layer4 conv 512x512x3x3 alone, batch 16, {100 * (1 - density):.0f} % sparse: sparse/dense "
              f"{summary([s / d for s, d in zip(times['sparse'], times['dense'])])}")
        conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False)


# ------------------------------------------------------------------ hot paths before/after
def bench_hotpaths(args) -> None:
    import torch
    import torch.nn.functional as F

    from openood_moon.networks import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(6)
    x = torch.randn(128, 3, 28, 28)

    def before(x):                                         # the forward of commit acecc38
        f1 = F.max_pool2d(F.relu(net.bn1(net.conv1(x))), 2)
        f2 = net.pool(F.max_pool2d(F.relu(net.bn2(net.conv2(f1))), 2))
        return net.fc(F.relu(net.fc1(f2.flatten(1))))

    def train(fn):
        def run():
            out = fn(x)
            out.sum().backward()
        return run

    net.train()
    same = torch.equal(before(x), net(x))
    times = interleaved({"before": timed(train(before), "cpu"), "after": timed(train(net), "cpu")}, args.reps)
    print(f"SmallCNN forward+backward, batch 128 (identical outputs: {same}): before "
          f"{summary([t * 1e3 for t in times['before']], '{:.1f}')} ms, after {summary([t * 1e3 for t in times['after']], '{:.1f}')} ms, "
          f"after/before {summary([a / b for a, b in zip(times['after'], times['before'])])}")
    for name, steps in (("small_cnn", args.steps_small), ("resnet18", args.steps_resnet)):
        batches = make_batches(name, steps, "cpu")
        fns = {"device accumulation": timed(plain_loop(name, batches, "cpu"), "cpu"),
               "3 host syncs/step": timed(plain_loop(name, batches, "cpu", syncs=True), "cpu"),
               "channels-last": timed(plain_loop(name, batches, "cpu", channels_last=True), "cpu")}
        times = interleaved(fns, args.reps)
        print(f"plain loop, {name} batch {NETS[name]['batch']}, CPU:")
        print("\n".join(ratio_lines(times, "device accumulation", per=steps)))
    # data loading: one epoch of the embedded benchmark's train loader, batch by batch
    # (ImglistDataset.__getitems__) against item by item (per-item transforms + default_collate)
    from torch.utils.data import DataLoader

    from openood_moon.data.embedded import EMBEDDED_INFO, build_embedded
    from openood_moon.data.imglist import benchmark_loaders

    with tempfile.TemporaryDirectory(prefix="bench-data-") as root:
        build_embedded(root)
        train = benchmark_loaders(EMBEDDED_INFO, root, batch_size=128, seed=0)["id"]["train"]
        itemwise = copy.copy(train.dataset)
        itemwise.__getitems__ = None                       # DataLoader then fetches and collates item by item
        by_item = DataLoader(itemwise, batch_size=128, sampler=train.sampler, generator=train.generator)

        def epoch(loader):
            def run():
                loader.sampler.set_epoch(0)
                for _ in loader:
                    pass
            return run

        train.sampler.set_epoch(0)
        a = [b["data"] for b in train]
        train.sampler.set_epoch(0)
        same = all(torch.equal(x, b["data"]) for x, b in zip(a, by_item))
        times = interleaved({"item by item": timed(epoch(by_item), "cpu"), "batched": timed(epoch(train), "cpu")},
                            args.reps)
        print(f"train loader, one epoch of mnist6 (2250 images, batch 128; identical batches: {same}): item by item "
              f"{summary([t * 1e3 for t in times['item by item']], '{:.0f}')} ms, batched "
              f"{summary([t * 1e3 for t in times['batched']], '{:.0f}')} ms, batched / item by item "
              f"{summary([a / b for a, b in zip(times['batched'], times['item by item'])])}")
    # the masking passes of every non-update step: gradients (needed), then weights and momentum
    # re-masked after the optimizer step (a guarantee for any optimizer; no-ops for SGD on a masked gradient)
    for name in ("small_cnn", "resnet18"):
        t = moon_trainer(name, "sparse", make_batches(name, 1, "cpu"), "cpu")
        masking, optimizer = t.masking, t.optimizer
        t.train_epoch()

        def passes(masking=masking, optimizer=optimizer):
            masking.mask_gradients()
            masking.apply()
            masking.mask_optimizer_state(optimizer)

        times = interleaved({"mask passes": timed(passes, "cpu")}, args.reps)["mask passes"]
        print(f"{name}: masking passes per step (gradients, weights, momentum) "
              f"{summary([x * 1e3 for x in times], '{:.2f}')} ms")


# ------------------------------------------------------------------ the main job
class Probes:
    """Exclusive wall time per labelled function (nested probes are subtracted from their caller)."""

    def __init__(self):
        self.totals, self.counts, self.stack = defaultdict(float), defaultdict(int), []

    def wrap(self, owner, attr: str, label) -> None:
        fn = getattr(owner, attr)
        probes = self

        def wrapper(*a, **k):
            name = label(a) if callable(label) else label
            start = now()
            probes.stack.append([name, 0.0])
            try:
                return fn(*a, **k)
            finally:
                _, inner = probes.stack.pop()
                dt = now() - start
                probes.totals[name] += dt - inner
                probes.counts[name] += 1
                if probes.stack:
                    probes.stack[-1][1] += dt

        setattr(owner, attr, wrapper)

    def parent(self) -> str:
        return self.stack[-1][0] if self.stack else "outside"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _job_child(argv: List[str], probe: bool, out_json: str) -> None:
    start, cpu_start = now(), _cpu_seconds()
    from openood_moon.cli import main

    probes = Probes()
    if probe:
        import torch.utils.data.dataloader as dl

        import openood_moon.engines.standalone.evaluate as sev
        import openood_moon.evaluation.plots as plots
        import openood_moon.run_path as rp
        from openood_moon.engines.standalone.run import StandaloneEngine
        from openood_moon.moon.vote import WeightVote
        from openood_moon.sparse import Masking
        from openood_moon.trainer import MoonTrainer

        probes.wrap(MoonTrainer, "train_epoch", "training steps (forward, loss, backward, SGD, masks)")
        probes.wrap(MoonTrainer, "finalize_vote", "vote: average + BN recalibration pass")
        probes.wrap(WeightVote, "add", "vote: snapshots")
        probes.wrap(Masking, "update_topology", "topology updates")
        probes.wrap(dl._BaseDataLoaderIter, "__next__", lambda a: f"data loading in: {probes.parent()}")
        for name in ("save_checkpoint", "_save"):
            probes.wrap(rp, name, "checkpoint and export writes")
        for name in ("pack_tree", "compress_state_dict"):
            if hasattr(rp, name):
                probes.wrap(rp, name, "checkpoint packing / export compression")
        probes.wrap(StandaloneEngine, "build", "build network and loaders (cached images)")
        probes.wrap(StandaloneEngine, "evaluate", "evaluation: other")
        probes.wrap(sev, "collect_outputs", "evaluation: forward passes (all postprocessors)")
        probes.wrap(sev.metrics, "ood_metrics", "evaluation: metrics")
        build = sev.build_postprocessor

        def built(name, net, **kwargs):
            pp = build(name, net, **kwargs)
            probes.wrap(pp, "fit", f"evaluation: {name} fit")
            probes.wrap(pp, "confidence", f"evaluation: {name} scores")
            return pp

        sev.build_postprocessor = built
        for name in ("plot_score_histograms", "plot_roc_curves"):
            probes.wrap(plots, name, "plots")
        probes.wrap(rp, "write_run_tables", "result tables")
    imported, cpu_imported = now(), _cpu_seconds()
    code = main(argv)
    end = now()
    Path(out_json).write_text(json.dumps({
        "code": code, "import_s": imported - start, "run_s": end - imported,
        "cpu_s": _cpu_seconds() - cpu_start, "run_cpu_s": _cpu_seconds() - cpu_imported,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parts": dict(probes.totals), "counts": dict(probes.counts)}))


def _job_results(ood_csv: Path) -> Dict[str, float]:
    """ID ACC and the ``moon`` score's near / far AUROC of a run's ``ood.csv`` (either checkout's layout:
    a ``postprocessor`` column, or postprocessor and dataset as the first two columns)."""
    import pandas as pd

    table = pd.read_csv(ood_csv)
    pp, ds = ("postprocessor", "dataset") if "postprocessor" in table.columns else tuple(table.columns[:2])
    moon = table[table[pp] == "moon"].set_index(ds)
    return {"ACC": float(moon["ACC"].iloc[0]), "moon near AUROC": float(moon.loc["nearood", "AUROC"]),
            "moon far AUROC": float(moon.loc["farood", "AUROC"])}


def _print_seed_noise(results) -> None:
    """Results of the two checkouts, paired by seed (first repetition of each seed): now − old with a
    95 % t-interval (:func:`openood_moon.study.stats.paired_interval`) beside the seeds' std."""
    first = {label: {r["seed"]: r["results"] for r in reversed(runs)} for label, runs in results.items()}
    seeds = sorted(set(first["now"]) & set(first["old"]))
    if len(seeds) < 2:
        return
    from openood_moon.study.stats import paired_interval

    print(f"results, seeds {seeds} (mean ± std over seeds; now − old paired by seed, 95 % t-interval):")
    for key in first["now"][seeds[0]]:
        now_v = [first["now"][s][key] for s in seeds]
        old_v = [first["old"][s][key] for s in seeds]
        print(f"  {key:<16} now {statistics.mean(now_v):6.2f} ± {statistics.stdev(now_v):4.2f}   "
              f"old {statistics.mean(old_v):6.2f} ± {statistics.stdev(old_v):4.2f}   "
              f"now − old {paired_interval(now_v, old_v)}")


def bench_job(args) -> None:
    checkouts = [("now", REPO)] + ([("old", Path(args.old).resolve())] if args.old else [])
    data = Path(tempfile.mkdtemp(prefix="bench-data-"))
    roots = {}
    for label, repo in checkouts:                         # each checkout's own benchmark build, untimed
        roots[label] = data / label
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from openood_moon."
                        "data.embedded import build_embedded; build_embedded(sys.argv[2])", str(repo),
                        str(roots[label])], cwd=repo, check=True, capture_output=True)
    results = defaultdict(list)
    for r in range(args.reps):
        seed = args.seeds[r % len(args.seeds)]          # both checkouts run the same seed in a repetition
        for label, repo in (checkouts if r % 2 == 0 else checkouts[::-1]):
            with tempfile.TemporaryDirectory(prefix="bench-job-") as out:
                js = Path(out) / "timing.json"
                argv = ["--config", "configs/pipelines/train/moon.yml", "--engine", "standalone", "--seed", str(seed),
                        "--output_dir", out, "--dataset.data_root", str(roots[label])] + args.job_args
                env = {**os.environ, "PYTHONPATH": str(repo)}
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "_job", str(repo), js.as_posix(),
                                       "probe" if label == "now" else "plain", args.clock, *argv], cwd=repo, env=env,
                                      capture_output=True, text=True)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-3000:])
                    raise SystemExit(f"main job failed in {repo}")
                got = json.loads(js.read_text())
                got["wall_s"] = wall
                run = next(Path(out).glob(f"*/s{seed}"))
                got["files"] = {p.name: p.stat().st_size for p in run.iterdir() if p.is_file()}
                got["seed"], got["results"] = seed, _job_results(run / "ood.csv")
                got["table"] = [line for line in proc.stdout.splitlines() if line.startswith(("ID:", "moon", "msp"))]
                results[label].append(got)
                print(f"[{label}] seed {seed}: wall {wall:.1f} s, CPU {got['cpu_s']:.1f} s, peak {got['peak_mb']:.0f} MB, "
                      + ", ".join(f"{k} {v:.2f}" for k, v in got["results"].items()), flush=True)
    for label, runs in results.items():
        print(f"main job ({label}: {checkouts[0][1] if label == 'now' else args.old}), {len(runs)} run(s): "
              f"wall {summary([r['wall_s'] for r in runs], '{:.1f}')} s, CPU (user+sys) "
              f"{summary([r['cpu_s'] for r in runs], '{:.1f}')} s, peak RSS "
              f"{summary([r['peak_mb'] for r in runs], '{:.0f}')} MB, imports {summary([r['import_s'] for r in runs], '{:.1f}')} s")
        print("  files: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(runs[-1]["files"].items())
                                      if v > 10_000))
        for line in runs[-1]["table"][:3]:
            print("  " + line)
        if runs[-1]["parts"]:
            wall = statistics.median(r["run_s"] for r in runs)          # in the --clock's seconds
            parts = defaultdict(list)
            for r in runs:
                for k, v in r["parts"].items():
                    parts[k].append(v)
            print(f"  breakdown of the run ({wall:.1f} s after imports, {args.clock} clock), exclusive seconds "
                  "(median over runs):")
            for k, v in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
                med = statistics.median(v)
                print(f"    {k:<62} {med:7.2f} s  {100 * med / wall:5.1f} %")
            train = sum(statistics.median(v) for k, v in parts.items()
                        if k.startswith(("training steps", "topology", "vote", "data loading in: training",
                                         "data loading in: vote")))
            vote = sum(statistics.median(v) for k, v in parts.items() if "vote" in k)
            print(f"  vote (snapshots + average + BN pass incl. its data loading) / training incl. vote: "
                  f"{100 * vote / train:.2f} % (target <= 3 %)")
    shutil.rmtree(data, ignore_errors=True)
    if len(results) == 2:
        for key, what in (("wall_s", "wall"), ("cpu_s", "CPU (user+sys)")):
            ratio = [a[key] / b[key] for a, b in zip(results["now"], results["old"])]
            print(f"main job {what} now / old: {summary(ratio)} (target <= 0.65)")
        _print_seed_noise(results)


# ------------------------------------------------------------------ entry point
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_memory":
        _import_repo()
        _memory_child(argv[1], argv[2], int(argv[3]))
        return 0
    if argv and argv[0] == "_job":
        _import_repo(Path(argv[1]))
        if argv[4] == "cpu":
            CLOCK["now"] = time.process_time
        _job_child(argv[5:], argv[3] == "probe", argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["steps", "topology", "memory", "export", "inference", "hotpaths", "job", "all"])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--mem-reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the in-process timings")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (both when a GPU is there)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: perf_counter; cpu: process_time, this process's CPU seconds (robust to other "
                        "processes on a loaded machine; with --threads 1 and a CPU device only)")
    p.add_argument("--steps-small", type=int, default=10)
    p.add_argument("--steps-resnet", type=int, default=3)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS),
                   help="networks for steps, topology and memory")
    p.add_argument("--old", default=None, help="another checkout for `job` (alternated with this one)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="`job`: repetition r runs seed seeds[r %% len(seeds)] in both checkouts")
    p.add_argument("--job-args", nargs=argparse.REMAINDER, default=[], help="extra main.py arguments")
    args = p.parse_args(argv)
    _import_repo()
    import torch

    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if args.device != "cpu":
            raise SystemExit("--clock cpu times CPU work only: use it with --device cpu")
        CLOCK["now"] = time.process_time
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), clock {args.clock}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    chosen = ["steps", "topology", "memory", "export", "inference", "hotpaths", "job"] if args.what == "all" \
        else [args.what]
    for what in chosen:
        globals()[f"bench_{what}"](args)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
