"""The distribution installs one import namespace, ``cnnforge`` (DESIGN §1), and one version."""

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import cnnforge

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_distributions():
    assert cnnforge.__version__ == version("cnnforge")
    text = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{cnnforge.__version__}"' in text


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("cnnforge", "golden", "hw", "sim"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(out), str(source)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed: {result.stderr[-2000:]}")
    wheels = list(out.glob("cnnforge-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_has_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        dist_info = {t for t in top if t.endswith(".dist-info")}
        assert top - dist_info == {"cnnforge"}
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["cnnforge"]
    # the three packages are inside the namespace, with their modules and the bundled data
    for module in ("cnnforge/golden/model.py", "cnnforge/hw/network.py", "cnnforge/sim/runner.py",
                   "cnnforge/cli.py", "cnnforge/data/digits.json"):
        assert module in names
