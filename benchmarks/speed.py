"""Prints where a verdict's wall time goes, measured in one invocation (issue 15).

    python benchmarks/speed.py [--nproc-per-node N] [--skip-bare]

Runs, one after the other on this machine:
1. the bare baseline: three plain torchrun launches of the same tiny job, stop (2 steps),
   go (resume to the end) and continuous (``benchmarks/_bare_worker.py``);
2. the full orchestrator verdict of the default spec with one stop (``--single-stop``: the
   same three phases as the bare baseline), pre-warmed;
3. the same with ``--no-prewarm``;
4. the default scenario (stop, go1 in the next epoch, go, continuous), pre-warmed;
and prints each wall time, the ratio full/bare, and the kill -> go first step latency with
and without pre-warm (from the reports' ``"timings"``). No thresholds: figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "harness_specs" / "tiny_lightning.py"


def bare(root: Path, nproc: int) -> float:
    """Wall seconds of the three plain torchrun launches."""
    started = time.monotonic()
    for phase in ("stop", "go", "continuous"):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            str(REPO / "benchmarks" / "_bare_worker.py"), phase, str(root),
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(f"bare {phase} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - started


def verdict(run_dir: Path, nproc: int, *extra: str) -> tuple[float, dict]:
    """Wall seconds of one orchestrator run and its report's timings."""
    command = [sys.executable, "-m", "orchestrator", str(SPEC), "--run-dir", str(run_dir), "--quiet",
               "--nproc-per-node", str(nproc), *extra]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"orchestrator {' '.join(extra)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, json.loads((run_dir / "report.json").read_text())["timings"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc-per-node", type=int, default=2)
    parser.add_argument("--skip-bare", action="store_true", help="only the two orchestrator runs")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="stop-and-go-speed-") as tmp:
        root = Path(tmp)
        bare_s = None if args.skip_bare else bare(root / "bare", args.nproc_per_node)
        warm_s, warm = verdict(root / "prewarm", args.nproc_per_node, "--single-stop")
        cold_s, cold = verdict(root / "cold", args.nproc_per_node, "--single-stop", "--no-prewarm")
        default_s, default = verdict(root / "default", args.nproc_per_node)
    if bare_s is not None:
        print(f"bare stop+go+continuous (3 plain torchrun launches): {bare_s:.1f}s")
    print(f"full verdict, pre-warmed:  {warm_s:.1f}s (stop {warm['stop_s']:.1f}s, go {warm['go_s']:.1f}s, "
          f"reference {warm['reference_s']:.1f}s)")  # fmt: skip
    print(f"full verdict, --no-prewarm: {cold_s:.1f}s (stop {cold['stop_s']:.1f}s, go {cold['go_s']:.1f}s, "
          f"reference {cold['reference_s']:.1f}s)")  # fmt: skip
    print(f"default scenario (stop, go1, go, continuous), pre-warmed: {default_s:.1f}s "
          f"(phases: {', '.join(f'{k} {v:.1f}s' for k, v in default['phases_s'].items())})")  # fmt: skip
    if bare_s is not None:
        print(f"ratio full/bare (one stop): {warm_s / bare_s:.2f}x pre-warmed, {cold_s / bare_s:.2f}x without")
    print(f"kill -> go first step: {warm['kill_to_go_first_step_s']:.2f}s pre-warmed, "
          f"{cold['kill_to_go_first_step_s']:.2f}s without")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
