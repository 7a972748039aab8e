"""``sbatch --go-as-new-job``: every phase is its own Slurm job, go after the stop job ends.

The orchestrator runs where the wrapper runs (a login node) and submits each phase as a
batch job with ``sbatch --wait``: stop first; on the sentinel the whole stop job is killed
(``scancel --signal=KILL`` to its steps on every node, then the job is cancelled), as a preemption
would; go is a new job with ``--dependency=afterany:STOPJOB``, so it resumes in a fresh
allocation; the continuous reference is a third job. Inside each job, ``srun`` starts
one torchrun agent per node with a c10d rendezvous on the job's first host.

The wrapper asks for this launcher with ``STOP_AND_GO_SLURM_JOBS=1``; the job options come
in ``STOP_AND_GO_SLURM_SBATCH`` (extra ``#SBATCH`` options, space-separated) and
``STOP_AND_GO_SIGNAL_BEFORE`` (the stop job's pre-timeout signal, seconds).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_STOP, RunLayout
from orchestrator.run.events import RunEvents
from orchestrator.run.launcher import PhaseProcess, WorkerGroup
from orchestrator.run.multinode import multinode_torchrun_command
from orchestrator.run.ports import port_for
from orchestrator.run.process_tree import KillReport, kill_run
from orchestrator.slurm.script import PRE_TIMEOUT_FILE
from orchestrator.slurm.steps import ENV_SLURM_JOBS, job_steps, wait_for_trigger

ENV_SBATCH_OPTIONS = "STOP_AND_GO_SLURM_SBATCH"
ENV_SIGNAL_BEFORE = "STOP_AND_GO_SIGNAL_BEFORE"
# Set by ``sbatch --go-on-other-nodes``: go's jobs exclude the nodes the stop job ran on.
ENV_GO_ON_OTHER_NODES = "STOP_AND_GO_GO_ON_OTHER_NODES"
JOB_GONE_TIMEOUT_S = 60.0


def slurm_jobs_requested() -> bool:
    """True where the wrapper asked for one Slurm job per phase (``--go-as-new-job``)."""
    return os.environ.get(ENV_SLURM_JOBS) == "1"


def rdzv_port(run_id: str) -> int:
    """A rendezvous port from the run id, below the ephemeral range: runs that share a node do not collide."""
    return port_for(run_id)


def job_id_by_name(name: str) -> str | None:
    """The id of the queued or running job called ``name``."""
    proc = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=30)
    ids = proc.stdout.split()
    return ids[0] if ids else None


def job_nodes(job_id: str) -> str | None:
    """The node list of a job that ran (``scontrol`` keeps an ended job for MinJobAge)."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    fields = dict(word.split("=", 1) for word in proc.stdout.split() if "=" in word)
    nodes = fields.get("NodeList", "")
    return nodes if nodes and nodes != "(null)" else None


def job_running(job_id: str) -> bool:
    """Whether Slurm still lists the job as pending, running or completing."""
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    return bool(proc.stdout.strip())


class SlurmJobLauncher:
    """Runs each phase as its own ``sbatch --wait`` job; go depends on the stop job."""

    def __init__(self, workers: WorkerGroup) -> None:
        self.workers = workers
        self.nnodes = workers.nnodes
        self.sbatch_options = shlex.split(os.environ.get(ENV_SBATCH_OPTIONS, ""))
        signal_before = os.environ.get(ENV_SIGNAL_BEFORE)
        self.signal_before_s = int(signal_before) if signal_before else None
        self.stop_job_id: str | None = None
        self.go_on_other_nodes = os.environ.get(ENV_GO_ON_OTHER_NODES) == "1"

    def launch(
        self,
        phase: str,
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        nproc_per_node: int | None = None,
    ) -> SlurmJobPhase:
        base = self.workers.command(phase, layout, nproc_per_node)
        # The endpoint host is the job's first node, known only inside the job: the
        # script fills it in from SLURM_JOB_NODELIST.
        torchrun = multinode_torchrun_command(
            base,
            self.nnodes,
            "${head}:" + str(rdzv_port(run_id)),
            f"{run_id}-{phase}",
            layout.torchrun_log_dir(phase),
            0,
        )
        torchrun[torchrun.index("--log-dir") + 1] = str(layout.torchrun_log_dir(phase))
        name = f"stop-and-go-{phase}-{run_id[:8]}"
        options = [f"--job-name={name}", f"--nodes={self.nnodes}", "--ntasks-per-node=1", "--no-requeue"]
        options += self.sbatch_options
        # Job output goes to the phase log, next to what the orchestrator writes there.
        options += [f"--output={layout.phase_log(phase)}", "--open-mode=append", f"--chdir={Path.cwd()}"]
        trigger = None
        if phase == PHASE_STOP and self.signal_before_s is not None and self.stop_job_id is None:
            options.append(f"--signal=B:USR1@{self.signal_before_s}")
            trigger = layout.root / PRE_TIMEOUT_FILE
        if phase != PHASE_STOP and self.stop_job_id is not None:
            # A fresh allocation once the stop job has ended, as after a preemption.
            options.append(f"--dependency=afterany:{self.stop_job_id}")
            stop_nodes = job_nodes(self.stop_job_id) if self.go_on_other_nodes and phase != PHASE_CONTINUOUS else None
            if stop_nodes:
                # Nothing the stop left on its nodes (files in /tmp, a process, a GPU) can help go there.
                options.append(f"--exclude={stop_nodes}")
                events.event("slurm_exclude", phase, f"{phase}: its job excludes the stop job's nodes ({stop_nodes})")
        script = layout.root / "slurm" / f"{phase}.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(_phase_script(phase, options, torchrun, trigger), encoding="utf-8")
        handle = SlurmJobPhase(phase, ["sbatch", "--wait", "--parsable", str(script)], layout, run_id,
                               wait_for_kill_s, events, name, trigger)  # fmt: skip
        job_id = handle.find_job_id(wait_s=30.0)
        if phase == PHASE_STOP and self.stop_job_id is None:
            self.stop_job_id = job_id
        return handle


