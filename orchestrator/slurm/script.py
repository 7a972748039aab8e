"""The sbatch script of a stop-and-go job: readable, self-contained, kept in the run dir.

The script runs the orchestrator on the batch host with ``STOP_AND_GO_SLURM_STEPS=1``, so
every phase becomes an ``srun`` step (``orchestrator.slurm.steps``). It runs the
orchestrator in the background and waits for it, so that the batch shell can handle
Slurm's signals: SIGTERM (``scancel``, the time limit) is passed on, and the pre-timeout
signal of ``--signal=B:USR1@SECONDS`` is recorded in ``pre_timeout_signal``, the
orchestrator's stop trigger. The orchestrator's exit code goes to ``slurm_exit_code`` in
the run dir, where the wrapper reads it once the job has ended.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

EXIT_CODE_FILE = "slurm_exit_code"
SCRIPT_FILE = "sbatch.sh"
PRE_TIMEOUT_FILE = "pre_timeout_signal"


@dataclass
class JobSpec:
    """What one sbatch job runs and asks Slurm for."""

    python: str
    spec: Path
    run_dir: Path
    workdir: Path
    nodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 0
    partition: str | None = None
    time_limit: str | None = None
    account: str | None = None
    job_name: str = "stop-and-go"
    signal_before_s: int | None = None
    orchestrator_args: list[str] = field(default_factory=list)
    module: str = "orchestrator"
    dependency: str | None = None
    # ``sbatch ... run [OPTIONS] -- SCRIPT ARGS``: the job runs a wrapped script, ``spec``
    # is the script, and ``orchestrator_args`` end with ``-- SCRIPT ARGS``.
    script_mode: bool = False

    def orchestrator_command(self) -> list[str]:
        """The command the batch script runs."""
        return [
            self.python,
            "-m",
            self.module,
            *(["run"] if self.script_mode else [str(self.spec)]),
            "--run-dir",
            str(self.run_dir),
            "--nnodes",
            str(self.nodes),
            "--nproc-per-node",
            str(self.nproc_per_node),
            *self.orchestrator_args,
        ]


def sbatch_directives(job: JobSpec) -> list[str]:
    """The ``#SBATCH`` lines of the job."""
    lines = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        f"--output={job.run_dir}/slurm-%j.out",
        f"--chdir={job.workdir}",
        # A run is not restartable as a whole: after a node failure Slurm would requeue the job
        # into the run dir its first attempt filled; it ends as NODE_FAIL instead.
        "--no-requeue",
    ]
    if job.gpus_per_node:
        lines.append(f"--gpus-per-node={job.gpus_per_node}")
    if job.partition:
        lines.append(f"--partition={job.partition}")
    if job.time_limit:
        lines.append(f"--time={job.time_limit}")
    if job.account:
        lines.append(f"--account={job.account}")
    if job.signal_before_s is not None:
        # B: to the batch shell only, which passes it to the orchestrator.
        lines.append(f"--signal=B:USR1@{job.signal_before_s}")
    if job.dependency:
        lines.append(f"--dependency={job.dependency}")
    return [f"#SBATCH {line}" for line in lines]


def render_script(job: JobSpec) -> str:
    """The whole batch script, as it is written to ``RUN_DIR/sbatch.sh``."""
    command = shlex.join(job.orchestrator_command())
    exit_file = shlex.quote(str(job.run_dir / EXIT_CODE_FILE))
    return "\n".join(
        [
            "#!/bin/bash",
            f"# stop-and-go job for {job.spec}",
            f"# written by `python -m orchestrator sbatch` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            *sbatch_directives(job),
            "",
            "set -u",
            "# Each phase (stop, go, reference) runs as its own srun job step.",
            "export STOP_AND_GO_SLURM_STEPS=1",
            *_pre_timeout_lines(job),
            "",
            "# The orchestrator runs in the background so that this shell can pass on signals:",
            "# TERM (scancel, time limit) makes it kill the active step and exit 130.",
            f"{command} &",
            "orchestrator=$!",
            "trap 'kill -TERM \"$orchestrator\" 2>/dev/null' TERM INT",
            "# wait returns early when a trapped signal arrives; wait again until it has exited.",
            'while wait "$orchestrator"; code=$?; kill -0 "$orchestrator" 2>/dev/null; do :; done',
            f'echo "$code" > {exit_file}',
            'exit "$code"',
            "",
        ]
    )


def _pre_timeout_lines(job: JobSpec) -> list[str]:
    """With ``--signal=B:USR1@S``: the trap that turns Slurm's signal into the stop trigger."""
    if job.signal_before_s is None:
        return []
    trigger = shlex.quote(str(job.run_dir / PRE_TIMEOUT_FILE))
    return [
        "# Slurm's pre-timeout signal is the stop trigger: the trap records its arrival in a",
        "# file, and the orchestrator kills the stop step (at its complete checkpoint) once",
        "# the file exists. A file, not a signal, so it cannot come too early for anyone.",
        f"export STOP_AND_GO_PRE_TIMEOUT_FILE={trigger}",
        f"trap 'date -u +%Y-%m-%dT%H:%M:%SZ > {trigger}' USR1",
    ]
