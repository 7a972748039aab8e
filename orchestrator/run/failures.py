"""How a run ends early: the exceptions the runner raises, a failed phase's reason (or why
its exit is only a warning), a failed worker's last error, and the stacks of a hung phase."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from orchestrator.exit_codes import ExitCode
from orchestrator.protocol import RunLayout, WorkerResult, read_results

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


def died_after_training(exit_code: int | None, results: dict[int, WorkerResult], ranks: int) -> str | None:
    """Why a finished phase's non-zero exit is only a warning, or None when it is a failure.

    Plain gloo DDP processes on CPU sometimes abort at interpreter exit after training has
    finished ("terminate called without an active exception", exit -6): where every rank
    wrote its result, ``ok`` with its final step, nothing the verdict reads was lost.
    """
    if not exit_code or len(results) < ranks:
        return None
    if not all(r.status == "ok" and r.final_step is not None for r in results.values()):
        return None
    return f"every rank recorded its last step, then the processes exited with {exit_code} (torchrun)"


def raise_spec_error(results: dict[int, WorkerResult]) -> None:
    """Raises the usage error a rank reported for the spec (bad spec: exit 2), if any."""
    for result in results.values():
        if result.status == "spec_error":
            raise RunFailed(ExitCode.USAGE, result.error or "bad spec")


def worker_failure(
    phase: str, code: ExitCode, exit_code: int | None, raw_results: list[dict[str, Any]], log: str
) -> RunFailed:
    """The failure of a phase whose workers failed: the first rank's error, else the log's."""
    results = {r["rank"]: WorkerResult.from_dict(r) for r in raw_results}
    raise_spec_error(results)
    errors = [r for r in results.values() if r.error]
    if any(r.status == "no_checkpoint" for r in errors):  # a wrapped script (orchestrator.wrap)
        code = ExitCode.NO_CHECKPOINT
        errors = [r for r in errors if r.status == "no_checkpoint"]
    if errors:
        reason = f"rank {errors[0].rank}: {errors[0].error}"
    else:  # died before writing a result (e.g. the worker package failed to import)
        reason = last_worker_error(Path(log)) or f"torchrun exited with {exit_code}"
    return RunFailed(code, f"{phase} phase failed: {reason} (log: {log})")


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
