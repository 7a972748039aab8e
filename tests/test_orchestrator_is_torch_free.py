"""The orchestrator (parent) never imports torch or lightning."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, background_fixture

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


# A spec error found by the workers runs the whole launch path in the parent (every module
# is imported first; --no-prewarm, one rank: only stop's worker imports the spec). One
# interpreter's run that reads nothing else: in the background lane (tests/background.py).
torch_free_probe = background_fixture(
    "torch_free_probe",
    lambda out: [sys.executable, "-c", PROBE, str(REPO / "tests" / "specs" / "no_harness.py"), str(out / "run")],
    lambda proc, run: proc,
    timeout=180,
)


def test_orchestrator_modules_and_a_run_do_not_import_torch(torch_free_probe: subprocess.CompletedProcess[str]) -> None:
    proc = torch_free_probe
    assert "CODE 2" in proc.stdout, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
