"""How a run ends early: the exceptions the runner raises, and a failed worker's last error."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from orchestrator.exit_codes import ExitCode


class RunFailed(Exception):
    """Ends the run with ``code``; ``message`` is the one-line reason shown to the user."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Interrupted(Exception):
    """The orchestrator received SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_WORKER_ERROR_LINE = re.compile(r"^\[[A-Za-z_]*?(\d+)\]:(\w+(?:Error|Exception|Interrupt)\b.*)$")


def last_worker_error(log: Path) -> str | None:
    """The last exception line a worker printed to the phase log, as "rank R: Error: ..."."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        match = _WORKER_ERROR_LINE.match(line)
        if match:
            return f"rank {match.group(1)}: {match.group(2).strip()}"
    return None
