"""Command line of the orchestrator: ``python -m orchestrator SPEC [options]``."""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import TextIO

from filelock import FileLock, Timeout

from orchestrator.arguments import UsageError
from orchestrator.exit_codes import ExitCode
from orchestrator.judge.compare import ENV_TOLERANCES
from orchestrator.protocol import RunLayout, write_json_atomic
from orchestrator.report.files import output_path_problem, write_report_files
from orchestrator.report.phase_names import ExplainingEvents, meaning_note, phase_meanings
from orchestrator.report.readable import cut_long_values
from orchestrator.report.summary import human_summary, report_dict
from orchestrator.run.arguments import KILL_SIGNALS, build_parser, kill_at_plan
from orchestrator.run.events import PlainEvents
from orchestrator.run.failures import Interrupted
from orchestrator.run.options import RunOptions, write_run_json
from orchestrator.run.reference import SharedReferenceError, shared_reference
from orchestrator.run.runner import Orchestrator
from orchestrator.slurm.launchers import slurm_launcher
from orchestrator.slurm.steps import slurm_launch_requested
from orchestrator.spec_file import check_harness_choice, check_spec_file
from orchestrator.wrap.command import ScriptCommand


class RunDirError(Exception):
    """The run directory cannot be created or written, reported in one line with exit 7."""


