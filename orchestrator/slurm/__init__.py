"""Slurm: the sbatch wrapper, its script, and the launchers that run phases as job steps or jobs."""
