"""The README keeps its promises: its two commands are what CI runs; exit codes documented."""

from __future__ import annotations

import re
import subprocess

from orchestrator.exit_codes import DESCRIPTIONS
from tests.conftest import REPO


def _first_code_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```\w*\n(.*?)```", text, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_run_and_test_commands() -> None:
    assert _first_code_block() == [
        "pip install -e . && python -m orchestrator harness_specs/tiny_lightning.py",
        "pip install -e '.[test,megatron]' && pytest",
    ]


def test_ci_runs_the_readme_commands() -> None:
    script = (REPO / ".ci" / "run").read_text()
    extracted = subprocess.run(
        ["bash", "-c", "awk '/^```/{n++; next} n==1' README.md"], capture_output=True, text=True, cwd=REPO
    ).stdout.splitlines()
    assert extracted == _first_code_block()
    assert "README.md" in script and "pytest collected no tests" in script


def test_readme_documents_every_exit_code() -> None:
    text = (REPO / "README.md").read_text()
    for code, meaning in DESCRIPTIONS.items():
        assert f"| {int(code)} | {meaning} |" in text
