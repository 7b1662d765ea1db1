import torch

from openood_moon.data.digits import digits_benchmark, digits_loaders


def test_digits_benchmark_shapes_split_and_labels():
    bench = digits_benchmark()
    x, y = bench["id"]["train"].tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1
    sizes = {s: len(bench["id"][s]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1083 and sizes["test"] > sizes["val"] > 0  # digits 0-5 of 1797
    for split in ("train", "test"):
        counts = torch.bincount(bench["id"][split].tensors[1], minlength=6)
        assert len(counts) == 6 and counts.min() > 0.9 * counts.max() - 2  # stratified
    rows = {tuple(r.flatten().tolist()) for r in bench["id"]["train"].tensors[0]}
    assert not rows & {tuple(r.flatten().tolist()) for r in bench["id"]["test"].tensors[0]}
    near = bench["ood"]["near"]["digits6789"].tensors[1]
    assert len(near) == 1797 - 1083 and (near == -1).all()
    assert (bench["ood"]["far"]["noise"].tensors[1] == -1).all()


def test_digits_split_is_fixed_and_loader_seeded():
    a, b = digits_benchmark(), digits_benchmark()
    assert torch.equal(a["id"]["test"].tensors[0], b["id"]["test"].tensors[0])
    l1, l2 = digits_loaders(batch_size=32, seed=3), digits_loaders(batch_size=32, seed=3)
    x1, y1 = next(iter(l1["id"]["train"]))
    x2, _ = next(iter(l2["id"]["train"]))
    assert x1.shape == (32, 1, 8, 8) and torch.equal(x1, x2) and y1.max() <= 5
    l1["id"]["train"].sampler.set_epoch(1)
    assert not torch.equal(next(iter(l1["id"]["train"]))[0], x1)
    small = digits_loaders(subset=10)
    assert len(small["id"]["train"].dataset) == 10 and len(small["ood"]["far"]["noise"].dataset) == 10
