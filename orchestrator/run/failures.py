"""How a run ends early: the exceptions the runner raises, a failed worker's last error, and
the stacks of a hung phase."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from orchestrator.exit_codes import ExitCode
from orchestrator.protocol import RunLayout, read_results

# How long a hung worker gets to write its stacks after SIGUSR1.
STACK_DUMP_WAIT_S = 1.0


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


def dump_stacks(layout: RunLayout, label: str) -> list[str]:
    """Asks every worker of ``label`` for its Python stacks (SIGUSR1, see workers.entry); the files."""
    results = read_results(layout, label)
    for result in results.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(result.pid, signal.SIGUSR1)
    time.sleep(STACK_DUMP_WAIT_S)
    return [
        str(layout.stacks(label, rank))
        for rank in sorted(results)
        if layout.stacks(label, rank).is_file() and layout.stacks(label, rank).stat().st_size > 0
    ]
