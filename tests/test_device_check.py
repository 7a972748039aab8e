"""scripts/device_check.sh --dry-run: lists every gpu-marked test and the benchmark steps, runs nothing."""

from __future__ import annotations

import ast
import subprocess

from tests.conftest import REPO


def _gpu_tests() -> set[str]:
    found = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any("mark.gpu" in ast.unparse(d) for d in node.decorator_list):
                found.add(f"tests/{path.name}::{node.name}")
    return found


def test_dry_run_lists_every_gpu_test_and_runs_nothing() -> None:
    proc = subprocess.run(
        ["bash", "scripts/device_check.sh", "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    listed = {line.strip() for line in proc.stdout.splitlines() if "::" in line}
    expected = _gpu_tests()
    assert expected, "no test is marked gpu"
    assert listed == expected
    assert "benchmarks/overhead.py" in proc.stdout
    assert "pytest -m gpu" in proc.stdout
    assert "=== " not in proc.stdout  # no step was started


def test_bad_argument_is_a_usage_error() -> None:
    proc = subprocess.run(["bash", "scripts/device_check.sh", "--bogus"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
