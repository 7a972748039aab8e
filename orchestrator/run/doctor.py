"""``python -m orchestrator doctor SPEC.py [--harness NAME] [--strict] [--stop-at STEP]``.

Lists what in the spec's setup will not resume, and the fix, before any training. The
inspection builds the spec's Lightning objects, so it runs as ``python -m workers.doctor``
in a child process (the orchestrator never imports torch); this returns its exit code:
0 (findings are advice), 1 with ``--strict`` when there are findings, 2 for a bad spec.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def doctor_command(argv: list[str]) -> list[str]:
    """The child's command line for the doctor's arguments ``argv``."""
    return [sys.executable, "-m", "workers.doctor", *argv]


def main(argv: list[str]) -> int:
    """Runs the doctor in a child process (output streamed as it comes); returns its exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    try:
        return subprocess.call(doctor_command(argv), env=env)
    except KeyboardInterrupt:
        return 130