def _phase_script(phase: str, options: list[str], torchrun: list[str], trigger: Path | None) -> str:
    command = " ".join(shlex.quote(word) if "${head}" not in word else f'"{word}"' for word in torchrun)
    lines = [
        "#!/bin/bash",
        f"# stop-and-go {phase} phase as its own job (written by the orchestrator, --go-as-new-job)",
        *(f"#SBATCH {option}" for option in options),
        "",
        "set -u",
        'head="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
    ]
    if trigger is not None:
        quoted = shlex.quote(str(trigger))
        lines += [
            "# Slurm's pre-timeout signal is the stop trigger (see orchestrator.slurm.script).",
            f"trap 'date -u +%Y-%m-%dT%H:%M:%SZ > {quoted}' USR1",
            f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 {command} &",
            'while wait "$!"; code=$?; kill -0 "$!" 2>/dev/null; do :; done',
            'exit "$code"',
        ]
    else:
        lines.append(f"exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 {command}")
    return "\n".join(lines) + "\n"


class SlurmJobPhase(PhaseProcess):
    """A phase job: the local ``sbatch --wait`` process and the job it follows."""

    def __init__(
        self,
        phase: str,
        command: list[str],
        layout: RunLayout,
        run_id: str,
        wait_for_kill_s: float,
        events: RunEvents,
        job_name: str,
        pre_timeout_file: Path | None,
    ) -> None:
        super().__init__(phase, command, layout, run_id, wait_for_kill_s, events)
        self.job_name = job_name
        self.job_id: str | None = None
        self.events = events
        self.pre_timeout_file = pre_timeout_file
        self.wait_for_kill_s = wait_for_kill_s

    def find_job_id(self, wait_s: float) -> str | None:
        deadline = time.monotonic() + wait_s
        while self.job_id is None and time.monotonic() < deadline and self.popen.poll() is None:
            self.job_id = job_id_by_name(self.job_name)
            if self.job_id is None:
                time.sleep(0.2)
        if self.job_id is not None:
            self.events.event("slurm_job", self.phase, f"{self.phase}: Slurm job {self.job_id}", job_id=self.job_id)
        return self.job_id

    def kill(self, sig: int, grace_s: float) -> KillReport:
        """Kills the whole phase job (every step, batch included) and confirms it has ended."""
        self.note_pids()
        trigger, self.pre_timeout_file = self.pre_timeout_file, None
        if trigger is not None:
            wait_for_trigger(trigger, self.phase, self.events, self.started + self.wait_for_kill_s - 5.0, self.popen)
        started = time.monotonic()
        job = self.job_id or self.find_job_id(wait_s=10.0)
        report = KillReport(signal=signal.Signals(sig).name)
        if job is not None:
            # The signal goes to the job's steps (where torchrun and the workers run):
            # Slurm turns a SIGKILL for a whole job into its cancel sequence (SIGTERM first,
            # SIGKILL after KillWait), but delivers it to a step as it is.
            self._signal_steps(job, sig)
            if sig != signal.SIGKILL and not self._job_gone(job, grace_s):
                self._signal_steps(job, signal.SIGKILL)
            # The batch shell has nothing left to run; cancelling frees the allocation.
            subprocess.run(["scancel", job], capture_output=True, timeout=30, check=False)
            if not self._job_gone(job, JOB_GONE_TIMEOUT_S):
                report.survivors.append(-1)  # -1 stands for the job, still listed by Slurm
        local = kill_run(self.popen.pid, self.run_id, signal.SIGKILL, 5.0)
        report.pids = sorted(self.pids_seen | set(local.pids))
        report.survivors += local.survivors
        report.seconds = time.monotonic() - started
        return report

    def _signal_steps(self, job: str, sig: int) -> None:
        name = signal.Signals(sig).name.removeprefix("SIG")
        for step in job_steps(job).values():
            if step.split(".")[-1].isdigit():  # not the batch or extern step
                subprocess.run(["scancel", f"--signal={name}", step], capture_output=True, timeout=30, check=False)

    def _job_gone(self, job: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Not sbatch --wait's exit: it polls the job with a back-off of many seconds.
            if not job_running(job):
                return True
            time.sleep(0.2)
        return False
