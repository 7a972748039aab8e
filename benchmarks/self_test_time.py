"""Prints the wall time of the whole mutant catalog's self-test, and where it goes (issue 15).

    python benchmarks/self_test_time.py [--jobs N] [--nproc-per-node N]

Runs ``python -m orchestrator self-test --jobs N`` once (the control and every mutant of
``harness_specs/mutants``, each a real orchestrator run) and prints its wall time, the
caught count, the machine's load, and each run's wall time and ranks, slowest first.
No thresholds: figures to read (the target is 3 minutes with ``--jobs 2`` on 2 cores).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--nproc-per-node", type=int, help="the self-test's own default when left out")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="stop-and-go-self-test-") as tmp:
        run_root = Path(tmp) / "runs"
        command = [sys.executable, "-m", "orchestrator", "self-test", "--jobs", str(args.jobs)]
        command += ["--run-dir", str(run_root)]
        if args.nproc_per_node:
            command += ["--nproc-per-node", str(args.nproc_per_node)]
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        wall = time.monotonic() - started
        summary_path = run_root / "self_test.json"
        if not summary_path.is_file():
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            return 1
        summary = json.loads(summary_path.read_text())
        ranks = {}
        for mutant in summary["mutants"]:
            run_json = Path(mutant["run_dir"]) / "run.json"
            ranks[mutant["name"]] = json.loads(run_json.read_text())["nproc_per_node"] if run_json.is_file() else "?"
    print(f"self-test --jobs {args.jobs}: {wall:.0f}s, caught {summary['caught']}/{summary['total']}, "
          f"control {'verified' if summary['control_ok'] else 'FAILED'} (exit {proc.returncode})")  # fmt: skip
    for mutant in sorted(summary["mutants"], key=lambda m: -m["wall_s"]):
        print(f"  {mutant['wall_s']:6.1f}s  {ranks[mutant['name']]} rank(s)  {mutant['name']}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
