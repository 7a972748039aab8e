"""``python -m orchestrator suite SUITE``: run many specs x scenarios, as a nightly job does.

Each entry (see ``orchestrator.suite.config``) is one ``python -m orchestrator`` process
with its own run directory. Locally, entries run in parallel: one per visible GPU (each
gets ``CUDA_VISIBLE_DEVICES`` set to its GPU), or ``--jobs`` at once on a CPU machine.
With ``--slurm`` the suite is one Slurm job array instead (``orchestrator.suite.slurm_array``).
A failed, crashed or timed-out entry never stops the others. Locally, entries whose
continuous run is the same (one spec under several scenarios) run one continuous reference
between them (``orchestrator.suite.references``); the array's tasks each run their own.

Output directory (``--out``)::

    OUT/entries/<entry>/      the entry's run directory (report.json, logs, checkpoints)
    OUT/logs/<entry>.log      the entry's orchestrator output (stdout and stderr)
    OUT/summary.json          every entry's exit code, meaning, wall time and command
    OUT/junit.xml             one JUnit XML file for the whole suite (``orchestrator.report.junit``)

Exit code: 0 if every entry verified, 1 if any did not, 2 for a bad suite or option,
130 if the suite was interrupted (running entries are stopped first, their workers killed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from orchestrator.arguments import OneLineParser, UsageError
from orchestrator.exit_codes import ExitCode
from orchestrator.run.process_tree import kill_run
from orchestrator.suite.config import Entry, SuiteError, load_suite
from orchestrator.suite.references import leaders, reference_args
from orchestrator.suite.results import EntryResult, finish, meaning_of
from orchestrator.suite.slurm_array import run_array

POLL_INTERVAL_S = 0.2
# How long an entry's orchestrator gets to kill its workers after SIGTERM.
STOP_GRACE_S = 30.0


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class _Running:
    """An entry's orchestrator process while it runs."""

    def __init__(self, entry: Entry, out: Path, device: str | None, extra: list[str]) -> None:
        self.entry = entry
        self.device = device
        self.run_dir = out / "entries" / entry.name
        self.log_path = out / "logs" / f"{entry.name}.log"
        self.command = [sys.executable, "-m", "orchestrator", *entry.orchestrator_args(self.run_dir), *extra]
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # Its own session: a Ctrl-C on the terminal reaches the suite, which then
            # stops each entry in order (SIGTERM, so each orchestrator kills its workers).
            self.popen = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.started = time.monotonic()
        self.timed_out = False

    def overdue(self) -> bool:
        return time.monotonic() - self.started > self.entry.timeout_s

    def stop(self) -> None:
        """SIGTERM (the orchestrator kills its workers and exits 130), then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        # Whatever the orchestrator could not clean up is found by its run id.
        run_json = self.run_dir / "run.json"
        if run_json.exists():
            run_id = json.loads(run_json.read_text()).get("run_id")
            if run_id:
                kill_run(None, run_id)

    def result(self, code: int) -> EntryResult:
        if self.timed_out:
            code = int(ExitCode.TIMEOUT)
            message = f"entry ran past its {self.entry.timeout_s:g}s timeout; stopped"
        else:
            message = _last_error(self.log_path)
        return EntryResult(
            name=self.entry.name,
            spec=str(self.entry.spec),
            scenario=self.entry.scenario,
            exit_code=code,
            meaning=meaning_of(code),
            wall_s=round(time.monotonic() - self.started, 1),
            run_dir=str(self.run_dir),
            log=str(self.log_path),
            device=f"cuda:{self.device}" if self.device is not None else "cpu",
            message=message,
            command=self.command,
        )


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1][len("error: ") :]
    verdicts = [line for line in lines if line.startswith("verdict: ")]
    return verdicts[-1][len("verdict: ") :] if verdicts else ""


class SuiteInterrupted(Exception):
    """SIGINT or SIGTERM reached the suite."""


def run_entries(entries: list[Entry], out: Path, jobs: int, gpus: list[str], echo: bool = True) -> list[EntryResult]:
    """Runs every entry, ``jobs`` at once (one per GPU when ``gpus``); never stops early.

    An entry whose continuous run is another's (``orchestrator.suite.references``) starts
    once that leader has finished, and reuses its reference.
    """
    slots: list[str | None] = list(gpus) if gpus else [None] * jobs
    follows = leaders(entries)
    pending = list(entries)
    running: list[_Running] = []
    finished: set[str] = set()
    results: list[EntryResult] = []
    try:
        while pending or running:
            while slots:
                entry = next((e for e in pending if follows.get(e.name, "") in {"", *finished}), None)
                if entry is None:
                    break  # what is left waits for its leader
                pending.remove(entry)
                device = slots.pop(0)
                leader = follows.get(entry.name)
                extra = reference_args(out / "entries" / leader, entry) if leader else []
                running.append(_Running(entry, out, device, extra))
                where = f" on GPU {device}" if device is not None else ""
                _say(echo, f"start {entry.name}{where}" + (f", reusing {leader}'s reference" if extra else ""))
            time.sleep(POLL_INTERVAL_S)
            for item in list(running):
                code = item.popen.poll()
                if code is None and item.overdue():
                    item.timed_out = True
                    item.stop()
                    code = item.popen.poll()
                if code is None:
                    continue
                running.remove(item)
                finished.add(item.entry.name)
                slots.append(item.device)
                result = item.result(code)
                results.append(result)
                _say(echo, f"{result.name}: exit {result.exit_code} ({result.meaning}) after {result.wall_s:.1f}s")
    finally:
        # Interrupted (or a bug): stop every entry still running, workers included.
        for item in running:
            item.stop()
    order = {e.name: i for i, e in enumerate(entries)}
    return sorted(results, key=lambda r: order[r.name])


def _say(echo: bool, message: str) -> None:
    if echo:
        print(f"[suite] {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The suite's argument parser (errors become one line and exit 2)."""
    parser = OneLineParser(
        prog="python -m orchestrator suite",
        description="Run every spec of a suite under every scenario; one JUnit XML for the suite.",
        epilog="exit codes: 0 every entry verified, 1 some entry did not, 2 bad suite or option, 130 interrupted",
    )
    parser.add_argument("suite", type=Path, help="a suite TOML file, or a directory of spec files")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output dir (default: ./stop_and_go_suites/<name>-<time>)"
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="entries at once on CPU (default: half the CPU cores); on GPU one per GPU"
    )
    parser.add_argument("--slurm", action="store_true", help="submit the suite as one Slurm job array")
    parser.add_argument("--partition", metavar="X", help="with --slurm: the partition")
    parser.add_argument("--time", metavar="T", help="with --slurm: each array task's time limit (sbatch --time)")
    parser.add_argument("--account", metavar="A", help="with --slurm: the account")
    parser.add_argument("--gpus-per-task", type=int, default=0, metavar="G", help="with --slurm: GPUs per array task")
    parser.add_argument(
        "--dry-run", action="store_true", help="with --slurm: write and show the script, submit nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="only the summary table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a suite; returns 0, 1 (an entry failed), 2 (usage) or 130 (interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        suite = load_suite(args.suite)
        if args.jobs is not None and args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        out = (args.out or Path("stop_and_go_suites") / f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
        if (out / "summary.json").exists():
            raise UsageError(f"output dir {out} already holds a suite run; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
    except (UsageError, SuiteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as err:
        print(f"error: cannot create output dir: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)

    if args.slurm:
        return run_array(suite, out, args)

    gpus = visible_gpus()
    jobs = args.jobs or max(1, (os.cpu_count() or 1) // 2)
    previous = _install_signal_handlers()
    try:
        results = run_entries(suite.entries, out, jobs, gpus, echo=not args.quiet)
    except SuiteInterrupted as err:
        print(f"error: suite interrupted by {err}; running entries stopped (output in {out})", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return finish(suite, out, results)


def _install_signal_handlers() -> dict[int, object]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Once: a second signal must not interrupt stopping the entries.
        for other in (signal.SIGINT, signal.SIGTERM):
            signal.signal(other, signal.SIG_IGN)
        raise SuiteInterrupted(signal.Signals(signum).name)

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
