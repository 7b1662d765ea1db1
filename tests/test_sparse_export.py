"""The compressed sparse export (values + bitmask) and the packed checkpoint.pt: exact round trips,
the fp16 option, sizes from a hand count, and foreign / truncated / damaged files refused."""
import io
import math

import pytest
import torch

from openood_moon.checkpoint import load_checkpoint, save_checkpoint
from openood_moon.config import ConfigError
from openood_moon.data.digits import digits_loaders
from openood_moon.moon import MoonNet
from openood_moon.networks import ResNet18_32x32, SmallCNN
from openood_moon.sparse import Masking
from openood_moon.sparse_export import (compress_state_dict, load_sparse_state_dict, main, pack_bits, pack_tree,
                                        read_state_dict, save_sparse_state_dict, unpack_bits)
from openood_moon.trainer import MoonTrainer


def bits_of(t):
    """The raw bit pattern of a tensor (so -0.0 differs from 0.0 and NaN equals itself)."""
    t = t.contiguous()
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]) \
        if t.dtype != torch.bool else t


def assert_bitwise_equal(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if torch.is_tensor(a):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(bits_of(a), bits_of(b))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_bitwise_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_bitwise_equal(x, y)
    else:
        assert a == b


@pytest.fixture(scope="module")
def resnet90():
    """A ResNet-18 with RigL's 90 %-sparse ERK masks applied (pruned weights exactly 0)."""
    torch.manual_seed(0)
    net = ResNet18_32x32(10)
    masking = Masking(net, "rigl", 0.1, seed=0)
    return net, masking


def test_bits_are_packed_most_significant_first_and_unpack_back():
    flags = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    assert pack_bits(flags).tolist() == [0b10000001, 0b10100000]                 # by hand
    for n in (1, 7, 8, 9, 64, 1001):
        flags = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.3
        assert torch.equal(unpack_bits(pack_bits(flags), n), flags)


def test_export_round_trips_bitwise_with_negative_zeros_nan_inf_and_integer_buffers(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, 3, 3, generator=g)
    w[torch.rand(w.shape, generator=g) < 0.9] = 0.0
    w.view(-1)[:3] = torch.tensor([-0.0, float("nan"), float("-inf")])
    state = {"conv.weight": w, "bn.running_var": torch.rand(64, generator=g),
             "bn.num_batches_tracked": torch.tensor(7), "dense.weight": torch.randn(40, 40, generator=g),
             "mask": torch.rand(300, generator=g) < 0.5, "double": w.double()}
    path = tmp_path / "best.sparse.pt"
    save_sparse_state_dict(state, str(path))
    raw = torch.load(path, weights_only=True)                                 # tensors and plain values only
    assert raw["state_dict"]["conv.weight"]["layout"] == "sparse"
    assert torch.is_tensor(raw["state_dict"]["dense.weight"])                 # dense tensors as they are
    back = load_sparse_state_dict(str(path))
    assert_bitwise_equal(back, state)
    assert str(bits_of(back["conv.weight"]).view(-1)[0].item()) == str(-2 ** 31)   # -0.0 kept
    assert_bitwise_equal(read_state_dict(str(path)), state)


def test_a_90_percent_sparse_resnet18_export_is_the_hand_counted_size_and_loads_into_our_network(tmp_path,
                                                                                                 resnet90):
    net, masking = resnet90
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / "best.ckpt")
    save_sparse_state_dict(state, str(tmp_path / "best.sparse.pt"))
    masked = sum(m.numel() for m in masking.masks.values())
    nnz = sum(int(m.sum()) for m in masking.masks.values())
    others = sum(v.numel() * v.element_size() for k, v in state.items() if k not in masking.masks)
    # per weight: 4 bytes per kept value + 1 bit per entry, or 4 bytes per entry where that saves < 25 %
    packed = [(4 * int(m.sum()) + math.ceil(m.numel() / 8), 4 * m.numel()) for m in masking.masks.values()]
    expected = others + sum(p if p <= 0.75 * dense else dense for p, dense in packed)
    size = (tmp_path / "best.sparse.pt").stat().st_size
    assert expected <= size <= expected + 50_000                             # + zip/pickle overhead
    assert size <= 0.15 * (tmp_path / "best.ckpt").stat().st_size and nnz / masked == pytest.approx(0.1, abs=1e-3)
    back = load_sparse_state_dict(str(tmp_path / "best.sparse.pt"))
    assert_bitwise_equal(back, state)
    fresh = ResNet18_32x32(10)
    fresh.load_state_dict(back, strict=True)
    x = torch.randn(2, 3, 32, 32)
    net.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(net(x), fresh(x))


def test_half_stores_weights_as_float16_and_keeps_the_rest_exact(tmp_path):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(32, 16, 3, 3, generator=g) * 0.1
    w[torch.rand(w.shape, generator=g) < 0.9] = 0.0
    w.view(-1)[0] = 1e-9                                                    # underflows to 0 in fp16
    big = torch.randn(20, 20, generator=g) * 1e6                              # would overflow: kept fp32
    state = {"w": w, "dense": torch.randn(30, 30, generator=g), "bias": torch.randn(300, generator=g),
             "big": big}
    save_sparse_state_dict(state, str(tmp_path / "h.pt"), half=True)
    back = load_sparse_state_dict(str(tmp_path / "h.pt"))
    assert_bitwise_equal(back["w"], w.half().float())
    assert_bitwise_equal(back["dense"], state["dense"].half().float())
    assert_bitwise_equal(back["bias"], state["bias"])
    assert_bitwise_equal(back["big"], big)
    raw = torch.load(tmp_path / "h.pt", weights_only=True)["state_dict"]
    assert raw["w"]["values"].dtype == torch.float16 and raw["dense"]["values"].dtype == torch.float16
    assert raw["w"]["values"].numel() == int((w.half() != 0).sum())


