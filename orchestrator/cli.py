"""Command line of the orchestrator: ``python -m orchestrator SPEC [options]``."""

from __future__ import annotations

import argparse
import ast
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import TextIO

from filelock import FileLock, Timeout

from orchestrator.events import PlainEvents
from orchestrator.exit_codes import ExitCode, exit_code_table
from orchestrator.protocol import RunLayout, write_json_atomic
from orchestrator.report import human_summary, report_dict
from orchestrator.runner import Interrupted, Orchestrator, RunOptions, write_run_json

KILL_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}

DESCRIPTION = """\
Prove that a training run resumes: run the spec's stop phase in fresh torchrun workers,
kill the whole worker tree once the checkpoint is complete (sentinel), resume in fresh
workers (go), run an uninterrupted reference, and compare every recorded metric on every
rank: at the resume point and step by step afterwards."""


class UsageError(Exception):
    """A problem with the command line or the spec, reported in one line with exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, grouped like torchrun's, with defaults and exit codes shown."""
    parser = _Parser(
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
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the continuous reference run (checks only the resume point)",
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
    output.add_argument("--quiet", action="store_true", help="do not stream the workers' output")
    output.add_argument("--verbose", action="store_true", help="show tracebacks of orchestrator errors")
    return parser


def check_spec_file(spec: Path) -> None:
    """Fails fast, without importing torch, on a spec that cannot possibly work."""
    if not spec.exists():
        raise UsageError(f"spec file not found: {spec}")
    if not spec.is_file():
        raise UsageError(f"spec is not a file: {spec}")
    try:
        tree = ast.parse(spec.read_text(encoding="utf-8"), filename=str(spec))
    except SyntaxError as err:
        raise UsageError(f"syntax error in spec {spec}, line {err.lineno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read spec {spec}: {err}") from err
    if not any(isinstance(node, ast.ClassDef) for node in ast.walk(tree)):
        raise UsageError(f"spec {spec} defines no class, so no StopAndGoHarness subclass")


def _default_run_dir(spec: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("stop_and_go_runs") / f"{spec.stem}-{stamp}"


def _prepare_run_dir(run_dir: Path) -> RunLayout:
    layout = RunLayout(run_dir)
    if layout.run_json.exists():
        raise UsageError(f"run dir {run_dir} already holds a run; choose another --run-dir or remove it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create run dir {run_dir}: {err.strerror or err}") from err
    return layout


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Runs the orchestrator; returns its exit code (see ``ExitCode``)."""
    out = out or sys.stdout
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser().parse_args(argv)
        check_spec_file(args.spec)
        if args.nproc_per_node < 1:
            raise UsageError("--nproc-per-node must be at least 1")
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        run_dir = (args.run_dir or _default_run_dir(args.spec)).resolve()
        layout = _prepare_run_dir(run_dir)
        lock = FileLock(str(layout.lock), timeout=0)
        try:
            lock.acquire()
        except Timeout as err:
            raise UsageError(f"run dir {run_dir} is in use by another orchestrator") from err
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)

    options = RunOptions(
        spec=args.spec.resolve(),
        run_dir=run_dir,
        harness=args.harness,
        nproc_per_node=args.nproc_per_node,
        kill_signal=KILL_SIGNALS[args.kill_signal],
        grace_s=args.grace,
        timeout_s=args.timeout,
        reference=args.reference,
    )
    orchestrator = Orchestrator(options, PlainEvents(out, echo_workers=not args.quiet))
    previous = _install_signal_handlers(orchestrator)
    try:
        write_run_json(layout, options, orchestrator.run_id)
        outcome = orchestrator.run()
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        report = report_dict(outcome, options, peak_rss_mb)
        write_json_atomic(layout.report, report)
        if args.json_report:
            write_json_atomic(args.json_report, report)
        out.write(human_summary(outcome, options))
        out.flush()
        if outcome.code != ExitCode.VERIFIED:
            print(f"error: {outcome.message}", file=sys.stderr)
        return int(outcome.code)
    except Interrupted as interrupted:
        # A signal between phases' bookkeeping; run() already killed what it started.
        print(f"error: interrupted by {interrupted}; logs in {run_dir}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - one line unless --verbose
        if verbose:
            traceback.print_exc()
        print(f"error: internal error: {type(err).__name__}: {err} (logs in {run_dir})", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lock.release()


def _install_signal_handlers(orchestrator: Orchestrator) -> dict[int, object]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if not orchestrator.cleaning_up:
            raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous
