"""Launching one phase as a torchrun job and streaming its output.

The runner talks to a ``Launcher``, which starts a phase and returns a ``PhaseHandle``:
poll it, kill its processes, reap it. ``LocalTorchrunLauncher`` runs torchrun on this
machine; other launchers (several agents for several nodes, Slurm job steps) provide
the same two interfaces.

The local torchrun agent starts in a new session (its own process group), so that it and its
workers can be found and killed as a unit. Its combined output goes to
``logs/<phase>.log`` and is echoed with a ``[phase rank]`` prefix; torchrun also keeps
per-rank logs under ``logs/<phase>/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from orchestrator.protocol import ENV_GO_AHEAD, ENV_RUN_DIR, ENV_RUN_ID, ENV_WAIT_FOR_KILL_S, RunLayout
from orchestrator.run.boot import booted, parent_death_preexec
from orchestrator.run.events import NOTICE_PREFIX, WORKER_NOTICE, RunEvents
from orchestrator.run.process_tree import KillReport, kill_run

WORKER_ENTRY_MODULE = "workers.entry"
# The worker part of a phase's torchrun command, after torchrun's own options.
WorkerArgv = Callable[[str, RunLayout], list[str]]
_RANK_PREFIX = re.compile(r"^\[[A-Za-z_]*?(\d+)\]:")
# A scan of a phase's process tree reads /proc/<pid>/stat of every process on the machine
# (psutil's children(recursive=True)), and the tree changes only when the agent starts or
# loses its workers: poll() rescans it at most this often (a kill always rescans first).
TREE_SCAN_INTERVAL_S = 0.5


def torchrun_command(
    spec: Path,
    phase: str,
    layout: RunLayout,
    nproc_per_node: int,
    harness: str | None,
    worker_argv: WorkerArgv | None = None,
) -> list[str]:
    """The torchrun command line of one phase; ``worker_argv`` replaces ``-m workers.entry ...``."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc_per_node),
        "--log-dir",
        str(layout.torchrun_log_dir(phase)),
        "--tee",
        "3",
    ]
    if worker_argv is not None:  # a wrapped script (orchestrator.wrap)
        worker = worker_argv(phase, layout)
    else:
        worker = ["-m", WORKER_ENTRY_MODULE, "--spec", str(spec), "--phase", phase, "--run-dir", str(layout.root)]
        if harness:
            worker += ["--harness", harness]
    # Every worker arms its parent-death signal before it imports torch (orchestrator.run.boot).
    return command + booted(worker)


@dataclass(frozen=True)
class WorkerGroup:
    """What every phase of a run launches: the spec, its harness class and the ranks.

    Every launcher takes one; ``command`` is the torchrun line of a phase, with
    ``nproc_per_node`` overriding the group's for one phase (``--go-nproc-per-node``).
    """

    spec: Path
    harness: str | None
    nproc_per_node: int
    nnodes: int = 1
    # What torchrun runs instead of the spec worker (``stop-and-go run -- SCRIPT``).
    worker_argv: WorkerArgv | None = None

    def command(self, phase: str, layout: RunLayout, nproc_per_node: int | None = None) -> list[str]:
        """The single-agent torchrun command of ``phase``."""
        return torchrun_command(
            self.spec, phase, layout, nproc_per_node or self.nproc_per_node, self.harness, self.worker_argv
        )


class PhaseHandle(Protocol):
    """A launched phase, as the runner sees it."""

    phase: str
    command: list[str]
    started: float  # time.monotonic() at launch
    log_path: Path
    pids_seen: set[int]

    @property
    def pid(self) -> int:
        """The pid of the process the launcher started (the torchrun agent)."""

    def poll(self) -> int | None:
        """The phase's exit code once it has ended, else None."""

    def note_pids(self) -> None:
        """Records the pids currently belonging to the phase."""

    def kill(self, sig: int, grace_s: float) -> KillReport:
        """Signals every process of the phase and confirms that all are gone."""

    def reap(self, timeout: float = 10.0) -> int | None:
        """Waits for the phase to be reaped and its output drained; returns its exit code."""


