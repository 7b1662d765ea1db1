"""``pip install <repo>`` (not editable) gives a working package: the wheel holds the configs and the
console script, and from a directory outside the repository ``openood-moon --config
configs/pipelines/train/moon.yml`` runs the main job with the installed copy."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_SOURCE_TOP = {".git", "data", "results", "build", "dist", "docs", "tests"}   # at the top level only
NOT_SOURCE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache")


def _modules(package_dir):
    """Relative paths of the package's .py files (its configs symlink not followed)."""
    return {os.path.relpath(os.path.join(d, f), package_dir) for d, _, files in os.walk(package_dir)
            for f in files if f.endswith(".py")}


def _run(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A copy of the source tree (pip builds in place; the repository stays untouched)."""
    src = tmp_path_factory.mktemp("src") / "openood-moon"
    shutil.copytree(REPO, src, symlinks=True, ignore=lambda d, names: (
        NOT_SOURCE(d, names) | (NOT_SOURCE_TOP & set(names) if os.path.samefile(d, REPO) else set())))
    return src


def test_the_wheel_holds_every_config_and_the_console_script(source, tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
          str(source)], cwd=tmp_path)
    (wheel,) = tmp_path.glob("openood_moon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = os.path.join(REPO, "configs")
    shipped = {os.path.relpath(os.path.join(d, f), configs) for d, _, files in os.walk(configs) for f in files}
    assert shipped and {f"openood_moon/configs/{rel}" for rel in shipped} <= names
    assert {f"openood_moon/{rel}" for rel in _modules(os.path.join(REPO, "openood_moon"))} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "openood-moon = openood_moon.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_non_editable_install_runs_the_main_job_outside_the_repository(source, tmp_path):
    venv = tmp_path / "venv"    # sees this python's packages (torch, ...), so nothing is downloaded
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path)
    python, script = venv / "bin" / "python", venv / "bin" / "openood-moon"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
         cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import openood_moon; print(openood_moon.__file__)"], cwd=work)
    installed = os.path.dirname(where.stdout.strip())
    assert installed.startswith(str(venv)), where.stdout                 # the installed copy, not the repo
    assert _modules(installed) == _modules(os.path.join(REPO, "openood_moon"))   # none falls back to the repo
    out = _run([str(script), "--config", "configs/pipelines/train/moon.yml", "--engine", "standalone",
                "--optimizer.num_epochs", "2", "--moon.warmup_epochs", "1", "--moon.vote_epochs", "1",
                "--dataset.subset", "300", "--evaluation.postprocessors", "[msp,moon]"], cwd=work)
    assert "engine: standalone" in out.stdout
    assert (work / "results" / "mnist6_small_cnn_rigl_d0.1_e2_moon" / "s0" / "best.ckpt").is_file()
    assert (work / "data").is_dir()                                  # the benchmark, built where it ran
    usage = _run([str(python), "-m", "openood_moon", "--help"], cwd=work)
    assert "--config" in usage.stdout and "--engine" in usage.stdout
