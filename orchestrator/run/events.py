"""What the orchestrator tells the user while a run goes on.

The runner and the launcher report through a ``RunEvents`` sink: orchestrator events
(a phase launched, the sentinel seen, the kill, a phase finished) and the workers' output
lines. ``PlainEvents`` prints plain lines, readable in CI and Slurm logs; other sinks (a
live terminal view) implement the same two methods.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, TextIO

# Event kinds the runner emits, with the data each carries.
PHASE_STARTED = "phase_started"  # agent_pid, nproc
SENTINEL_SEEN = "sentinel_seen"  # step, checkpoint_path
KILLED = "killed"  # signal, pids, latency_s
PHASE_FINISHED = "phase_finished"  # wall_s, exit_code, outcome


class RunEvents(Protocol):
    """Receives a run's events; called from the runner and from output pump threads."""

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        """An orchestrator event, with a human-readable message and structured data."""

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        """One line of worker output (``rank`` is None for the torchrun agent's own lines)."""


class PlainEvents:
    """Prints ``[orchestrator] message`` and ``[phase rN] line`` lines (thread-safe)."""

    def __init__(self, out: TextIO, echo_workers: bool = True) -> None:
        self.out = out
        self.echo_workers = echo_workers
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        self._write(f"[orchestrator] {message}")

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        if self.echo_workers:
            self._write(f"[{phase} r{rank}] {line}" if rank is not None else f"[{phase}] {line}")
