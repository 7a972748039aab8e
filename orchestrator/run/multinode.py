"""Several torchrun agents for one phase: ``--nnodes N`` on one machine.

Each "node" is its own ``torchrun`` agent (its own session, like a process on another
host), and the agents meet through a c10d rendezvous on this machine. This is how a
multi-node job behaves, minus the network: the workers form one world of
``N * nproc_per_node`` ranks, torchrun gives every agent a distinct node rank (group rank)
0..N-1, and on the sentinel every agent and every worker is killed before go starts N
fresh agents.

A phase ends when every agent has ended. If one agent fails, the others cannot finish
(their collectives would wait on dead peers until a timeout of many minutes), so the
phase is over: the remaining agents are killed, like ``srun --kill-on-bad-exit``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from orchestrator.protocol import RunLayout
from orchestrator.run.events import RunEvents
from orchestrator.run.launcher import PhaseProcess, WorkerGroup
from orchestrator.run.ports import free_port
from orchestrator.run.process_tree import KillReport, kill_run


def multinode_torchrun_command(
    base: list[str], nnodes: int, endpoint: str, rdzv_id: str, log_dir: Path, node: int
) -> list[str]:
    """``base`` (a ``--standalone`` torchrun command) turned into one agent of ``nnodes``.

    The agent joins a c10d rendezvous at ``endpoint``; its torchrun logs go to ``log_dir``
    so that the agents' per-rank logs do not mix.
    """
    command = list(base)
    at = command.index("--standalone")
    command[at : at + 1] = [
        "--nnodes",
        str(nnodes),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        rdzv_id,
        # No restarts: a failed worker must fail the phase, as with --standalone.
        "--max-restarts",
        "0",
    ]
    command[command.index("--log-dir") + 1] = str(log_dir / f"node{node}")
    return command


class MultiNodeLauncher:
    """Runs each phase as ``nnodes`` local torchrun agents joined by a c10d rendezvous."""

    def __init__(self, workers: WorkerGroup) -> None:
        if workers.nnodes < 1:
            raise ValueError("nnodes must be at least 1")
        self.workers = workers
        self.nnodes = workers.nnodes

    def launch(
        self,
        phase: str,
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        nproc_per_node: int | None = None,
    ) -> MultiNodePhase:
        base = self.workers.command(phase, layout, nproc_per_node)
        # A fresh port and rendezvous id per phase: go must not meet stop's dead store.
        endpoint = f"127.0.0.1:{free_port()}"
        rdzv_id = f"{run_id}-{phase}"
        commands = [
            multinode_torchrun_command(base, self.nnodes, endpoint, rdzv_id, layout.torchrun_log_dir(phase), node)
            for node in range(self.nnodes)
        ]
        return MultiNodePhase(phase, commands, layout, run_id, wait_for_kill_s, events)


class MultiNodePhase:
    """The agents of one phase, seen by the runner as one ``PhaseHandle``."""

    def __init__(
        self,
        phase: str,
        commands: list[list[str]],
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
    ) -> None:
        self.phase = phase
        self.run_id = run_id
        self.commands = commands
        # The report keeps one command; every agent's differs only in its log dir.
        self.command = commands[0]
        self.agents: list[PhaseProcess] = []
        try:
            for command in commands:
                self.agents.append(PhaseProcess(phase, command, layout, run_id, wait_for_kill_s, events))
        except BaseException:
            self.kill_all()
            raise
        self.started = time.monotonic()
        # All agents append to the same phase log (whole lines, so they interleave cleanly).
        self.log_path = self.agents[0].log_path
        self.pids_seen: set[int] = set()
        self._failed_code: int | None = None
        self.note_pids()

    @property
    def pid(self) -> int:
        """The first agent's pid (the report lists every agent's pids in ``pids_seen``)."""
        return self.agents[0].pid

    @property
    def agent_pids(self) -> list[int]:
        return [agent.pid for agent in self.agents]

    def note_pids(self) -> None:
        for agent in self.agents:
            agent.note_pids()
            self.pids_seen.update(agent.pids_seen)

    def poll(self) -> int | None:
        """None while any agent runs; else the first non-zero agent exit code, or 0.

        The first agent to fail ends the phase: the others are killed at once.
        """
        codes = [agent.poll() for agent in self.agents]  # each rescans its tree now and then
        for agent in self.agents:
            self.pids_seen.update(agent.pids_seen)
        failed = [code for code in codes if code not in (None, 0)]
        if failed and any(code is None for code in codes):
            self._failed_code = failed[0]
            self.kill_all()
            codes = [agent.poll() for agent in self.agents]
        if any(code is None for code in codes):
            return None
        return self._combined(codes)

    def _combined(self, codes: list[int | None]) -> int | None:
        if self._failed_code is not None:
            return self._failed_code
        if any(code is None for code in codes):
            return None
        return next((code for code in codes if code != 0), 0)

    def kill_all(self, sig: int = signal.SIGKILL, grace_s: float = 10.0) -> KillReport:
        """Kills every agent's tree and session, and every process with the run id."""
        report: KillReport | None = None
        for agent in self.agents:
            # The first call already sweeps every process carrying the run id, so the
            # later calls normally find nothing left; they confirm each agent's tree.
            one = kill_run(agent.pid, self.run_id, sig, grace_s)
            if report is None:
                report = one
            else:
                report.pids = sorted(set(report.pids) | set(one.pids))
                report.escalated_to_kill.extend(one.escalated_to_kill)
                report.seconds += one.seconds
        if report is None:
            report = kill_run(None, self.run_id, sig, grace_s)
        # Confirm once more over all agents: nothing of any node may survive.
        report.survivors = sorted(
            {pid for agent in self.agents for pid in kill_run(agent.pid, self.run_id, signal.SIGKILL, 5.0).survivors}
        )
        return report

    def kill(self, sig: int, grace_s: float) -> KillReport:
        """Signals every agent and worker of every node and confirms that all are gone."""
        self.note_pids()
        return self.kill_all(sig, grace_s)

    def reap(self, timeout: float = 10.0) -> int | None:
        """Waits for every agent to be reaped and its output drained."""
        codes = [agent.reap(timeout) for agent in self.agents]
        return self._combined(codes)
