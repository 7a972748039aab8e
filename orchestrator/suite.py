"""``python -m orchestrator suite SUITE``: run many specs x scenarios, as a nightly job does.

Each entry (see ``orchestrator.suite_config``) is one ``python -m orchestrator`` process
with its own run directory. Locally, entries run in parallel: one per visible GPU (each
gets ``CUDA_VISIBLE_DEVICES`` set to its GPU), or ``--jobs`` at once on a CPU machine.
With ``--slurm`` the suite is one Slurm job array instead (``orchestrator.slurm_array``).
A failed, crashed or timed-out entry never stops the others.

Output directory (``--out``)::

    OUT/entries/<entry>/      the entry's run directory (report.json, logs, checkpoints)
    OUT/logs/<entry>.log      the entry's orchestrator output (stdout and stderr)
    OUT/summary.json          every entry's exit code, meaning, wall time and command
    OUT/junit.xml             one JUnit XML file for the whole suite (``orchestrator.junit``)

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
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from orchestrator import junit
from orchestrator.arguments import OneLineParser, UsageError
from orchestrator.exit_codes import DESCRIPTIONS, ExitCode
from orchestrator.process_tree import kill_run
from orchestrator.suite_config import Entry, Suite, SuiteError, load_suite

SUITE_FAILED = 1
POLL_INTERVAL_S = 0.2
# How long an entry's orchestrator gets to kill its workers after SIGTERM.
STOP_GRACE_S = 30.0


@dataclass
class EntryResult:
    """How one entry ended."""

    name: str
    spec: str
    scenario: str
    exit_code: int
    meaning: str
    wall_s: float
    run_dir: str
    log: str
    device: str
    message: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def meaning_of(code: int) -> str:
    """The README's meaning of an orchestrator exit code (or a plain 'exit N')."""
    try:
        return DESCRIPTIONS[ExitCode(code)].split(":")[0].split(" (")[0]
    except ValueError:
        return f"exit {code}"


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

    def __init__(self, entry: Entry, out: Path, device: str | None) -> None:
        self.entry = entry
        self.device = device
        self.run_dir = out / "entries" / entry.name
        self.log_path = out / "logs" / f"{entry.name}.log"
        self.command = [sys.executable, "-m", "orchestrator", *entry.orchestrator_args(self.run_dir)]
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
    """Runs every entry, ``jobs`` at once (one per GPU when ``gpus``); never stops early."""
    slots: list[str | None] = list(gpus) if gpus else [None] * jobs
    pending = list(entries)
    running: list[_Running] = []
    results: list[EntryResult] = []
    try:
        while pending or running:
            while pending and slots:
                device = slots.pop(0)
                entry = pending.pop(0)
                running.append(_Running(entry, out, device))
                _say(echo, f"start {entry.name}" + (f" on GPU {device}" if device is not None else ""))
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


def summary_table(results: list[EntryResult]) -> str:
    """A plain-text table of every entry: name, device, exit code, meaning, wall time."""
    rows = [("entry", "device", "exit", "result", "wall")]
    rows += [(r.name, r.device, str(r.exit_code), r.meaning, f"{r.wall_s:.1f}s") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(not r.ok for r in results)
    lines.append(
        f"{len(results) - failed} of {len(results)} entries verified" + (f", {failed} failed" if failed else "")
    )
    return "\n".join(lines) + "\n"


def entry_report(result: EntryResult) -> dict[str, Any]:
    """The entry's ``report.json``, or a minimal one where the run left none (bad spec, killed)."""
    path = Path(result.run_dir) / "report.json"
    report: dict[str, Any] = {}
    if path.exists():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = {}
    if report.get("exit_code") != result.exit_code:
        # The suite's own verdict wins (e.g. it stopped an entry that ran past its timeout).
        report.update(exit_code=result.exit_code, message=result.message or result.meaning)
    report.setdefault("spec", result.spec)
    report.setdefault("run_dir", result.run_dir)
    report.setdefault("phases", [])
    return report


def junit_xml(suite_name: str, results: list[EntryResult]) -> ET.ElementTree:
    """The suite's JUnit XML: one ``<testsuite>`` per entry, built by ``orchestrator.junit``.

    A resume mismatch is a failure, any other non-zero exit an error; the testcase is named
    after the entry, and the suite's totals are on the root.
    """
    root = ET.Element("testsuites", name=suite_name)
    for result in results:
        element = junit.testsuite(entry_report(result))
        element.set("name", f"{suite_name}.{result.name}")
        case = element.find("testcase")
        if case is not None:
            case.set("name", result.name)
            case.set("time", f"{result.wall_s:.1f}")
        root.append(element)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(e.get(key, "0")) for e in root)))
    root.set("time", f"{sum(r.wall_s for r in results):.1f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_outputs(suite: Suite, out: Path, results: list[EntryResult]) -> None:
    """``summary.json`` and ``junit.xml`` in ``out``."""
    summary = {
        "suite": suite.name,
        "source": str(suite.source),
        "entries": [r.__dict__ for r in results],
        "failed": [r.name for r in results if not r.ok],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    junit_xml(suite.name, results).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)


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
        from orchestrator.slurm_array import run_array

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


def finish(suite: Suite, out: Path, results: list[EntryResult]) -> int:
    """Writes the outputs, prints the table; returns 0 if every entry verified, else 1."""
    write_outputs(suite, out, results)
    print(summary_table(results), end="", flush=True)
    print(f"junit: {out / 'junit.xml'}", flush=True)
    failed = [r for r in results if not r.ok]
    if failed:
        print(
            f"error: {len(failed)} of {len(results)} entries failed: {', '.join(r.name for r in failed)}",
            file=sys.stderr,
        )
        return SUITE_FAILED
    return 0


def _install_signal_handlers() -> dict[int, object]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Once: a second signal must not interrupt stopping the entries.
        for other in (signal.SIGINT, signal.SIGTERM):
            signal.signal(other, signal.SIG_IGN)
        raise SuiteInterrupted(signal.Signals(signum).name)

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
