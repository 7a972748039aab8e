"""Inside a Slurm allocation: each phase is its own ``srun`` job step.

The orchestrator runs on the batch host. For every phase it starts one step with one
torchrun agent per node (``srun --ntasks-per-node=1``); the agents meet in a c10d
rendezvous on the first host of ``SLURM_JOB_NODELIST``. On the sentinel the whole stop
step is killed on every node with ``scancel --signal=KILL JOBID.STEP`` (Slurm's cgroup
process tracking reaches every process of the step, even ones that started their own
session), and go gets a fresh step.

The sbatch script written by ``python -m orchestrator sbatch`` asks for this launcher by
setting ``STOP_AND_GO_SLURM_STEPS=1``; nothing else switches it on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.protocol import PHASE_STOP, RunLayout
from orchestrator.run.events import RunEvents
from orchestrator.run.launcher import PhaseProcess, WorkerGroup
from orchestrator.run.multinode import multinode_torchrun_command
from orchestrator.run.ports import free_port
from orchestrator.run.process_tree import KillReport, kill_run

ENV_SLURM_STEPS = "STOP_AND_GO_SLURM_STEPS"
# Set by ``sbatch --go-as-new-job``: every phase is its own job (``orchestrator.slurm.jobs``).
ENV_SLURM_JOBS = "STOP_AND_GO_SLURM_JOBS"
# Set by the sbatch script when it asked for Slurm's pre-timeout signal: the file its USR1
# trap writes (the arrival time) when the signal comes.
ENV_PRE_TIMEOUT_FILE = "STOP_AND_GO_PRE_TIMEOUT_FILE"
# How long a cancelled step may take to disappear from squeue.
STEP_GONE_TIMEOUT_S = 60.0
# How often a running phase asks squeue for its step until Slurm lists it.
STEP_LOOKUP_INTERVAL_S = 1.0


def slurm_steps_requested(env: dict[str, str] | None = None) -> bool:
    """True inside a job whose sbatch script asked for phases as job steps."""
    env = dict(os.environ) if env is None else env
    return env.get(ENV_SLURM_STEPS) == "1" and bool(env.get("SLURM_JOB_ID"))


def slurm_launch_requested(env: dict[str, str] | None = None) -> bool:
    """True where the sbatch wrapper asked for Slurm job steps or one job per phase."""
    env = dict(os.environ) if env is None else env
    return slurm_steps_requested(env) or env.get(ENV_SLURM_JOBS) == "1"


def wait_for_trigger(trigger: Path, phase: str, events: RunEvents, deadline: float, popen: subprocess.Popen) -> None:
    """With ``--signal-before``, the stop is killed only once Slurm's USR1 has come.

    The workers sit at their complete checkpoint (the sentinel) meanwhile, as a real job
    that checkpointed does until its time runs out. Waits at most until ``deadline``
    (monotonic; the workers' own wait for the kill ends soon after), or until the phase ends.
    """
    if not trigger.exists():
        events.event(
            "pre_timeout_wait",
            phase,
            f"{phase}: checkpoint complete; waiting for Slurm's pre-timeout signal (USR1) before the kill",
        )
    while not trigger.exists() and time.monotonic() < deadline and popen.poll() is None:
        time.sleep(0.2)
    if trigger.exists():
        arrived = trigger.read_text().strip()
        message = f"{phase}: Slurm's pre-timeout signal (USR1) arrived at {arrived}; killing the step"
        events.event("pre_timeout_signal", phase, message, arrived=arrived)
    else:
        events.event("pre_timeout_missing", phase, f"{phase}: no pre-timeout signal came; killing the step anyway")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[3-5],gpu1`` -> ``node3``), via scontrol."""
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return out.split()[0]


def job_steps(job_id: str) -> dict[str, str]:
    """The job's running steps: step name -> ``JOBID.STEP``."""
    return {name: step_id for name, (step_id, _) in job_steps_with_nodes(job_id).items()}


def job_steps_with_nodes(job_id: str) -> dict[str, tuple[str, str]]:
    """The job's running steps: step name -> (``JOBID.STEP``, the node list Slurm gave it)."""
    proc = subprocess.run(
        ["squeue", "-h", "-s", "-j", job_id, "-o", "%i|%j|%N"], capture_output=True, text=True, timeout=30, check=False
    )
    steps = {}
    for line in proc.stdout.splitlines():
        step_id, name, nodes = [*line.strip().split("|", 2), "", ""][:3]
        if step_id and name:
            steps[name] = (step_id, nodes)
    return steps


class SlurmStepLauncher:
    """Runs each phase as an ``srun`` step: one torchrun agent per node, c10d rendezvous."""

    def __init__(self, workers: WorkerGroup) -> None:
        self.workers = workers
        self.nnodes = workers.nnodes
        self.job_id = os.environ["SLURM_JOB_ID"]
        self.head = first_host(os.environ.get("SLURM_JOB_NODELIST", os.uname().nodename))
        pre_timeout = os.environ.get(ENV_PRE_TIMEOUT_FILE)
        self.pre_timeout_file = Path(pre_timeout) if pre_timeout else None
        self._stop_launched = False

    def launch(
        self,
        phase: str,
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        nproc_per_node: int | None = None,
    ) -> SlurmStepPhase:
        base = self.workers.command(phase, layout, nproc_per_node)
        # The port is probed on the batch host, which Slurm makes the job's first node.
        endpoint = f"{self.head}:{free_port('0.0.0.0')}"
        torchrun = multinode_torchrun_command(
            base, self.nnodes, endpoint, f"{run_id}-{phase}", layout.torchrun_log_dir(phase), 0
        )
        # One log dir for the step: torchrun gives every agent its own subdirectory in it.
        torchrun[torchrun.index("--log-dir") + 1] = str(layout.torchrun_log_dir(phase))
        step_name = f"stop-and-go-{phase}-{run_id[:8]}"
        command = [
            "srun",
            f"--job-name={step_name}",
            f"--nodes={self.nnodes}",
            f"--ntasks={self.nnodes}",
            "--ntasks-per-node=1",
            # One agent failing ends the step on every node, as in the local multi-node case.
            "--kill-on-bad-exit=1",
            *torchrun,
        ]
        # Only the first stop phase waits for the pre-timeout signal: it is the job's one stop.
        trigger = self.pre_timeout_file if (phase == PHASE_STOP and not self._stop_launched) else None
        self._stop_launched = self._stop_launched or phase == PHASE_STOP
        return SlurmStepPhase(
            phase, command, layout, run_id, wait_for_kill_s, events, self.job_id, step_name, trigger, endpoint
        )


class SlurmStepPhase(PhaseProcess):
    """One phase's ``srun`` process and the job step it runs."""

    def __init__(
        self,
        phase: str,
        command: list[str],
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        job_id: str,
        step_name: str,
        pre_timeout_file: Path | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(phase, command, layout, run_id, wait_for_kill_s, events)
        self.job_id = job_id
        self.step_name = step_name
        self.step_id: str | None = None
        self.events = events
        self.pre_timeout_file = pre_timeout_file
        self.wait_for_kill_s = wait_for_kill_s
        self.endpoint = endpoint  # the c10d rendezvous, HOST:PORT
        self._next_lookup = 0.0

    def poll(self) -> int | None:
        """As ``PhaseProcess.poll``; once Slurm lists the step, says which nodes run it (once)."""
        code = super().poll()
        if self.step_id is None and code is None and time.monotonic() >= self._next_lookup:
            self._next_lookup = time.monotonic() + STEP_LOOKUP_INTERVAL_S
            self._lookup_step()
        return code

    def _lookup_step(self) -> None:
        step_id, nodes = job_steps_with_nodes(self.job_id).get(self.step_name, (None, ""))
        if step_id is None:
            return
        self.step_id = step_id
        # Where the agents run, as Slurm placed them: the evidence that a step spans the nodes.
        message = f"{self.phase}: Slurm step {step_id} on {nodes}, rendezvous at {self.endpoint}"
        self.events.event("slurm_step", self.phase, message, step_id=step_id, nodes=nodes, endpoint=self.endpoint)

    def _find_step(self, wait_s: float) -> str | None:
        deadline = time.monotonic() + wait_s
        while self.step_id is None:
            self._lookup_step()
            if self.step_id is not None or time.monotonic() > deadline or self.popen.poll() is not None:
                break
            time.sleep(0.1)
        return self.step_id

    def kill(self, sig: int, grace_s: float) -> KillReport:
        """``scancel --signal=SIG JOBID.STEP`` (KILL after ``grace_s``), then confirms it is gone."""
        self.note_pids()
        trigger, self.pre_timeout_file = self.pre_timeout_file, None  # waits once only
        if trigger is not None:
            wait_for_trigger(trigger, self.phase, self.events, self.started + self.wait_for_kill_s - 5.0, self.popen)
        started = time.monotonic()
        step = self._find_step(wait_s=10.0)
        report = KillReport(signal=signal.Signals(sig).name)
        if step is not None:
            self._scancel(step, sig)
            if sig != signal.SIGKILL and not self._step_gone(step, grace_s):
                self._scancel(step, signal.SIGKILL)
            self._step_gone(step, STEP_GONE_TIMEOUT_S)
        # What remains on this host (srun itself, or a step that never registered) goes the
        # local way; on this host it also confirms that every process of the run is gone.
        local = kill_run(self.popen.pid, self.run_id, signal.SIGKILL, 5.0)
        report.pids = sorted(self.pids_seen | set(local.pids))
        report.survivors = local.survivors
        if step is not None and step in job_steps(self.job_id).values():
            # The step outlived the kill on some node psutil cannot see; -1 stands for it.
            report.survivors.append(-1)
        report.seconds = time.monotonic() - started
        return report

    def _scancel(self, step: str, sig: int) -> None:
        subprocess.run(
            ["scancel", f"--signal={signal.Signals(sig).name.removeprefix('SIG')}", step],
            capture_output=True,
            timeout=30,
            check=False,
        )

    def _step_gone(self, step: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None and step not in job_steps(self.job_id).values():
                return True
            time.sleep(0.1)
        return False
