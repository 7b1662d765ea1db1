"""The harder embedded benchmark fmnist6 builds offline (every socket refused), deterministically, with
a checksummed manifest; its sets hold what openood_moon/data/fashion.py says, read back from the
Fashion-MNIST source files independently of the builder."""
import gzip
import hashlib
import importlib.util
import json
import os
import socket

import numpy as np
import pytest
from PIL import Image

from openood_moon.config import ConfigError
from openood_moon.data import builder, fashion

HAS_SOURCE = os.path.isdir(fashion.SYSTEM_DIR) or bool(os.environ.get(fashion.ENV_DIR))
pytestmark = pytest.mark.skipif(not HAS_SOURCE, reason="Fashion-MNIST files absent (apt-get install "
                                                       "dataset-fashion-mnist); offline, nothing to build from")
COUNTS = {"train": 3000, "val": 300, "test": 1200, "oodval": 300, "fashion6789": 1200, "mnist": 1000,
          "textures": 1000, "natural": 1000, "noise": 1000}


def _offline(mp):
    def refuse(*args, **kwargs):
        raise OSError("network access during an offline build")

    for target, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                         (socket, "getaddrinfo")):
        mp.setattr(target, name, refuse)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    roots = []
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp)
        for k in range(2):
            roots.append(fashion.build_fashion(tmp_path_factory.mktemp(f"fm{k}") / "data"))
    return roots


def _lines(root, set_name):
    text = (root / fashion.FMNIST6.list_dir / fashion.SETS[set_name][0]).read_text()
    return [line.split(" ") for line in text.splitlines()]


def _pixels(root, set_name):
    return np.stack([np.asarray(Image.open(root / rel)) for rel, _ in _lines(root, set_name)])


def _idx(name):
    """An idx file read by hand: big-endian dims after a 4-byte magic, then uint8 data."""
    data = gzip.decompress(open(os.path.join(fashion.SYSTEM_DIR, name), "rb").read())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data[4 + 4 * dims:], np.uint8).reshape(shape)


def test_offline_builds_are_identical_and_checksummed(built):
    a, b = built
    manifest = json.loads(builder.manifest_path(fashion.FMNIST6, a).read_text())
    assert builder.manifest_path(fashion.FMNIST6, b).read_bytes() == \
        builder.manifest_path(fashion.FMNIST6, a).read_bytes()
    assert {k: v["count"] for k, v in manifest["sets"].items()} == COUNTS
    for set_name, (list_file, _) in fashion.SETS.items():
        text = (a / fashion.FMNIST6.list_dir / list_file).read_bytes()
        assert text == (b / fashion.FMNIST6.list_dir / list_file).read_bytes()
        assert hashlib.sha256(text).hexdigest() == manifest["lists"][list_file]
        pixels = _pixels(a, set_name)
        assert pixels.shape == (COUNTS[set_name], 28, 28)
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == manifest["sets"][set_name]["pixel_sha256"]
    assert set(manifest["sources"]) >= {f"fashion-mnist/{n}" for n in fashion.FILES}
    assert fashion.verify_fashion(a, pixels=True)


def test_sets_hold_the_fashion_classes_and_sources_they_name(built):
    root = built[0]
    train_x, train_y = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")
    test_x, test_y = _idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz")
    per_class = {"train": 500, "val": 50, "test": 200}
    index = {"train": {}, "val": {}, "test": {}}
    for split, (x, y) in {"train": (train_x, train_y), "val": (train_x, train_y), "test": (test_x, test_y)}.items():
        index[split] = {img.tobytes(): int(lab) for img, lab in zip(x, y)}
    seen = {}
    for split in ("train", "val", "test"):
        labels = np.array([int(lab) for _, lab in _lines(root, split)])
        assert np.bincount(labels, minlength=6).tolist() == [per_class[split]] * 6
        assert len(set(labels[:30].tolist())) >= 4                     # a prefix mixes classes (subset)
        pixels = _pixels(root, split)
        # each image is a Fashion-MNIST image of the class its line says (train/val: training file)
        assert [index[split][img.tobytes()] for img in pixels] == labels.tolist()
        seen[split] = {img.tobytes() for img in pixels}
    assert not (seen["train"] & seen["val"])
    near = _pixels(root, "fashion6789")
    near_classes = [index["test"][img.tobytes()] for img in near]
    assert np.bincount(near_classes, minlength=10).tolist() == [0] * 6 + [300] * 4   # shirt, sneaker, bag, boot
    assert all(int(lab) == -1 for name in fashion.SETS if name not in ("train", "val", "test")
               for _, lab in _lines(root, name))
    from openood_moon.data.embedded import load_mnist5k

    digits = {img.tobytes() for img in load_mnist5k()[0]}
    assert all(img.tobytes() in digits for img in _pixels(root, "mnist"))
    noise = _pixels(root, "noise").astype(float)
    assert abs(noise.mean() - 127.5) < 3 and 55 < noise.std() < 70


def test_info_and_noise_as_a_group_of_its_own():
    info = fashion.FMNIST6_INFO
    assert info["num_classes"] == 6 and info["ood"]["near"]["datasets"] == ["fashion6789"]
    assert info["ood"]["far"]["datasets"] == ["mnist", "textures", "natural", "noise"]
    import yaml

    from openood_moon.config import CONFIGS_ROOT
    from openood_moon.evaluation.groups import separate_groups

    with open(os.path.join(CONFIGS_ROOT, "datasets", "fmnist6", "fmnist6_ood.yml")) as f:
        ood = yaml.safe_load(f)["ood_dataset"]
    assert separate_groups(ood) == {"noise": ["noise"]} == fashion.SEPARATE_GROUPS
    assert ood["farood"]["datasets"] == info["ood"]["far"]["datasets"]


def test_without_a_source_offline_the_build_stops_saying_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv(fashion.ENV_DIR, raising=False)
    _offline(monkeypatch)
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        fashion.build_fashion(tmp_path / "data")
    assert not builder.manifest_path(fashion.FMNIST6, tmp_path / "data").exists()


def test_a_source_file_with_other_content_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    for name in fashion.FILES:
        (folder / name).write_bytes(open(os.path.join(fashion.SYSTEM_DIR, name), "rb").read())
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8)))
    monkeypatch.setenv(fashion.ENV_DIR, str(folder))
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte.gz: its content is not the published"):
        fashion.load_fashion(tmp_path / "data")


@pytest.mark.openood
@pytest.mark.skipif(importlib.util.find_spec("openood") is None, reason="OpenOOD is not installed")
def test_the_openood_engine_registers_fmnist6_offline(built):
    from openood_moon.engines.openood import compat

    compat.install_import_stubs()
    import openood.evaluation_api.datasets as eds

    from openood_moon.engines.openood.datasets import register_embedded

    root = register_embedded(built[0], "fmnist6")
    info = eds.DATA_INFO["fmnist6"]
    assert info["num_classes"] == 6 and info["ood"]["near"]["datasets"] == ["fashion6789"]
    assert info["ood"]["far"]["datasets"] == ["mnist", "textures", "natural", "noise"]
    first = open(info["ood"]["near"]["fashion6789"]["imglist_path"]).readline().split(" ")[0]
    assert os.path.isfile(os.path.join(info["ood"]["near"]["fashion6789"]["data_dir"], first))
    assert str(root) == str(built[0])
