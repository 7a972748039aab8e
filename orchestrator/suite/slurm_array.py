"""``python -m orchestrator suite SUITE --slurm``: the suite as one Slurm job array.

Task ``i`` of the array runs entry ``i`` (a ``case`` on ``SLURM_ARRAY_TASK_ID`` in the
script, so the script alone says what every task runs). Each task records its
orchestrator exit code and wall time in ``OUT/exit_codes/<entry>``; the suite follows the
array until no task is left, then aggregates the same summary table, ``summary.json`` and
JUnit XML as a local suite run. A task that left no exit code was cancelled (130), hit
its time limit (5) or failed in Slurm itself (70).
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.exit_codes import ExitCode
from orchestrator.slurm.sbatch import SlurmError, write_and_submit
from orchestrator.suite.config import Suite
from orchestrator.suite.results import EntryResult, finish, meaning_of

POLL_INTERVAL_S = 1.0


def render_array_script(suite: Suite, out: Path, args: argparse.Namespace) -> str:
    """The job array script: one ``case`` branch per entry."""
    minutes = args.time or str(max(1, math.ceil(max(e.timeout_s for e in suite.entries) / 60)))
    directives = [
        f"--job-name=stop-and-go-suite-{suite.name}",
        f"--array=0-{len(suite.entries) - 1}",
        "--nodes=1",
        "--ntasks=1",
        "--no-requeue",  # a requeued task would rerun into its entry's filled run dir
        f"--output={out}/logs/task-%a.log",
        f"--chdir={Path.cwd()}",
        f"--time={minutes}",
    ]
    if args.partition:
        directives.append(f"--partition={args.partition}")
    if args.account:
        directives.append(f"--account={args.account}")
    if args.gpus_per_task:
        directives.append(f"--gpus-per-node={args.gpus_per_task}")
    lines = [
        "#!/bin/bash",
        f"# stop-and-go suite {suite.name} ({suite.source}): one array task per entry",
        *(f"#SBATCH {d}" for d in directives),
        "",
        "set -u",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for index, entry in enumerate(suite.entries):
        command = [sys.executable, "-m", "orchestrator", *entry.orchestrator_args(out / "entries" / entry.name)]
        lines += [f"  {index}) name={shlex.quote(entry.name)}; command=({shlex.join(command)}) ;;"]
    lines += [
        '  *) echo "no entry for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        "started=$SECONDS",
        '"${command[@]}"',
        "code=$?",
        f"mkdir -p {shlex.quote(str(out / 'exit_codes'))}",
        f'echo "$code $((SECONDS - started))" > {shlex.quote(str(out / "exit_codes"))}/"$name"',
        'exit "$code"',
        "",
    ]
    return "\n".join(lines)


def _task_states(job_id: str) -> dict[int, tuple[str, str]]:
    """Array task index -> (JobState, the node it ran on), for the tasks Slurm still knows."""
    proc = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=False
    )
    states = {}
    for line in proc.stdout.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        task = fields.get("ArrayTaskId", "")
        if task.isdigit():
            states[int(task)] = (fields.get("JobState", "UNKNOWN"), fields.get("NodeList", ""))
    return states


def _pending_tasks(job_id: str) -> int:
    proc = subprocess.run(["squeue", "-h", "-r", "-j", job_id], capture_output=True, text=True, timeout=30, check=False)
    return len(proc.stdout.splitlines())


def run_array(suite: Suite, out: Path, args: argparse.Namespace) -> int:
    """Submits the array, follows it and aggregates; returns the suite's exit code."""
    script = out / "suite_array.sh"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    try:
        job_id = write_and_submit(script, render_array_script(suite, out, args), args.dry_run, "suite")
    except SlurmError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    if job_id is None:
        return 0
    print(f"[suite] submitted job array {job_id} with {len(suite.entries)} tasks: {script}", flush=True)
    left = -1
    # SIGTERM (a scheduler or a parent job ending the suite) must cancel the array too.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            now = _pending_tasks(job_id)
            if now != left and not args.quiet:
                print(f"[suite] job array {job_id}: {now} task(s) pending or running", flush=True)
            left = now
            if now == 0:
                break
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not stop the cancel
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30, check=False)
        print(f"error: suite interrupted; job array {job_id} cancelled (output in {out})", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)
    states = _task_states(job_id)
    results = [_result(suite, out, index, *states.get(index, (None, ""))) for index in range(len(suite.entries))]
    return finish(suite, out, results)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _result(suite: Suite, out: Path, index: int, state: str | None, node: str = "") -> EntryResult:
    entry = suite.entries[index]
    record = out / "exit_codes" / entry.name
    if record.exists():
        code_text, _, wall_text = record.read_text().strip().partition(" ")
        code, wall, message = int(code_text), float(wall_text or 0), ""
    elif state == "CANCELLED":
        code, wall, message = int(ExitCode.INTERRUPTED), 0.0, "array task cancelled"
    elif state in ("TIMEOUT", "DEADLINE"):
        code, wall, message = int(ExitCode.TIMEOUT), 0.0, "array task hit its time limit"
    elif state == "NODE_FAIL":
        code, wall, message = int(ExitCode.NODE_LOST), 0.0, "array task's node was lost (NODE_FAIL)"
    else:
        code, wall, message = int(ExitCode.INTERNAL_ERROR), 0.0, f"array task ended {state} without an exit code"
    log = out / "logs" / f"task-{index}.log"
    if not message and log.exists():
        errors = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
        message = errors[-1][len("error: ") :] if errors else ""
    return EntryResult(
        name=entry.name,
        spec=str(entry.spec),
        scenario=entry.scenario,
        exit_code=code,
        meaning=meaning_of(code),
        wall_s=wall,
        run_dir=str(out / "entries" / entry.name),
        log=str(log),
        device=f"slurm task {index}" + (f" on {node}" if node and node != "(null)" else ""),
        message=message,
    )
