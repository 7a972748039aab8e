"""What a test-suite run launched: runs, torchrun phases and worker processes, by test.

The test suite is CPU-bound on its workers' start-up (``benchmarks/phase_cost.py``), so the
number of worker processes it launches bounds its wall time. Run the suite with a known
base temp directory, then point this script at it::

    pytest -p no:cacheprovider --basetemp /tmp/bt
    python benchmarks/suite_census.py /tmp/bt

It reads every ``report.json`` the suite's runs left (each phase's torchrun command gives
its ranks) and prints the totals, the phases that were pre-warmed and killed unused, and the
tests that launched the most worker processes. Runs that wrote no report (a run refused
before launch) launched nothing and are not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from orchestrator.run.prewarm import KILLED_BEFORE_GO_AHEAD


def ranks_of(command: str | list[str]) -> int:
    """The worker processes one phase's torchrun command starts on its node."""
    words = command if isinstance(command, list) else command.replace("'", " ").replace(",", " ").split()
    for flag in ("--nproc-per-node", "--nproc_per_node"):
        if flag in words:
            return int(words[words.index(flag) + 1])
    return 1


def test_of(report: Path, basetemp: Path) -> str:
    """The pytest tmp directory a report lies under: the test (or fixture) that made it."""
    return report.relative_to(basetemp).parts[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("basetemp", type=Path, help="the suite's --basetemp directory")
    parser.add_argument("--top", type=int, default=15, help="how many tests to list (default 15)")
    args = parser.parse_args()
    reports = sorted(args.basetemp.rglob("report.json"))
    if not reports:
        print(f"no report.json under {args.basetemp}", file=sys.stderr)
        return 2
    phases_by_ranks: Counter[int] = Counter()
    workers_by_test: Counter[str] = Counter()
    unused = 0
    for path in reports:
        try:
            phases = json.loads(path.read_text())["phases"]
        except (ValueError, KeyError):
            continue  # not a run report (another tool's report.json)
        for phase in phases:
            ranks = ranks_of(phase.get("command", ""))
            phases_by_ranks[ranks] += 1
            workers_by_test[test_of(path, args.basetemp)] += ranks
            if phase.get("outcome") == KILLED_BEFORE_GO_AHEAD:
                unused += ranks
    workers = sum(r * n for r, n in phases_by_ranks.items())
    by_ranks = ", ".join(f"{n} at {r} rank{'s' if r > 1 else ''}" for r, n in sorted(phases_by_ranks.items()))
    print(f"{len(reports)} runs, {sum(phases_by_ranks.values())} torchrun phases ({by_ranks})")
    print(f"{workers} worker processes, {unused} of them pre-warmed for a phase that never ran")
    print(f"tests that launched the most worker processes (top {args.top}):")
    for test, count in workers_by_test.most_common(args.top):
        print(f"  {count:4d}  {test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
