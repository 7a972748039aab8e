"""Runs the test suite once and prints where its wall time and CPU seconds went (issue 15).

    python benchmarks/suite_profile.py [PYTEST ARGS...]
    python benchmarks/suite_profile.py --basetemp /tmp/bt && python benchmarks/suite_census.py /tmp/bt

On a small CPU machine the suite is bound by its processes' start-up (every worker imports
torch and Lightning, every torchrun agent imports torch), so its wall time is its CPU
seconds over the cores it keeps busy. This runs ``pytest`` (with ``PYTEST ARGS``, default
the whole suite) in its own base temp directory and, meanwhile:

- samples every process on the machine twice a second (``psutil``), keeping each one's last
  CPU time, so that processes killed with SIGKILL, whose CPU no parent ever reaps, count
  too; each is put in a role: a worker of a phase (by the phase its run tag names), a
  torchrun agent, an orchestrator, pytest, another interpreter;
- reads the machine's busy CPU time (``/proc/stat``) at the start and the end.

It prints the suite's wall time and pytest's summary line (and any failed test), the CPU
seconds per role and per test (by the run directory a process worked for: its phase's
``STOP_AND_GO_RUN_DIR`` or its ``--run-dir``), how busy the cores were, and the wall time
per test file (pytest's own ``--durations``). No thresholds: figures to read. Sample only
on an otherwise quiet machine.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from orchestrator.protocol import ENV_RUN_DIR, ENV_RUN_ID

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INTERVAL_S = 0.5
_DURATION = re.compile(r"^([0-9.]+)s (setup|call|teardown)\s+(\S+?)::")


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def role(cmdline: list[str], run_tag: str) -> str:
    """What a process was, from its command line and its ``STOP_AND_GO_RUN_ID`` tag."""
    text = " ".join(cmdline)
    phase = run_tag.split(".", 1)[1] if "." in run_tag else ""
    if "torch.distributed.run" in text:
        return "torchrun agent"
    if "workers.entry" in text or (run_tag and "orchestrator" not in text):
        return f"worker ({re.sub(r'[0-9]+$', '', phase) or 'wrapped script'})"
    if "-m orchestrator" in text:
        return "orchestrator (run, suite, self-test, sbatch)"
    if "pytest" in text:
        return "pytest"
    if cmdline and "python" in os.path.basename(cmdline[0]):
        return "other Python (probes, doctor, NeMo venv scripts)"
    return "other programs (Slurm, shell, ...)"


def run_dir_of(cmdline: list[str], env: dict[str, str]) -> str:
    """The run directory a process works for: its phase's environment, or its ``--run-dir``/``--out``."""
    if env.get(ENV_RUN_DIR):
        return env[ENV_RUN_DIR]
    for flag in ("--run-dir", "--out"):
        if flag in cmdline[:-1]:
            return cmdline[cmdline.index(flag) + 1]
    return ""


def test_of(run_dir: str, basetemp: Path) -> str:
    """The pytest tmp directory (a test's or a fixture's) a run directory lies under."""
    try:
        return Path(run_dir).resolve().relative_to(basetemp.resolve()).parts[0]
    except (ValueError, IndexError):
        return ""


class Sampler(threading.Thread):
    """Keeps the CPU time every process spent while sampled, by (pid, start time).

    A process that was already running when sampling began (a daemon) counts only what it
    spent since; one started later counts all of it.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[int, float], list] = {}  # [role, CPU at first sight, CPU last seen, run dir]
        self.stop = threading.Event()
        self.me = os.getpid()
        self.started = time.time()  # before the suite's first process

    def run(self) -> None:
        while True:
            for proc in psutil.process_iter(["pid", "create_time"]):
                if proc.info["pid"] == self.me:
                    continue
                key = (proc.info["pid"], proc.info["create_time"])
                try:
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    if key not in self.seen:
                        try:
                            env = proc.environ()
                        except psutil.Error:
                            env = {}
                        cmdline = proc.cmdline()
                        before = cpu if proc.info["create_time"] < self.started else 0.0
                        self.seen[key] = [role(cmdline, env.get(ENV_RUN_ID, "")), before, cpu, run_dir_of(cmdline, env)]
                    self.seen[key][2] = cpu
                except psutil.Error:
                    continue
            if self.stop.wait(SAMPLE_INTERVAL_S):
                return


def main() -> int:
    pytest_args = sys.argv[1:]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    sampler = Sampler()
    with tempfile.TemporaryDirectory(prefix="suite_profile_") as tmp:
        # A --basetemp given by the caller is kept (for benchmarks/suite_census.py); ours is not.
        given = [a for a in pytest_args if a.startswith("--basetemp")]
        basetemp = Path(given[-1].split("=", 1)[1]) if given and "=" in given[-1] else Path(tmp) / "bt"
        if given and "=" not in given[-1]:
            basetemp = Path(pytest_args[pytest_args.index(given[-1]) + 1])
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                   *([] if given else ["--basetemp", str(basetemp)]), *pytest_args]  # fmt: skip
        busy_before, started = busy_cpu_s(), time.monotonic()
        sampler.start()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - started
        busy = busy_cpu_s() - busy_before
        sampler.stop.set()
        sampler.join()
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(f"suite: {wall:.0f} s wall, pytest exit {proc.returncode}: {summary[-1] if summary else '?'}")
    for line in proc.stdout.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):  # a figure from a red suite is no figure
            print(f"  {line[:200]}")
    cores = os.cpu_count() or 1
    print(f"cores busy: {busy:.0f} CPU-s of {wall * cores:.0f} ({busy / wall / cores:.0%})")
    by_role: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    by_test: collections.Counter[str] = collections.Counter()
    for name, first, last, run_dir in sampler.seen.values():
        if last > first:
            by_role[name] += last - first
            count[name] += 1
            by_test[test_of(run_dir, basetemp) or "(not in a test's run directory)"] += last - first
    total = sum(by_role.values())
    print(f"CPU seconds by role (sampled, {total:.0f} in all):")
    for name, cpu in by_role.most_common():
        print(f"  {cpu:7.1f}  {cpu / total:4.0%}  {count[name]:4d} processes  {name}")
    print("CPU seconds by the test (or session fixture) whose run directory a process worked for, top 25:")
    for name, cpu in by_test.most_common(25):
        print(f"  {cpu:7.1f}  {name}")
    per_file: collections.Counter[str] = collections.Counter()
    for line in proc.stdout.splitlines():
        match = _DURATION.match(line)
        if match:
            per_file[Path(match.group(3)).stem] += float(match.group(1))
    print("wall seconds per test file (setup + call + teardown, the background lane's waits included):")
    for name, seconds in per_file.most_common():
        if seconds >= 1:
            print(f"  {seconds:6.1f}  {name}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
