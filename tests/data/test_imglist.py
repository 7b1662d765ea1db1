import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from openood_moon.data.embedded import EMBEDDED_INFO
from openood_moon.data.imglist import (ImglistDataset, benchmark_loaders, epoch_seed, eval_transform,
                                       read_imglist)
from openood_moon.data.transforms import build_transforms


@pytest.fixture
def tiny_list(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.full((30, 32), 255, np.uint8)).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "imgs" / "c.png")
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/a.png 3\n\nimgs/c.png -1\n")
    return lst, tmp_path


def test_read_imglist_splits_on_first_space_only(tiny_list):
    lst, _ = tiny_list
    lst.write_text("imgs/x.png 3\nimgs/y.png  -1 \n")
    assert read_imglist(lst) == [("imgs/x.png", 3), ("imgs/y.png", -1)]
    assert read_imglist(lst, max_items=1) == [("imgs/x.png", 3)]
    lst.write_text("imgs/x.png\n")
    with pytest.raises(ValueError):
        read_imglist(lst)


def test_mixed_sizes_are_cached_as_a_list(tiny_list):
    lst, root = tiny_list
    ds = ImglistDataset(lst, str(root) + "/")
    assert [tuple(img.shape) for img in ds.images] == [(3, 30, 32), (3, 28, 28)]
    assert ds[0]["label"] == 3 and int(ds[0]["data"].min()) == 255 and ds[1]["label"] == -1


def test_imglist_dataset_items_rgb_and_cached(tiny_list):
    lst, root = tiny_list
    lst.write_text("imgs/c.png 2\nimgs/c.png -1\n")
    ds = ImglistDataset(lst, root)
    assert len(ds) == 2 and ds.images.shape == (2, 3, 28, 28) and ds.images.dtype == torch.uint8
    item = ds[1]
    assert item["label"] == -1 and item["image_name"] == "imgs/c.png" and item["data"].shape == (3, 28, 28)
    x = ImglistDataset(lst, root, transform=eval_transform())[0]["data"]
    assert x.dtype == torch.float32 and torch.allclose(x, torch.full_like(x, -1.0))


def test_loaders_shapes_labels_and_subset(mnist6_root):
    loaders = benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=16, test_batch_size=32, subset=40)
    batch = next(iter(loaders["id"]["train"]))
    assert batch["data"].shape == (16, 3, 28, 28) and batch["data"].dtype == torch.float32
    assert batch["label"].min() >= 0 and batch["label"].max() <= 5
    assert len(loaders["id"]["train"].dataset) == 40
    assert set(loaders["ood"]["near"]) == {"mnist6789"}
    assert set(loaders["ood"]["far"]) == {"textures", "natural", "lfw", "noise"}
    for loader in [loaders["ood"]["val"], *loaders["ood"]["near"].values(), *loaders["ood"]["far"].values()]:
        b = next(iter(loader))
        assert b["data"].shape == (32, 3, 28, 28) and (b["label"] == -1).all()
        assert -1.0 <= b["data"].min() and b["data"].max() <= 1.0


def test_full_loader_sizes(mnist6_root):
    loaders = benchmark_loaders(EMBEDDED_INFO, mnist6_root)
    assert [len(loaders["id"][s].dataset) for s in ("train", "val", "test")] == [2250, 150, 600]
    assert len(loaders["id"]["train"]) == 18  # 17 full batches of 128 + 74
    assert len(loaders["ood"]["far"]["lfw"].dataset) == 100


def _epoch(loader):
    return torch.cat([b["data"] for b in loader]), torch.cat([b["index"] for b in loader])


def test_train_order_and_augmentation_follow_seed_and_epoch(mnist6_root):
    a = benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=8, subset=24, seed=1)["id"]["train"]
    b = benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=8, subset=24, seed=1)["id"]["train"]
    c = benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=8, subset=24, seed=2)["id"]["train"]
    torch.manual_seed(123)  # the global RNG must not matter
    xa, ia = _epoch(a)
    torch.manual_seed(456)
    xb, ib = _epoch(b)
    assert torch.equal(ia, ib) and torch.equal(xa, xb)
    assert not torch.equal(_epoch(c)[1], ia)
    # augmentation: a random +-2 px shift of the cached image
    plain = torch.stack([a.dataset.transform.transforms.eval(a.dataset.images[i]) for i in ia])
    assert not torch.equal(xa, plain)
    # per-epoch reseeding: set_epoch(e) == generator.manual_seed(epoch_seed(seed, e)); epochs differ
    a.sampler.set_epoch(3)
    b.generator.manual_seed(epoch_seed(1, 3))
    x3, i3 = _epoch(a)
    assert torch.equal(_epoch(b)[0], x3) and not torch.equal(i3, ia)
    a.sampler.set_epoch(0)
    assert torch.equal(_epoch(a)[0], xa)


def test_workers_do_not_change_batches(mnist6_root):
    kw = dict(batch_size=8, subset=16, seed=5)
    single = benchmark_loaders(EMBEDDED_INFO, mnist6_root, num_workers=0, **kw)["id"]["train"]
    multi = benchmark_loaders(EMBEDDED_INFO, mnist6_root, num_workers=2, **kw)["id"]["train"]
    assert torch.equal(_epoch(single)[0], _epoch(multi)[0])


def test_train_sharding_covers_everything_once(mnist6_root):
    shards = [benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=4, subset=10, seed=0,
                                num_replicas=2, rank=r)["id"]["train"] for r in (0, 1)]
    idx = [_epoch(s)[1] for s in shards]
    assert len(idx[0]) == len(idx[1]) == 5
    assert sorted(torch.cat(idx).tolist()) == list(range(10))


@pytest.mark.parametrize("name, image_size", [("shift", 28), ("base", 24)])
def test_batched_loaders_equal_item_by_item_transforms(mnist6_root, name, image_size):
    """A batch built by ``ImglistDataset.__getitems__`` (one gather + one normalisation) equals
    ``default_collate`` of the items' torchvision-op transforms, bit for bit, train and eval."""
    transforms = build_transforms({"preprocessor": {"name": name},
                                   "dataset": {"pre_size": 28, "image_size": image_size}})
    loaders = benchmark_loaders(EMBEDDED_INFO, mnist6_root, batch_size=32, test_batch_size=64, subset=100,
                                seed=7, transforms=transforms)
    for loader in (loaders["id"]["train"], loaders["id"]["test"]):
        if loader.sampler is not None and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(4)
        batched = list(loader)
        loader.dataset.__getitems__ = None      # DataLoader then fetches item by item
        items = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler,
                           generator=loader.generator)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(4)
        by_item = list(items)
        del loader.dataset.__getitems__
        assert len(batched) == len(by_item) > 1
        for a, b in zip(batched, by_item):
            assert a["data"].shape[-2:] == (image_size, image_size)
            assert torch.equal(a["data"], b["data"]) and torch.equal(a["label"], b["label"])
            assert torch.equal(a["index"], b["index"]) and a["image_name"] == b["image_name"]