def test_half_export_of_the_resnet18_is_smaller_still(resnet90):
    net, _ = resnet90
    state = net.state_dict()
    full, half = io.BytesIO(), io.BytesIO()
    torch.save(compress_state_dict(state), full)
    torch.save(compress_state_dict(state, half=True), half)
    assert len(half.getvalue()) < 0.7 * len(full.getvalue())


def test_foreign_truncated_and_damaged_files_are_refused_clearly(tmp_path):
    plain = tmp_path / "best.ckpt"
    torch.save({"w": torch.zeros(3)}, plain)
    with pytest.raises(ConfigError, match="is not an openood_moon sparse export .it holds w"):
        load_sparse_state_dict(str(plain))
    assert torch.equal(read_state_dict(str(plain))["w"], torch.zeros(3))     # read_state_dict takes both
    good = tmp_path / "best.sparse.pt"
    w = torch.zeros(1000)
    w[::10] = 1.0
    save_sparse_state_dict({"w": w}, str(good))
    cut = tmp_path / "cut.sparse.pt"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ConfigError, match="truncated or not a torch checkpoint"):
        load_sparse_state_dict(str(cut))
    obj = torch.load(good, weights_only=True)
    obj["state_dict"]["w"]["values"] = obj["state_dict"]["w"]["values"][:-1]
    torch.save(obj, tmp_path / "damaged.pt")
    with pytest.raises(ConfigError, match="flags 100 entries but holds 99 values"):
        load_sparse_state_dict(str(tmp_path / "damaged.pt"))
    obj = torch.load(good, weights_only=True)
    obj["version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="version 99"):
        load_sparse_state_dict(str(tmp_path / "future.pt"))
    (tmp_path / "text.pt").write_text("not torch")
    assert main([str(tmp_path / "text.pt"), str(tmp_path / "out.pt")]) == 2


def test_command_line_converts_a_best_ckpt(tmp_path, capsys, resnet90):
    net, _ = resnet90
    torch.save(net.state_dict(), tmp_path / "best.ckpt")
    assert main([str(tmp_path / "best.ckpt"), str(tmp_path / "best.sparse.pt"), "--half"]) == 0
    assert "best.sparse.pt" in capsys.readouterr().out
    back = load_sparse_state_dict(str(tmp_path / "best.sparse.pt"))
    assert torch.equal(back["conv1.weight"], net.conv1.weight.detach().half().float())


def test_masked_weights_and_momentum_are_positive_zeros(resnet90):
    """Pruned entries must be all-zero bits (a negative weight times False is -0.0), else they count as
    values in the bitmask and the export does not shrink."""
    net, masking = resnet90
    for name, mask in masking.masks.items():
        assert int((bits_of(masking.params[name].detach())[~mask] != 0).sum()) == 0, name
    trainer_net = SmallCNN(6, in_channels=1, width=8, feature_size=16)
    m = Masking(trainer_net, "static", 0.2)
    opt = torch.optim.SGD(trainer_net.parameters(), lr=0.1, momentum=0.9)
    trainer_net(torch.randn(4, 1, 8, 8)).sum().backward()
    m.step(opt, 1)
    for name, mask in m.masks.items():
        assert int((bits_of(opt.state[m.params[name]]["momentum_buffer"])[~mask] != 0).sum()) == 0


def make_trainer(seed=0, **over):
    torch.manual_seed(seed)
    net = MoonNet(SmallCNN(6, in_channels=1, width=8, feature_size=32))
    cfg = {"seed": seed, "optimizer": {"num_epochs": 3, "lr": 0.05},
           "sparse": {"method": "rigl", "density": 0.1, "interval": 4},
           "moon": {"enabled": True, "warmup_epochs": 1, "vote_epochs": 1}, **over}
    return MoonTrainer(net, digits_loaders(batch_size=64, seed=seed)["id"]["train"], cfg)


def test_packed_training_checkpoint_round_trips_bitwise_and_stores_masks_as_bits(tmp_path):
    trainer = make_trainer()
    for _ in range(3):
        trainer.train_epoch()                                # vote mean and averaged model included
    state = trainer.state_dict()
    packed = pack_tree(state)
    for name, mask in state["masking"]["masks"].items():
        entry = packed["masking"]["masks"][name]
        if mask.numel() < 64:                                # fc_unknown's 32 entries: not worth packing
            assert torch.is_tensor(entry)
        else:
            assert entry["layout"] == "bits" and entry["bits"].numel() == math.ceil(mask.numel() / 8)
    assert packed["net"]["backbone.fc1.weight"]["layout"] == "sparse"
    save_checkpoint(packed, str(tmp_path / "checkpoint.pt"))
    save_checkpoint(state, str(tmp_path / "dense.pt"))
    back = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert_bitwise_equal(back, state)
    assert hasattr(back["net"], "_metadata")                 # module versions kept for load_state_dict
    assert (tmp_path / "checkpoint.pt").stat().st_size < 0.5 * (tmp_path / "dense.pt").stat().st_size


def test_resume_from_a_packed_checkpoint_is_bitwise_exact(tmp_path):
    straight = make_trainer(seed=1)
    straight.fit()
    first = make_trainer(seed=1)
    first.train_epoch()
    first.train_epoch()
    save_checkpoint(pack_tree(first.state_dict()), str(tmp_path / "checkpoint.pt"))
    resumed = make_trainer(seed=1)
    resumed.load_state_dict(load_checkpoint(str(tmp_path / "checkpoint.pt")))
    resumed.fit()
    assert_bitwise_equal(resumed.state_dict(), straight.state_dict())

