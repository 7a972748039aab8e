"""Finding, signalling and confirming the death of a run's whole process tree (psutil).

A run's processes are found three ways, because each alone can miss some: the
descendants of the torchrun agent, every process in the agent's session (it is started
with ``start_new_session``), and every process whose environment carries the run id
(which also finds daemons that re-parented themselves out of the tree).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import psutil

from orchestrator.protocol import ENV_RUN_ID, tag_matches


def _alive(proc: psutil.Process) -> bool:
    # A zombie has exited and holds no resources; only its parent's wait() is missing.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_of_run(root_pid: int | None, run_id: str | None) -> list[psutil.Process]:
    """Every live process that belongs to the run: tree, session and environment marker.

    ``run_id`` is a run id (every phase) or a phase tag (``protocol.phase_tag``: one phase).
    """
    found: dict[int, psutil.Process] = {}
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            pass
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        try:
            in_session = root_pid is not None and os.getsid(proc.pid) == root_pid
            if in_session or (run_id is not None and tag_matches(proc.environ().get(ENV_RUN_ID), run_id)):
                found[proc.pid] = proc
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return [p for p in found.values() if _alive(p)]


@dataclass
class KillReport:
    """What killing a phase's processes took."""

    signal: str
    pids: list[int] = field(default_factory=list)
    escalated_to_kill: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def all_dead(self) -> bool:
        return not self.survivors

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _send(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if _alive(p)]
    return alive


def kill_run(root_pid: int | None, run_id: str | None, sig: int = signal.SIGKILL, grace_s: float = 10.0) -> KillReport:
    """Signals every process of the run at once and confirms that all are gone.

    With SIGTERM or SIGINT the processes get ``grace_s`` seconds to exit before the
    survivors are SIGKILLed (like Slurm's KillWait). Processes that appear while the
    run dies (a launcher restarting a worker) are swept up and killed too.
    """
    started = time.monotonic()
    report = KillReport(signal=signal.Signals(sig).name)
    seen: dict[int, psutil.Process] = {}
    current = sig
    for _ in range(5):
        procs = processes_of_run(root_pid, run_id)
        if not procs:
            break
        seen.update((p.pid, p) for p in procs)
        _send(procs, current)
        survivors = _wait_dead(procs, grace_s if current != signal.SIGKILL else 5.0)
        if survivors and current != signal.SIGKILL:
            report.escalated_to_kill.extend(p.pid for p in survivors)
        current = signal.SIGKILL
    report.pids = sorted(seen)
    report.survivors = sorted(p.pid for p in processes_of_run(root_pid, run_id))
    report.seconds = time.monotonic() - started
    return report


def pids_alive(pids: Iterable[int]) -> list[int]:
    """The pids in ``pids`` that still belong to a live (non-zombie) process."""
    alive = []
    for pid in pids:
        try:
            if _alive(psutil.Process(pid)):
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive
