"""The sbatch wrapper, against a real Slurm (munge and slurmctld on this machine, two nodes).

``bash scripts/start_slurm.sh`` (as root) starts that cluster; where no Slurm answers,
the tests that need one skip and say so. The tests across both nodes (one job over two
nodes, go on the other node, a node lost) are in ``tests/test_slurm_two_node.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from orchestrator.slurm.sbatch import exit_code_of
from orchestrator.slurm.script import EXIT_CODE_FILE
from tests import background
from tests.conftest import BROKEN_SPEC, DEFAULT_SPEC, REPO, background_run, live_processes_of_run, one_line


def _slurm_idle() -> str | None:
    """None if a Slurm node is up, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (bash scripts/start_slurm.sh installs and starts it, as root)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=False)
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s in ("idle", "mixed", "allocated") for s in states):
        reason = proc.stderr.strip() or f"node states {states}"
        return f"no Slurm node is up ({reason}); run bash scripts/start_slurm.sh"
    return None


needs_slurm = pytest.mark.skipif(_slurm_idle() is not None, reason=str(_slurm_idle()))
# A test's jobs may queue behind the two-node jobs (tests/test_slurm_two_node.py), which take
# the whole cluster: waiting in the queue is not a hang.
pytestmark = pytest.mark.timeout(900)