class Launcher(Protocol):
    """Starts the phases of a run."""

    def launch(
        self,
        phase: str,
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        nproc_per_node: int | None = None,
    ) -> PhaseHandle:
        """Starts ``phase``; the workers get the run dir, run id and kill wait in their env.

        ``nproc_per_node`` overrides the run's worker count for this phase
        (``--go-nproc-per-node``).
        """


class LocalTorchrunLauncher:
    """Runs each phase as ``torchrun --standalone`` on this machine."""

    # A phase can start early and wait for its go-ahead file (``workers.prewarm``).
    supports_prewarm = True

    def __init__(self, workers: WorkerGroup) -> None:
        self.workers = workers

    def launch(
        self,
        phase: str,
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        nproc_per_node: int | None = None,
        go_ahead: Path | None = None,
    ) -> PhaseProcess:
        """Starts ``phase``; with ``go_ahead`` its workers wait for that file after their imports."""
        command = self.workers.command(phase, layout, nproc_per_node)
        return PhaseProcess(phase, command, layout, run_id, wait_for_kill_s, events, go_ahead)


def worker_env(layout: RunLayout, run_id: str, wait_for_kill_s: float, go_ahead: Path | None = None) -> dict[str, str]:
    """The environment of a phase's processes: ours plus the protocol's variables."""
    env = dict(os.environ)
    env.pop(ENV_GO_AHEAD, None)
    if go_ahead is not None:
        env[ENV_GO_AHEAD] = str(go_ahead)
    env.update(
        {
            ENV_RUN_DIR: str(layout.root),
            ENV_RUN_ID: run_id,
            ENV_WAIT_FOR_KILL_S: str(wait_for_kill_s),
            "PYTHONUNBUFFERED": "1",
            # A dead peer must end a NCCL collective with an error, not hang it.
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        }
    )
    return env


class PhaseProcess:
    """One running torchrun launch: its agent process, output pump and the pids it had."""

    def __init__(
        self,
        phase: str,
        command: list[str],
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        go_ahead: Path | None = None,
    ) -> None:
        self.phase = phase
        self.command = command
        self.run_id = run_id
        self.pids_seen: set[int] = set()
        env = worker_env(layout, run_id, wait_for_kill_s, go_ahead)
        layout.logs.mkdir(parents=True, exist_ok=True)
        self.log_path = layout.phase_log(phase)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the pump thread
        self.popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # The agent dies with the orchestrator (the main thread: see set_parent_death_signal).
            preexec_fn=parent_death_preexec(),
        )
        self.started = time.monotonic()
        self.pids_seen.add(self.popen.pid)
        self._tree_scanned_at = 0.0
        self._events = events
        self._pump = threading.Thread(target=self._pump_output, name=f"pump-{phase}", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump_output(self) -> None:
        assert self.popen.stdout is not None
        with self._log:
            for raw in iter(self.popen.stdout.readline, b""):
                self._log.write(raw)
                self._log.flush()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                match = _RANK_PREFIX.match(line)
                if match:
                    self._events.worker_line(self.phase, int(match.group(1)), line[match.end() :])
                else:
                    self._events.worker_line(self.phase, None, line)
                text = line[match.end() :] if match else line
                if text.startswith(NOTICE_PREFIX):
                    self._events.event(WORKER_NOTICE, self.phase, f"{self.phase}: {text[len(NOTICE_PREFIX) :]}")

    def poll(self) -> int | None:
        """The agent's exit code once it has exited (and been reaped), else None."""
        if time.monotonic() - self._tree_scanned_at >= TREE_SCAN_INTERVAL_S:
            self.note_pids()
        return self.popen.poll()

    def note_pids(self) -> None:
        """Records the pids currently in the tree (for the report and leak checks)."""
        self._tree_scanned_at = time.monotonic()
        with contextlib.suppress(psutil.NoSuchProcess):
            self.pids_seen.update(p.pid for p in psutil.Process(self.popen.pid).children(recursive=True))

    def kill(self, sig: int, grace_s: float) -> KillReport:
        """Kills the agent's tree, its session and every process carrying the run id."""
        self.note_pids()
        return kill_run(self.popen.pid, self.run_id, sig, grace_s)

    def reap(self, timeout: float = 10.0) -> int | None:
        """Waits for the agent to be reaped and the output pump to drain."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        self._pump.join(timeout=timeout)
        return code
