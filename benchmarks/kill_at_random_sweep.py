"""Kill at a random step for N seeds: every run must verify.

    python benchmarks/kill_at_random_sweep.py [--seeds 20] [--cycles 1] [SPEC]

Prints, per seed, the step the stop landed on, the checkpoint go resumed from and the
verdict, then ``verified X/N``. Exit status 1 if any seed did not verify.
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
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=1)
    args = parser.parse_args()
    verified = 0
    with tempfile.TemporaryDirectory(prefix="stop-and-go-sweep-") as tmp:
        for seed in range(args.seeds):
            run_dir = Path(tmp) / f"seed{seed}"
            command = [
                sys.executable, "-m", "orchestrator", args.spec, "--run-dir", str(run_dir), "--quiet",
                "--kill-at", "random", "--seed", str(seed), "--cycles", str(args.cycles),
            ]  # fmt: skip
            proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            report_path = run_dir / "report.json"
            if not report_path.exists():
                print(f"seed {seed:3d}: no report (exit {proc.returncode}): {proc.stderr.strip()[-200:]}")
                continue
            report = json.loads(report_path.read_text())
            stops = [s["trigger"].get("stopped_at") for s in report.get("stops", [])]
            resumes = [r["resumed_step"] for r in (report.get("verdict") or {}).get("resumes", [])]
            verified += report["exit_code"] == 0
            print(f"seed {seed:3d}: stopped at {stops}, resumed from {resumes}: exit {report['exit_code']}")
    print(f"verified {verified}/{args.seeds}")
    return 0 if verified == args.seeds else 1


if __name__ == "__main__":
    sys.exit(main())
