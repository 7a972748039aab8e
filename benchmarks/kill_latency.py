"""Sentinel-to-all-dead latency of the stop phase's kill, p50 and p95 over repeated kills.

    python benchmarks/kill_latency.py [--kills 20] [--signals KILL TERM] [SPEC]

Each kill is a real stop phase of the spec (fresh torchrun workers), killed by the
orchestrator's own code once the sentinel appears. Latency runs from the sentinel's
``written_at`` (stamped by rank 0) until every process of the phase is confirmed gone.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.run.events import PlainEvents  # noqa: E402 - after the path set-up
from orchestrator.run.options import RunOptions  # noqa: E402
from orchestrator.run.runner import Orchestrator  # noqa: E402

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(spec: Path, sig: int, kills: int) -> list[float]:
    """Latencies (seconds) of ``kills`` stop phases killed with ``sig``."""
    latencies = []
    with tempfile.TemporaryDirectory(prefix="stop-and-go-kill-") as tmp:
        for index in range(kills):
            options = RunOptions(spec=spec, run_dir=Path(tmp) / f"run{index}", kill_signal=sig)
            options.run_dir.mkdir()
            with open(Path(tmp) / "events.log", "a") as sink:
                record = Orchestrator(options, PlainEvents(sink, echo_workers=False)).stop_once()
            assert record["kill"]["survivors"] == [], record
            latencies.append(record["sentinel_to_all_dead_s"])
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=REPO / "harness_specs" / "tiny_lightning.py")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--signals", nargs="+", choices=sorted(SIGNALS), default=["KILL", "TERM"])
    args = parser.parse_args()
    print(f"spec: {args.spec}, {args.kills} kills per signal")
    for name in args.signals:
        latencies = measure(args.spec.resolve(), SIGNALS[name], args.kills)
        print(
            f"SIG{name:<4}  p50 {_percentile(latencies, 0.5) * 1000:7.1f} ms   "
            f"p95 {_percentile(latencies, 0.95) * 1000:7.1f} ms   "
            f"mean {statistics.mean(latencies) * 1000:7.1f} ms   max {max(latencies) * 1000:7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
