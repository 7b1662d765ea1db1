"""Bad data stops a run before training with exit code 2 and a message naming the file (and line):
missing image lists, missing or unreadable images, ID labels outside [0, K), OOD labels other than -1,
malformed lines, a wrong data_dir or data_root. One table of cases, run through the command line of
the standalone engine (and a few through the OpenOOD engine)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from openood_moon.cli import main as cli_main
from tiny_benchmark import MAIN, NAME, TINY_JOB, make_benchmark

LISTS = os.path.join("data", "benchmark_imglist", NAME)
IMAGES = os.path.join("data", "images_classic", NAME)


def _lines(root, list_file):
    with open(os.path.join(root, LISTS, list_file)) as f:
        return f.readlines()


def _set_line(root, list_file, number, text):
    lines = _lines(root, list_file)
    lines[number - 1] = text
    with open(os.path.join(root, LISTS, list_file), "w") as f:
        f.writelines(lines)


def _image_of(root, list_file, number):
    return os.path.join(root, "data", "images_classic", _lines(root, list_file)[number - 1].split(" ")[0])


def _label(list_file, number, label):
    return lambda root: _set_line(root, list_file, number,
                                  _lines(root, list_file)[number - 1].split(" ")[0] + f" {label}\n")


def _truncate(root):
    path = _image_of(root, "test_far1.txt", 5)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


# id -> (change to the benchmark, extra overrides, text the message must hold (file and line))
CASES = {
    "missing ID list": (lambda r: os.remove(os.path.join(r, LISTS, f"train_{NAME}.txt")), [],
                        f"image list not found: {{root}}/{LISTS}/train_{NAME}.txt"),
    "misspelt list path": (None, ["--dataset.test.imglist_pth", f"./{LISTS}/tset_{NAME}.txt"],
                           f"image list not found: {{root}}/{LISTS}/tset_{NAME}.txt"),
    "missing OOD list": (lambda r: os.remove(os.path.join(r, LISTS, "test_near1.txt")), [],
                         f"image list not found: {{root}}/{LISTS}/test_near1.txt"),
    "missing OOD validation list": (lambda r: os.remove(os.path.join(r, LISTS, "val_oodval.txt")), [],
                                    f"image list not found: {{root}}/{LISTS}/val_oodval.txt"),
    "wrong data_dir (data_root, not images_classic)": (
        None, ["--dataset.train.data_dir", "./data/"],
        f"{{root}}/{LISTS}/train_{NAME}.txt:1: image not found: {{root}}/data/{NAME}/train/0/0.png"),
    "data_dir that is no folder": (None, ["--dataset.val.data_dir", "./images/"],
                                   "dataset.val.data_dir {root}/images is not a folder"),
    "missing image": (lambda r: os.remove(_image_of(r, f"test_{NAME}.txt", 3)), [],
                      f"{{root}}/{LISTS}/test_{NAME}.txt:3: image not found: {{root}}/{IMAGES}/test/2/0.png"),
    "unreadable image": (lambda r: open(_image_of(r, "test_near1.txt", 2), "wb").write(b"not an image"), [],
                         f"{{root}}/{LISTS}/test_near1.txt:2: image {{root}}/{IMAGES}/ood/test_near1/1.png "
                         "cannot be read"),
    "truncated image": (_truncate, [], f"{{root}}/{LISTS}/test_far1.txt:5: image "),
    "ID label = K": (_label(f"train_{NAME}.txt", 4, 10), [],
                     f"{{root}}/{LISTS}/train_{NAME}.txt:4: label 10 outside [0, 10)"),
    "ID label -1": (_label(f"val_{NAME}.txt", 7, -1), [], f"{{root}}/{LISTS}/val_{NAME}.txt:7: label -1 outside"),
    "OOD label not -1": (_label("test_far2.txt", 2, 0), [],
                         f"{{root}}/{LISTS}/test_far2.txt:2: label 0 in an OOD list (ood_dataset.farood.far2)"),
    "line without label": (lambda r: _set_line(r, f"test_{NAME}.txt", 5, f"{NAME}/test/4/0.png\n"), [],
                           f"{{root}}/{LISTS}/test_{NAME}.txt:5: expected '<image path> <label>'"),
    "label not an integer": (_label(f"train_{NAME}.txt", 2, "cat"), [],
                             f"{{root}}/{LISTS}/train_{NAME}.txt:2: label 'cat' is not an integer"),
    "empty list": (lambda r: open(os.path.join(r, LISTS, "test_far1.txt"), "w").close(), [],
                   f"ood_dataset.farood.far1: image list {{root}}/{LISTS}/test_far1.txt is empty"),
    "absolute image path with a data_dir": (
        lambda r: _set_line(r, "test_far1.txt", 3, "/tmp/x.png -1\n"), [],
        f"{{root}}/{LISTS}/test_far1.txt:3: absolute image path '/tmp/x.png'"),
    "data_root that does not hold the lists": (None, ["--dataset.data_root", "./elsewhere"],
                                               f"does not hold dataset.train.imglist_pth {{root}}/{LISTS}/"),
    "OOD num_classes differs": (None, ["--ood_dataset.num_classes", "6"],
                                "ood_dataset.num_classes (6) must equal dataset.num_classes (10)"),
    "own data under the embedded name": (None, ["--dataset.name", "mnist6"],
                                         "dataset.name 'mnist6' is an embedded benchmark"),
}


@pytest.fixture
def bench(tmp_path, monkeypatch):
    make_benchmark(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_exits_2_naming_file_and_line(case, bench, capsys):
    change, overrides, expected = CASES[case]
    if change:
        change(str(bench))
    code = cli_main(["--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB, *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert expected.format(root=os.path.realpath(bench)) in err.replace(str(bench), os.path.realpath(bench))
    assert not os.path.exists(bench / "results"), "nothing is written before the data is checked"


def test_the_command_line_exits_2_before_training(bench):
    _label(f"test_{NAME}.txt", 1, 12)(str(bench))
    proc = subprocess.run([sys.executable, MAIN, "--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB],
                          cwd=bench, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert f"{LISTS}/test_{NAME}.txt:1: label 12 outside [0, 10)" in proc.stderr
    assert "train:" not in proc.stdout and not (bench / "results").exists()


OPENOOD_CASES = ["missing image", "ID label = K", "OOD label not -1", "unreadable image"]


@pytest.mark.openood
@pytest.mark.skipif(importlib.util.find_spec("openood") is None, reason="OpenOOD is not installed")
@pytest.mark.parametrize("case", OPENOOD_CASES)
def test_openood_engine_checks_the_data_before_training(case, bench, capsys):
    change, overrides, expected = CASES[case]
    change(str(bench))
    argv = ["--config", f"{NAME}.yml", f"{NAME}_ood.yml", *TINY_JOB, *overrides]
    argv[argv.index("--engine") + 1] = "openood"
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected.format(root=os.path.realpath(bench)) in err.replace(str(bench), os.path.realpath(bench))
    assert not list(bench.glob("results/*/s0/config.yml"))
