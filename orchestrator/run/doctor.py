"""``python -m orchestrator doctor SPEC.py [--harness NAME] [--strict] [--stop-at STEP]``.

Lists what in the spec's setup will not resume, and the fix, before any training. The
inspection builds the spec's Lightning objects, so it runs as ``python -m workers.doctor``
in a child process (the orchestrator never imports torch); this returns its exit code:
0 (findings are advice), 1 with ``--strict`` when there are findings, 2 for a bad spec.
A spec that cannot possibly work (missing, unparsable, an impossible ``--harness``) is
refused here first, in one line, without the child's seconds of importing torch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.arguments import UsageError
from orchestrator.spec_file import check_harness_choice, check_spec_file

REPO = Path(__file__).resolve().parents[2]
EXIT_BAD_SPEC = 2  # workers.doctor's code for a bad spec


def doctor_command(argv: list[str]) -> list[str]:
    """The child's command line for the doctor's arguments ``argv``."""
    return [sys.executable, "-m", "workers.doctor", *argv]


def spec_error(argv: list[str]) -> str | None:
    """Why the spec in the doctor's arguments cannot work, as far as its source tells; else None.

    The child owns the command line (usage, ``--help``): only a spec it would refuse is
    looked at here, through the same checks as a run's (``orchestrator.spec_file``).
    """
    # The child's options (workers.doctor.__main__), so that an option's value is never
    # taken for the spec.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("spec", nargs="?")
    parser.add_argument("--harness")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--stop-at")
    known, _ = parser.parse_known_args(argv)
    if known.spec is None or {"-h", "--help"} & set(argv):
        return None
    try:
        check_spec_file(Path(known.spec))
        check_harness_choice(Path(known.spec), known.harness)
    except UsageError as err:
        return str(err)
    return None


def main(argv: list[str]) -> int:
    """Runs the doctor in a child process (output streamed as it comes); returns its exit code."""
    error = spec_error(argv)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SPEC
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    try:
        return subprocess.call(doctor_command(argv), env=env)
    except KeyboardInterrupt:
        return 130
