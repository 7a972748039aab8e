"""The wheel (what ``pip install git+...`` or an index install builds) holds every package of
the source tree, and an install of it, not of the checkout, imports them all (issue 29: a
hand-kept package list had left ``workers.kit`` and ``workers.doctor`` out)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

from tests.conftest import REPO

# Directories of the checkout that are no part of the distribution.
_NOT_SHIPPED = {"tests", "build", "dist", "stop_and_go_runs"}
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def source_packages() -> set[str]:
    """Every directory of the source tree with an ``__init__.py``, as a dotted name."""
    found = set()
    for init in REPO.rglob("__init__.py"):
        parts = init.parent.relative_to(REPO).parts
        if parts and parts[0] not in _NOT_SHIPPED and not any(p.startswith(".") or p.endswith("-info") for p in parts):
            found.add(".".join(parts))
    return found


def _package_files(top: Path) -> set[str]:
    # Files a package needs at run time, .py or not (html assets, json ...): all but caches.
    return {
        str(path.relative_to(REPO))
        for path in top.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_holds_every_package_and_an_install_of_it_imports_them(tmp_path: Path) -> None:
    packages = source_packages()
    tops = sorted({name.split(".")[0] for name in packages})
    assert {"orchestrator", "workers", "harness_specs", "workers.kit", "workers.doctor"} <= packages
    # Built from a copy: the build's own build/ and egg-info stay out of the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for top in tops:
        shutil.copytree(REPO / top, src / top, ignore=_JUNK)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*build, "-q", "-w", str(wheels)], check=True, capture_output=True, timeout=120)
    (wheel,) = wheels.glob("stop_and_go-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {name.rsplit("/", 1)[0].replace("/", ".") for name in names if name.endswith("/__init__.py")}
    assert in_wheel == packages
    wanted = set().union(*(_package_files(REPO / top) for top in tops))
    assert sorted(wanted - names) == [], "files of the packages missing from the wheel (package-data?)"
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "stop-and-go = orchestrator.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # A venv that sees this machine's torch and lightning, with the wheel installed in it;
    # run from outside the checkout, so that nothing can come from the checkout.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120, cwd=tmp_path)
    probe = (
        "import importlib, json, sys\n"
        "names = sys.argv[1:]\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run(
        [str(python), "-c", probe, *sorted(packages)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    files = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(venv)
    assert {name for name, file in files.items() if not file.startswith(site)} == set(), files
    # The console script the wheel declares runs from the install too.
    help_out = subprocess.run(
        [str(venv / "bin" / "stop-and-go"), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert help_out.returncode == 0 and "usage:" in help_out.stdout, help_out.stderr[-2000:]


def test_the_package_list_is_found_not_kept_by_hand() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "packages" in config and "find" in config["packages"], config
