"""Which Slurm launcher a run inside an sbatch job uses, if the wrapper asked for one."""

from __future__ import annotations

from orchestrator.run.launcher import Launcher, WorkerGroup
from orchestrator.slurm.jobs import SlurmJobLauncher, slurm_jobs_requested
from orchestrator.slurm.steps import SlurmStepLauncher, slurm_steps_requested


def slurm_launcher(workers: WorkerGroup) -> Launcher | None:
    """Job steps or one job per phase where the sbatch wrapper asked for them, else None."""
    if slurm_steps_requested():
        return SlurmStepLauncher(workers)
    if slurm_jobs_requested():
        return SlurmJobLauncher(workers)
    return None
