"""This rank's result file for one phase, as both worker entry points keep it.

``workers.entry`` (a spec's harness) and ``workers.wrap.run`` (an unmodified script) write
the same ``WorkerResult`` (``RunLayout.result``): at start (status ``running``, the pid,
when the process was created and when its imports were done), and at the end (status,
one-line error, traceback, wall time). The orchestrator reads it for the verdict, the
diagnosis and the timings, so both must fill it in alike.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

import psutil

from orchestrator.protocol import RunLayout, WorkerResult, write_json_atomic

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def start_result(layout: RunLayout, phase: str, **fields: Any) -> tuple[WorkerResult, Path]:
    """Writes this rank's ``running`` result for ``phase``; returns it and its path.

    The caller sets ``ready_at`` (in ``fields`` or later) where its slow imports are done.
    """
    result = WorkerResult(
        phase=phase,
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        pid=os.getpid(),
        status="running",
        started_at=_process_started_at(),
        **fields,
    )
    path = layout.result(phase, result.rank)
    write_json_atomic(path, result.to_dict())
    return result, path


def record_error(result: WorkerResult, err: BaseException) -> None:
    """Marks ``result`` failed by an unexpected ``err`` (one line, and the traceback, also printed)."""
    result.status = "error"
    result.error = one_line_error(err)
    result.traceback = traceback.format_exc()
    traceback.print_exc()


def finish_result(result: WorkerResult, path: Path, started: float, final_step: int | None) -> None:
    """Writes the phase's final result: its wall time since ``started`` (monotonic) and last step."""
    result.wall_s = time.monotonic() - started
    result.final_step = final_step
    write_json_atomic(path, result.to_dict())


def one_line_error(err: BaseException) -> str:
    """``Type: message`` in one line, without ANSI codes, keeping the cause of long messages.

    Some errors (torch's ``weights_only`` refusal) open with advice and state the cause
    further down; then the first line that names an error is kept as well.
    """
    lines = [_ANSI.sub("", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    text = lines[0] if lines else ""
    cause = next((line for line in lines[1:] if re.search(r"error: ", line, re.IGNORECASE)), None)
    if cause:
        text = f"{text} ... {cause}"
    return f"{type(err).__name__}: {text}"[:600]


def dump_stacks_on_sigusr1(path: Path) -> TextIO:
    """Dumps every thread's Python stack to ``path`` on SIGUSR1 (sent before a hung phase is killed)."""
    # faulthandler writes from a C-level handler, so it works while the main thread is
    # blocked inside a collective; the file must stay open for that.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")  # noqa: SIM115 - kept open for the signal handler
    faulthandler.register(signal.SIGUSR1, file=handle, all_threads=True)
    return handle


def _process_started_at() -> float | None:
    # The process's creation, before its imports: a pre-warmed phase's is before the kill.
    try:
        return psutil.Process().create_time()
    except psutil.Error:
        return None
