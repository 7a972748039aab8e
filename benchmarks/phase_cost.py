"""Prints what one phase costs in CPU seconds on this machine, and what that means for a suite (issue 15).

    python benchmarks/phase_cost.py [--repeat N]

On a small CPU machine a phase's cost is its processes' start-up, not its training: every
worker imports torch and Lightning, every torchrun agent imports torch. This measures,
each as the median of ``--repeat`` runs, wall and CPU seconds (user + system of the child
and everything it waited for) of:

1. ``python -c pass`` (the interpreter alone);
2. ``import torch``;
3. ``import lightning.pytorch`` (what every worker of a Lightning spec pays);
4. one bare continuous phase of the default spec's job under a plain torchrun, at 1 and at
   2 ranks (``benchmarks/_bare_worker.py``: no stop-and-go code at all);

then how many such phases fit in 15 minutes of this machine's cores, the budget of the
test suite. No thresholds: figures to read.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE_BUDGET_S = 15 * 60


def measure(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_of(command: list[str], repeat: int) -> tuple[float, float]:
    runs = [measure(command) for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def bare_phase(nproc: int) -> list[str]:
    root = tempfile.mkdtemp(prefix="phase_cost_")
    worker = str(REPO / "benchmarks" / "_bare_worker.py")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            worker, "continuous", root]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = [sys.executable, "-c"]
    rows = [
        ("python -c pass", [*python, "pass"]),
        ("import torch", [*python, "import torch"]),
        ("import lightning.pytorch", [*python, "import lightning.pytorch"]),
        ("bare phase, 1 rank", bare_phase(1)),
        ("bare phase, 2 ranks", bare_phase(2)),
    ]
    cores = os.cpu_count() or 1
    print(f"phase cost on this machine ({cores} cores), median of {args.repeat}:")
    figures = {}
    for name, command in rows:
        wall, cpu = median_of(command, args.repeat)
        figures[name] = cpu
        print(f"  {name:<26} wall {wall:5.1f}s  cpu {cpu:5.1f}s")
    budget = SUITE_BUDGET_S * cores
    one, two = figures["bare phase, 1 rank"], figures["bare phase, 2 ranks"]
    print(f"15 min of {cores} cores = {budget} cpu-s: at most {budget / one:.0f} phases at 1 rank, "
          f"{budget / two:.0f} at 2 ranks, {budget / (4 * two):.0f} default-scenario runs "
          "(stop, go1, go, continuous at 2 ranks)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