def sbatch(*args: str, timeout: float = 420, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "sbatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def processes_of_job(job_id: str) -> list[int]:
    """Live processes whose environment says they belong to the Slurm job."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SLURM_JOB_ID") == job_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def assert_job_left_nothing(run_dir: Path) -> None:
    job_id = (run_dir / "slurm_job_id").read_text().strip()
    assert live_processes_of_run(run_dir) == []
    assert processes_of_job(job_id) == []
    steps = subprocess.run(["squeue", "-h", "-s", "-j", job_id], capture_output=True, text=True, check=False)
    assert steps.stdout.strip() == ""


@dataclass
class Job:
    """A finished ``orchestrator sbatch`` wrapper and the run dir it was given."""

    run_dir: Path
    proc: subprocess.CompletedProcess[str]


# The `python -m orchestrator` arguments of the sbatch jobs that the tests below judge;
# "{run_dir}" is each job's own run dir. A test that acts on a running job (scancel, a
# signal to a suite) submits its own. The default spec, a wrapped script and go as a new
# job run across both nodes of the cluster in tests/test_slurm_two_node.py.
SUITE = REPO / "tests" / "suites" / "slurm_array.toml"
JOBS: dict[str, tuple[str, ...]] = {
    "broken": ("sbatch", str(BROKEN_SPEC), "--run-dir", "{run_dir}", "--quiet", "--", "--quiet"),
    # A 3-minute job whose USR1 comes 150 s before its end (Slurm may send it up to a
    # minute early): the stop step is killed only once the signal has arrived.
    "pre_timeout": ("sbatch", str(DEFAULT_SPEC), "--run-dir", "{run_dir}", "--time", "3", "--signal-before", "150",
                    "--", "--no-reference", "--quiet"),
}  # fmt: skip


def _job_command(args: tuple[str, ...]) -> Callable[[Path], list[str]]:
    return lambda out: [sys.executable, "-m", "orchestrator", *(a.format(run_dir=out / "run") for a in args)]


# The cluster runs two one-CPU jobs at a time (one per node) and each phase is one rank: one
# after the other, half the machine idled (and the pre-timeout job mostly waits for its signal). So the
# wrappers are submitted together, from the background lane (tests/background.py): each is
# an idle run (it waits on its job), started in its turn beside the others and the tests.
if _slurm_idle() is None:
    for _name, _args in JOBS.items():
        background.register(f"slurm_job_{_name}", _job_command(_args), timeout=600, idle=True, fixture="jobs")


@pytest.fixture(scope="module")
def jobs(request: pytest.FixtureRequest) -> dict[str, Job]:
    """Every job of ``JOBS``, each submitted by its wrapper in the background, waited for."""
    done = {}
    for name in JOBS:
        run = background_run(request, f"slurm_job_{name}")
        done[name] = Job(run.out_dir / "run", run.wait())
    return done


def test_dry_run_writes_a_readable_script_and_submits_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = sbatch(
        str(DEFAULT_SPEC),
        "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--time", "00:30:00",
        "--account", "proj", "--signal-before", "120", "--run-dir", str(run_dir), "--dry-run",
        "--", "--no-reference", "--kill-signal", "TERM",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    script = (run_dir / "sbatch.sh").read_text()
    assert proc.stdout.startswith(script)
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=00:30:00",
        "#SBATCH --account=proj",
        "#SBATCH --signal=B:USR1@120",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        "#SBATCH --no-requeue",
        "export STOP_AND_GO_SLURM_STEPS=1",
    ):
        assert line in script.splitlines(), line
    assert "--nnodes 2 --nproc-per-node 4 --no-reference --kill-signal TERM" in script
    assert not (run_dir / "slurm_job_id").exists()
    syntax = subprocess.run(["bash", "-n", str(run_dir / "sbatch.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_bad_spec_is_refused_before_submitting(tmp_path: Path) -> None:
    proc = sbatch(str(tmp_path / "missing.py"), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"error: spec file not found: {tmp_path / 'missing.py'}"
    assert not (tmp_path / "run" / "sbatch.sh").exists()


def test_go_on_other_nodes_needs_go_as_new_job(tmp_path: Path) -> None:
    proc = sbatch(str(DEFAULT_SPEC), "--go-on-other-nodes", "--run-dir", str(tmp_path / "run"), "--dry-run")
    assert proc.returncode == 2
    assert one_line(proc.stderr).startswith("error: --go-on-other-nodes needs --go-as-new-job")


def test_no_sbatch_is_one_line_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no sbatch anywhere on PATH
    proc = sbatch(str(DEFAULT_SPEC), "--run-dir", str(tmp_path / "run"), env=env)
    assert proc.returncode == 2
    assert "sbatch not found" in one_line(proc.stderr)


def test_job_end_maps_to_exit_codes(tmp_path: Path) -> None:
    assert exit_code_of("CANCELLED", tmp_path, "0:15")[0] == 130
    assert exit_code_of("TIMEOUT", tmp_path, "0:1")[0] == 5
    assert exit_code_of("FAILED", tmp_path, "3:0")[0] == 3
    assert exit_code_of("NODE_FAIL", tmp_path, "0:0", ["node2"]) == (
        11,
        "node lost: Slurm ended the job with NODE_FAIL (node2 down); the run was not judged",
    )
    (tmp_path / EXIT_CODE_FILE).write_text("1\n")
    assert exit_code_of("FAILED", tmp_path, "1:0") == (1, "job ended FAILED; orchestrator exit 1")


@needs_slurm
def test_broken_spec_fails_with_1_through_sbatch(jobs: dict[str, Job]) -> None:
    run_dir, proc = jobs["broken"].run_dir, jobs["broken"].proc
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "orchestrator exit 1" in one_line(proc.stderr)
    assert json.loads((run_dir / "report.json").read_text())["exit_code"] == 1
    assert_job_left_nothing(run_dir)


@needs_slurm
def test_scancel_mid_run_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "sbatch", str(DEFAULT_SPEC), "--run-dir", str(run_dir), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        # Wait until the stop step's workers run (the job may queue behind others), then cancel it.
        deadline = time.monotonic() + 600
        while not list((run_dir / "logs").glob("stop*.log")) or not list(run_dir.glob("results/stop*/rank*.json")):
            if time.monotonic() > deadline:
                pytest.fail("the stop phase never started")
            if wrapper.poll() is not None:
                pytest.fail(f"the wrapper ended early: {wrapper.communicate()}")
            time.sleep(0.5)
        job_id = (run_dir / "slurm_job_id").read_text().strip()
        assert processes_of_job(job_id), "the job has no processes to cancel"
        subprocess.run(["scancel", job_id], check=True)
        stdout, stderr = wrapper.communicate(timeout=120)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    assert wrapper.returncode == 130, stdout + stderr
    assert "job cancelled" in one_line(stderr)
    assert f"[sbatch] job {job_id}: CANCELLED" in stdout
    assert_job_left_nothing(run_dir)


@needs_slurm
def test_pre_timeout_signal_is_the_stop_trigger(jobs: dict[str, Job]) -> None:
    run_dir, proc = jobs["pre_timeout"].run_dir, jobs["pre_timeout"].proc
    assert proc.returncode == 0, proc.stdout + proc.stderr
    arrived = (run_dir / "pre_timeout_signal").read_text().strip()
    assert arrived
    lines = proc.stdout.splitlines()
    signal_line = next(i for i, line in enumerate(lines) if "pre-timeout signal (USR1) arrived" in line)
    killed_line = next(i for i, line in enumerate(lines) if "stop: killed after the sentinel" in line)
    go_line = next(i for i, line in enumerate(lines) if "go: launched" in line)
    assert signal_line < killed_line < go_line
    assert arrived in lines[signal_line]
    assert_job_left_nothing(run_dir)


@needs_slurm
def test_suite_as_a_job_array(tmp_path: Path) -> None:
    # On its own: next to the jobs above its two tasks only queued behind them (slower).
    out = tmp_path / "suite"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "suite", str(SUITE), "--slurm", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=800,  # its tasks may queue behind the two-node jobs
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "#SBATCH --array=0-1" in (out / "suite_array.sh").read_text()
    summary = json.loads((out / "summary.json").read_text())
    codes = {e["name"]: e["exit_code"] for e in summary["entries"]}
    assert codes == {"tiny_lightning-default": 0, "no_harness-default": 2}
    root = ET.parse(out / "junit.xml").getroot()
    assert (root.get("tests"), root.get("errors")) == ("2", "1")
    for name in codes:
        run_dir = out / "entries" / name
        assert json.loads((run_dir / "report.json").read_text())["exit_code"] == codes[name]
        assert live_processes_of_run(run_dir) == []
    # Each task names the node Slurm ran it on (the cluster's two nodes share the array).
    devices = [e["device"] for e in summary["entries"]]
    assert all(re.fullmatch(r"slurm task [01] on node[12]", d) for d in devices), devices
    job_id = (out / "slurm_job_id").read_text().strip()
    assert processes_of_job(job_id) == []


@needs_slurm
def test_sigterm_to_a_slurm_suite_cancels_its_array(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    suite = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "suite", str(SUITE), "--slurm", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 600  # its tasks may queue behind other jobs
        while not (out / "slurm_job_id").exists() or not list(out.glob("entries/*/results/stop/rank*.json")):
            if time.monotonic() > deadline:
                pytest.fail("no array task started a stop phase")
            if suite.poll() is not None:
                pytest.fail(f"the suite ended early: {suite.communicate()}")
            time.sleep(0.5)
        suite.terminate()
        stdout, stderr = suite.communicate(timeout=120)
    finally:
        if suite.poll() is None:
            suite.kill()
    job_id = (out / "slurm_job_id").read_text().strip()
    assert suite.returncode == 130, stdout + stderr
    assert f"job array {job_id} cancelled" in one_line(stderr)
    deadline = time.monotonic() + 60
    while (
        processes_of_job(job_id)
        or subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id], capture_output=True, text=True, check=False
        ).stdout.strip()
    ):
        if time.monotonic() > deadline:
            pytest.fail(f"job array {job_id} still has tasks or processes after the cancel")
        time.sleep(1)