# OS errors that mean "this run dir cannot hold the run", not "the orchestrator has a bug".
_RUN_DIR_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def _default_run_dir(spec: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("stop_and_go_runs") / f"{spec.stem}-{stamp}"


def _prepare_run_dir(run_dir: Path) -> RunLayout:
    layout = RunLayout(run_dir)
    if layout.run_json.exists():
        raise UsageError(f"run dir {run_dir} already holds a run; choose another --run-dir or remove it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-probe"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write run dir {run_dir}: {err.strerror or err}") from err
    return layout


SUBCOMMANDS = ("sbatch", "suite", "self-test", "run", "doctor")


def version_line() -> str:
    """``stop-and-go X.Y.Z``, from the installed package's metadata."""
    try:
        return f"stop-and-go {importlib.metadata.version('stop-and-go')}"
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "stop-and-go (not installed: version unknown)"


def cli_parser() -> argparse.ArgumentParser:
    """The run command's parser (``orchestrator.run.arguments``) with ``--version``."""
    parser = build_parser()
    parser.add_argument("--version", action="version", version=version_line(), help="print the version and exit")
    return parser


def _run_subcommand(name: str, argv: list[str]) -> int:
    """``python -m orchestrator sbatch|suite|self-test|run|doctor ...``: handed whole to that module's main."""
    if name == "doctor":
        from orchestrator.run.doctor import main as doctor_main

        return doctor_main(argv)
    if name == "sbatch":
        from orchestrator.slurm.sbatch import main as sbatch_main

        return sbatch_main(argv)
    if name == "run":
        from orchestrator.wrap.cli import parse_run_args

        try:
            spec_argv, script = parse_run_args(argv)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return int(ExitCode.USAGE)
        return main(spec_argv, script=script)
    if name == "self-test":
        from orchestrator.suite.selftest import main as selftest_main

        return selftest_main(argv)
    from orchestrator.suite.runner import main as suite_main

    return suite_main(argv)


def _load_tolerances(path: Path) -> dict[str, list[float]]:
    from orchestrator.run.calibrate import load_tolerances

    try:
        return load_tolerances(path)
    except ValueError as err:
        raise UsageError(str(err)) from err


def _calibrate(args: argparse.Namespace, run_dir: Path, out: TextIO, lock: FileLock) -> int:
    """``--calibrate``: two continuous runs and the noise floor of every metric."""
    from orchestrator.run.calibrate import CalibrationFailed, run_calibration

    events = PlainEvents(out, echo_workers=args.verbose, show_errors=not args.quiet)
    try:
        return run_calibration(
            args.spec.resolve(), run_dir, args.harness, args.nproc_per_node, args.timeout, events, out
        )
    except CalibrationFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.REFERENCE_FAILED)
    except KeyboardInterrupt:
        print(f"error: interrupted; workers killed; logs in {run_dir}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        lock.release()


def check_shared_reference(args: argparse.Namespace) -> None:
    """Refuses a ``--reference-from`` that cannot serve (other code or ranks, unfinished, --no-reference)."""
    if not args.reference:
        raise UsageError("--reference-from and --no-reference contradict each other")
    try:
        shared_reference(args.reference_from.resolve(), args.nproc_per_node * args.nnodes)
    except SharedReferenceError as err:
        raise UsageError(str(err)) from err


def main(argv: list[str] | None = None, out: TextIO | None = None, script: ScriptCommand | None = None) -> int:
    """Runs the orchestrator; returns its exit code (see ``ExitCode``).

    With ``script`` (``stop-and-go run``, ``orchestrator.wrap.cli``) the "spec" is a user's
    training script, run unmodified in every phase.
    """
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] in SUBCOMMANDS:
        return _run_subcommand(args_in[0], args_in[1:])
    out = out or sys.stdout
    verbose = bool({"--verbose", "-v"} & set(argv if argv is not None else sys.argv[1:]))
    try:
        args = cli_parser().parse_args(argv)
        if script is None:
            check_spec_file(args.spec)
            check_harness_choice(args.spec, args.harness)
        if args.nproc_per_node < 1:
            raise UsageError("--nproc-per-node must be at least 1")
        if args.nnodes < 1:
            raise UsageError("--nnodes must be at least 1")
        if args.reference_from is not None:
            check_shared_reference(args)
        if args.go_nproc_per_node is not None:
            if args.go_nproc_per_node < 1:
                raise UsageError("--go-nproc-per-node must be at least 1")
            if slurm_launch_requested():
                raise UsageError("--go-nproc-per-node runs on this machine's torchrun, not inside a Slurm job")
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if args.cycles < 1:
            raise UsageError("--cycles must be at least 1")
        kill_at = kill_at_plan(args.kill_at, args.seed)
        if kill_at and args.kill_during_save:
            raise UsageError("--kill-at and --kill-during-save choose different stop points; pick one")
        for flag, path in (
            ("--html-report", args.html_report),
            ("--png-report", args.png_report),
            ("--junit-xml", args.junit_xml),
        ):
            problem = path and output_path_problem(path)
            if problem:
                raise UsageError(f"{flag}: {problem}")
        if args.calibrate and args.nnodes > 1:
            raise UsageError("--calibrate runs on one node; leave out --nnodes")
        tolerances = _load_tolerances(args.tolerances) if args.tolerances else None
        if tolerances:
            # The workers' resume-point check reads it; torchrun passes our env through.
            os.environ[ENV_TOLERANCES] = json.dumps(tolerances)
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
    except RunDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.RUN_DIR_UNUSABLE)
    if args.calibrate:
        return _calibrate(args, run_dir, out, lock)

    options = RunOptions(
        spec=args.spec.resolve(),
        run_dir=run_dir,
        harness=args.harness,
        nproc_per_node=args.nproc_per_node,
        kill_signal=KILL_SIGNALS[args.kill_signal],
        grace_s=args.grace,
        timeout_s=args.timeout,
        reference=args.reference,
        bitwise=args.bitwise,
        cycles=args.cycles,
        kill_at=kill_at,
        kill_during_save=args.kill_during_save,
        nnodes=args.nnodes,
        tolerances=tolerances,
        go_nproc_per_node=args.go_nproc_per_node,
        prewarm=args.prewarm,
        reference_from=args.reference_from.resolve() if args.reference_from else None,
        concurrent_reference=args.concurrent_reference,
        epoch_coverage=args.epoch_coverage,
        worker_argv=script.worker_argv if script else None,
    )
    live = None
    if out.isatty() and not (args.plain or args.quiet) and os.environ.get("TERM") != "dumb":
        from orchestrator.report.live import LiveEvents  # rich, only for a terminal

        live = LiveEvents(out, run_dir, args.spec.name)
    # Workers' output goes to the run dir's logs; -v streams it, --quiet also hides tracebacks.
    meanings = phase_meanings(options.plans())
    # The plain lines say what go1 ... is the first time they name it (the live view: its summary).
    events = live or ExplainingEvents(PlainEvents(out, echo_workers=args.verbose, show_errors=not args.quiet), meanings)
    orchestrator = Orchestrator(options, events, launcher=slurm_launcher(options.workers()))
    previous = _install_signal_handlers(orchestrator)
    try:
        write_run_json(layout, options, orchestrator.run_id)
        if live:
            live.start()
        try:
            outcome = orchestrator.run()
        finally:
            if live:
                live.stop()
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        report = report_dict(outcome, options, peak_rss_mb)
        write_json_atomic(layout.report, report)
        if args.json_report:
            write_json_atomic(args.json_report, report)
        written, write_errors = write_report_files(
            report, run_dir / "report.html", args.html_report, args.png_report, args.junit_xml
        )
        if live:
            live.print_summary(report)
        else:
            out.write(human_summary(outcome, options))
        out.write("".join(line + "\n" for line in written))
        out.flush()
        for line in write_errors:
            print(f"error: {line}", file=sys.stderr)
        if outcome.code != ExitCode.VERIFIED:  # report.json keeps the message whole
            message = cut_long_values(outcome.message)
            print(f"error: {message}{meaning_note(message, meanings)}", file=sys.stderr)
        return int(outcome.code)
    except Interrupted as interrupted:
        # A signal between phases' bookkeeping; run() already killed what it started.
        print(f"error: interrupted by {interrupted}; logs in {run_dir}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - one line unless --verbose
        if isinstance(err, OSError) and err.errno in _RUN_DIR_ERRNOS:
            # Atomic writes leave no torn protocol file behind; the run is simply unusable.
            print(f"error: run dir {run_dir} became unusable: {err.strerror} ({err.filename})", file=sys.stderr)
            return int(ExitCode.RUN_DIR_UNUSABLE)
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
