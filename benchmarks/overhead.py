"""Prints the cost of a stop-and-go run of the default spec, measured in one run.

    python benchmarks/overhead.py [SPEC] [--nproc-per-node N]

Figures: wall time of stop+go vs the continuous run of the same steps (and their ratio),
the latency from the sentinel to every stop process confirmed dead, and the
orchestrator's peak RSS. No thresholds: the numbers are for people to read and compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "harness_specs" / "tiny_lightning.py"))
    parser.add_argument("--nproc-per-node", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stop-and-go-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "orchestrator", args.spec, "--run-dir", str(run_dir),
            "--nproc-per-node", str(args.nproc_per_node), "--quiet", "--single-stop",  # stop+go: one resume
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        report_path = run_dir / "report.json"
        if not report_path.exists():
            print(proc.stderr, file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text())
    walls = {phase["name"]: phase["wall_s"] for phase in report["phases"]}
    stop_go = walls.get("stop", 0.0) + walls.get("go", 0.0)
    continuous = walls.get("continuous")
    print(f"spec:                         {args.spec}")
    print(f"verdict:                      exit {report['exit_code']} ({report['message']})")
    print(f"stop wall:                    {walls.get('stop', float('nan')):.2f} s")
    print(f"go wall:                      {walls.get('go', float('nan')):.2f} s")
    print(f"stop+go wall:                 {stop_go:.2f} s")
    if continuous:
        print(f"continuous wall:              {continuous:.2f} s")
        print(f"stop+go / continuous:         {stop_go / continuous:.2f}x")
    latency = report["sentinel_to_all_dead_s"]
    if latency is not None:
        print(f"sentinel -> all dead:         {latency * 1000:.0f} ms")
    print(f"orchestrator peak RSS:        {report['orchestrator_peak_rss_mb']:.1f} MiB")
    return 0 if report["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
