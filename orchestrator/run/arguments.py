"""The options of a run, as ``python -m orchestrator SPEC`` parses them (grouped like torchrun's)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from orchestrator.arguments import OneLineParser, UsageError
from orchestrator.exit_codes import exit_code_table

KILL_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}

DESCRIPTION = """\
Prove that a training run resumes: run the spec's stop phase in fresh torchrun workers,
kill the whole worker tree once the checkpoint is complete (sentinel), resume in fresh
workers (go), run an uninterrupted reference, and compare every recorded metric on every
rank: at the resume point and step by step afterwards."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, grouped like torchrun's, with defaults and exit codes shown."""
    parser = OneLineParser(
        prog="python -m orchestrator",
        description=DESCRIPTION,
        epilog="exit codes:\n" + exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", type=Path, help="a Python file defining a StopAndGoHarness subclass")
    workers = parser.add_argument_group("workers")
    workers.add_argument("--harness", metavar="NAME", help="the harness class to run when the spec defines several")
    workers.add_argument(
        "--nproc-per-node", type=int, default=2, metavar="N", help="worker processes per phase (default: 2)"
    )
    workers.add_argument(
        "--go-nproc-per-node",
        type=int,
        metavar="M",
        help="resume with M workers instead of --nproc-per-node (the spec must declare "
        "supports_world_size_change; the report lists what the change of world size changed)",
    )
    workers.add_argument(
        "--nnodes",
        type=int,
        default=1,
        metavar="N",
        help="torchrun agents (nodes) per phase, joined by a c10d rendezvous on this machine (default: 1)",
    )
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument(
        "--kill-signal",
        choices=sorted(KILL_SIGNALS),
        default="KILL",
        help="signal sent to every stop process once the sentinel appears (default: KILL)",
    )
    scenario.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with TERM or INT, seconds before survivors are SIGKILLed (default: 10)",
    )
    scenario.add_argument(
        "--kill-at",
        metavar="STEP|random",
        help="stop at this global step (or a random one, see --seed) instead of at the first checkpointed "
        "validation; go resumes from the last complete checkpoint",
    )
    scenario.add_argument("--seed", type=int, default=0, metavar="N", help="seed of --kill-at random (default: 0)")
    scenario.add_argument(
        "--kill-during-save",
        action="store_true",
        help="kill the stop workers halfway through writing last.ckpt of the second checkpoint",
    )
    scenario.add_argument(
        "--cycles",
        type=int,
        default=1,
        metavar="N",
        help="stop and resume N times in fresh processes, verifying every resume (default: 1)",
    )
    scenario.add_argument(
        "--single-stop",
        dest="epoch_coverage",
        action="store_false",
        help="stop once, at the first checkpoint (the seed's scenario). Default: a second stop (go1) at the "
        "first checkpoint of a later epoch, so the final go resumes after an epoch boundary (dropped when "
        "the run has no such checkpoint)",
    )
    # The option that turned go1 on before it was the default; kept so old command lines run.
    scenario.add_argument("--cover-epoch-boundary", dest="epoch_coverage", action="store_true", help=argparse.SUPPRESS)
    scenario.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the continuous reference run (checks only the resume point)",
    )
    scenario.add_argument(
        "--reference-from",
        type=Path,
        metavar="DIR",
        help="reuse the finished continuous reference of the run in DIR (same code and ranks; the caller "
        "vouches that its spec's continuous run is this one's, as self-test does for SHARES_REFERENCE)",
    )
    scenario.add_argument(
        "--concurrent-reference",
        choices=("auto", "always", "never"),
        default="auto",
        help="run the continuous reference alongside stop and go: auto does where the machine has room "
        "(CPU only, 4 cores per rank), else it runs after go (default: auto)",
    )
    scenario.add_argument(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        help="start each phase's torchrun only when it is due (default: the next phase starts early, "
        "imports everything and waits for the previous phase to be confirmed dead)",
    )
    scenario.add_argument(
        "--bitwise", action="store_true", help="judge state digests bit for bit (default: per tensor, within tolerance)"
    )
    scenario.add_argument(
        "--calibrate",
        action="store_true",
        help="instead of a stop/go run, run the continuous run twice, measure each metric's noise floor and "
        "write per-metric tolerances to RUN_DIR/calibration.json (printed to pin in the spec)",
    )
    scenario.add_argument(
        "--tolerances",
        type=Path,
        metavar="FILE",
        help="per-metric [rtol, atol] for the trajectory comparison: a calibration.json or a "
        '{"metric": [rtol, atol]} file; overrides the spec\'s metric_tolerances there',
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="where logs, checkpoints and results go (default: ./stop_and_go_runs/<spec>-<time>)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="limit for each phase; a stop with no sentinel or a phase not done by then exits 5 (default: 600)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json-report", type=Path, metavar="PATH", help="also write the report as JSON here")
    output.add_argument(
        "--html-report",
        type=Path,
        metavar="PATH",
        help="also copy the run's self-contained HTML report (always written to RUN_DIR/report.html) to PATH",
    )
    output.add_argument(
        "--png-report", type=Path, metavar="PATH", help="write the loss and learning-rate overlay as a PNG"
    )
    output.add_argument("--junit-xml", type=Path, metavar="PATH", help="write the verdict as JUnit XML for CI")
    output.add_argument(
        "--plain", action="store_true", help="line-based output even on a terminal (default when piped)"
    )
    output.add_argument(
        "--quiet", action="store_true", help="no worker output at all, not even a failed rank's traceback"
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream every worker line (by default they go to per-rank logs in the run dir, and only a "
        "failed rank's traceback is shown); show tracebacks of orchestrator errors",
    )
    return parser


def kill_at_plan(value: str | None, seed: int) -> str | None:
    """``--kill-at`` as the phase plan spells it: ``"STEP"`` or ``"random:SEED"``."""
    if value is None:
        return None
    if value == "random":
        return f"random:{seed}"
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"--kill-at takes a step (a positive integer) or 'random', not {value!r}")
    return value
