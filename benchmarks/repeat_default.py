"""Runs the correct default spec N times and prints how many verified (the issue asks 20/20).

    python benchmarks/repeat_default.py [SPEC] [--runs 20] [--keep DIR]

Each run is a full orchestrator run (stop, kill, go, continuous reference, verdict) in
fresh processes. Prints one line per run (exit code, wall time, first failure if any),
then ``verified X/N`` and the wall-time spread. No thresholds: exit 0 only when every
run verified, so a flaky (non-deterministic) spec shows up as a count below N.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "harness_specs" / "tiny_lightning.py"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stop-and-go-repeat-") as tmp:
        root = args.keep or Path(tmp)
        verified, walls = 0, []
        for n in range(1, args.runs + 1):
            run_dir = root / f"run{n:02d}"
            command = [sys.executable, "-m", "orchestrator", args.spec, "--run-dir", str(run_dir), "--quiet"]
            started = time.monotonic()
            proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            wall = time.monotonic() - started
            walls.append(wall)
            verified += proc.returncode == 0
            reason = ""
            if proc.returncode != 0:
                report = run_dir / "report.json"
                failures = json.loads(report.read_text())["verdict"]["failures"] if report.exists() else []
                reason = "  " + (failures[0] if failures else proc.stderr.strip()[-300:])
            print(f"run {n:2d}: exit {proc.returncode}  {wall:6.1f}s{reason}", flush=True)
    print(f"verified {verified}/{args.runs}")
    print(f"wall per run: median {statistics.median(walls):.1f}s, min {min(walls):.1f}s, max {max(walls):.1f}s")
    return 0 if verified == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
