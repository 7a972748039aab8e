"""What the orchestrator tells the user while a run goes on.

The runner and the launcher report through a ``RunEvents`` sink: orchestrator events
(a phase launched, the sentinel seen, the kill, a phase finished) and the workers' output
lines. ``PlainEvents`` prints plain lines, readable in CI and Slurm logs; other sinks (a
live terminal view) implement the same two methods.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Protocol, TextIO

# Event kinds the runner emits, with the data each carries.
PHASE_STARTED = "phase_started"  # agent_pid, nproc
SENTINEL_SEEN = "sentinel_seen"  # step, checkpoint_path
KILLED = "killed"  # signal, pids, latency_s
PHASE_FINISHED = "phase_finished"  # wall_s, exit_code, outcome
PHASE_SKIPPED = "phase_skipped"  # a planned phase the run turned out not to need
WORKER_NOTICE = "worker_notice"  # a line a worker marked for the user (NOTICE_PREFIX), shown without -v

# A worker line starting with this is shown as an orchestrator event, not only logged
# (e.g. go resuming a script from the stop's checkpoint itself).
NOTICE_PREFIX = "stop-and-go notice: "


class RunEvents(Protocol):
    """Receives a run's events; called from the runner and from output pump threads."""

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        """An orchestrator event, with a human-readable message and structured data."""

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        """One line of worker output (``rank`` is None for the torchrun agent's own lines)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_tty(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


# Exceptions a stopping rank raises by design (killed after its sentinel): not errors.
_EXPECTED = ("StopAndGoException",)


class PlainEvents:
    """Prints ``[orchestrator] message`` and ``[phase rN] line`` lines (thread-safe).

    Args:
        out: where to print.
        echo_workers: stream every worker line (``-v``); otherwise workers' output stays
            in the run dir's logs.
        show_errors: without ``echo_workers``, still print the first traceback a rank
            prints (the one that explains a failure), once per phase.
    """

    def __init__(self, out: TextIO, echo_workers: bool = True, show_errors: bool = False) -> None:
        self.out = out
        self.echo_workers = echo_workers
        self.show_errors = show_errors
        self._lock = threading.Lock()
        # phase -> (rank, lines) of the traceback being collected; phases already shown.
        self._collecting: dict[str, tuple[int | None, list[str]]] = {}
        self._shown: set[str] = set()

    def _write(self, text: str) -> None:
        if not _is_tty(self.out):
            text = _ANSI.sub("", text)  # colour only on a terminal
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        self._write(f"[orchestrator] {message}")

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        if self.echo_workers:
            self._write(f"[{phase} r{rank}] {line}" if rank is not None else f"[{phase}] {line}")
        elif self.show_errors and rank is not None and phase not in self._shown:
            self._collect_traceback(phase, rank, line)

    def _collect_traceback(self, phase: str, rank: int, line: str) -> None:
        collecting = self._collecting.get(phase)
        if collecting is None:
            if line.startswith("Traceback (most recent call last)"):
                self._collecting[phase] = (rank, [line])
            return
        owner, lines = collecting
        if owner != rank:
            return
        lines.append(line)
        if line[:1].isspace() or not line.strip():
            return
        # The exception line ends the block ("During handling ..." starts another one).
        if line.startswith("During handling") or line.startswith("The above exception"):
            return
        del self._collecting[phase]
        if any(name in line for name in _EXPECTED):
            return
        self._shown.add(phase)
        tail = lines[-12:]  # the last frames and the error: where it failed and why
        self._write(f"[{phase} r{rank}] worker traceback (full log in the run dir):")
        for text in tail:
            self._write(f"[{phase} r{rank}] {text}")
