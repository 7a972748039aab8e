"""The orchestrator (parent) never imports torch or lightning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import io, pkgutil, sys, importlib
import orchestrator
for info in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
    importlib.import_module(info.name)
from orchestrator.cli import main
code = main([sys.argv[1], "--run-dir", sys.argv[2], "--no-prewarm", "--nproc-per-node", "1"], out=io.StringIO())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "lightning", "pytorch_lightning", "numpy"})
print("CODE", code)
print("HEAVY", heavy)
"""


def test_orchestrator_modules_and_a_run_do_not_import_torch(tmp_path: Path) -> None:
    # A spec error found by the workers runs the whole launch path in the parent (every
    # module is imported first; --no-prewarm, one rank: only stop's worker imports the spec).
    spec = REPO / "tests" / "specs" / "no_harness.py"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )
    assert "CODE 2" in proc.stdout, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
