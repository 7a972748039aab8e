"""Long, independent runs that start when the test session starts and are read later.

pytest runs one test at a time, and many tests keep only one of the machine's two cores
busy: a 1-rank phase, a hang waited out to its ``--timeout``, a Slurm job. A long run that
depends on no other test (the mutant catalog's self-test) is therefore started in the
background at the session's first test, and fills those gaps; the test that reads it waits
for it then. It is the same command, judged by the same assertions: only its start moves.

A test module registers the run under the name of the fixture that reads it
(:func:`register`); the session fixture ``background_runs`` (``tests/conftest.py``) starts
the registered runs some collected test needs, and ends any still running at the session's
end (a failed or interrupted session leaves no process behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class BackgroundRun:
    """One command run in its own session, its output going to files until it is read."""

    command: list[str]
    out_dir: Path
    timeout: float
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started: float = field(default=0.0, init=False)

    def start(self) -> BackgroundRun:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "stdout", "wb") as out, open(self.out_dir / "stderr", "wb") as err:
            # Its own session, so that stop() ends the whole tree; no run directory inherited.
            env = {k: v for k, v in os.environ.items() if not k.startswith("STOP_AND_GO_")}
            self.popen = subprocess.Popen(
                self.command, stdout=out, stderr=err, cwd=REPO, env=env, start_new_session=True
            )
        self.started = time.monotonic()
        return self

    def wait(self) -> subprocess.CompletedProcess[str]:
        """Waits for the run (up to its timeout from its start) and returns what it printed."""
        assert self.popen is not None, "the run was never started"
        left = self.timeout - (time.monotonic() - self.started)
        try:
            code = self.popen.wait(timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        read = lambda name: (self.out_dir / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
        return subprocess.CompletedProcess(self.command, code, read("stdout"), read("stderr"))

    def stop(self) -> None:
        """Ends the run if it still runs: SIGTERM (the orchestrator then ends its own runs), then SIGKILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


@dataclass(frozen=True)
class Registered:
    command: Callable[[Path], list[str]]  # the command, given the run's own directory
    timeout: float


REGISTRY: dict[str, Registered] = {}


def register(fixture: str, command: Callable[[Path], list[str]], timeout: float) -> None:
    """Registers the background run that the fixture named ``fixture`` reads."""
    REGISTRY[fixture] = Registered(command, timeout)
