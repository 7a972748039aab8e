"""A SIGKILLed orchestrator takes every process of its run with it within a second, whatever
the run was doing (issue 29): the agents die with the orchestrator and the workers with
their agent, through PR_SET_PDEATHSIG armed before the workers import torch
(``orchestrator.run.boot``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from orchestrator.protocol import RunLayout, progress_path
from orchestrator.run.boot import BOOT_MODULE, booted, orphaned
from tests.conftest import DEFAULT_SPEC, REPO, SPECS, orchestrator_command

# The figure: nothing of the run may outlive the orchestrator by more than this.
GONE_WITHIN_S = 2.0


def processes_of(run_dir: Path) -> dict[int, str]:
    """The live processes carrying the run's id: pid -> phase label (``?`` for none)."""
    run_json = run_dir / "run.json"
    if not run_json.exists():
        return {}
    run_id = json.loads(run_json.read_text())["run_id"]
    found = {}
    for proc in psutil.process_iter():
        try:
            tag = proc.environ().get("STOP_AND_GO_RUN_ID") or ""
            if tag.split(".")[0] == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = tag.partition(".")[2] or "?"
        except psutil.Error:
            continue
    return found


def workers_of(run_dir: Path, label: str) -> list[int]:
    """The live worker processes of one phase (its processes but the torchrun agent)."""
    pids = []
    for pid, phase in processes_of(run_dir).items():
        try:
            if phase == label and "torch.distributed.run" not in psutil.Process(pid).cmdline():
                pids.append(pid)
        except psutil.Error:
            continue
    return pids


def importing(run_dir: Path) -> bool:
    # Stop's worker has started, and has not yet written its result (after its imports).
    return bool(workers_of(run_dir, "stop")) and not RunLayout(run_dir).result("stop", 0).exists()


def training_while_go_waits(run_dir: Path) -> bool:
    # Stop trains (rank 0 has a step on disk; rank 1 of the hang spec never finishes its
    # second) and the pre-warmed go's ranks are done importing (each writes its result
    # just before it loads the spec and waits for its go-ahead).
    layout = RunLayout(run_dir)
    return (
        progress_path(run_dir, "stop", 0).exists()
        and all(layout.result("go", rank).exists() for rank in (0, 1))
        and len(workers_of(run_dir, "go")) == 2
    )


def in_the_reference(run_dir: Path) -> bool:
    return RunLayout(run_dir).go_ahead("continuous").exists() and bool(workers_of(run_dir, "continuous"))


def kill_orchestrator_when(
    run_dir: Path, moment: Callable[[Path], bool], spec: Path, *extra: str
) -> tuple[dict[int, str], float]:
    """Starts a run of ``spec``, SIGKILLs its orchestrator once ``moment`` holds.

    Returns the run's processes just before the kill and the seconds until none was left.
    """
    command = orchestrator_command(spec, run_dir, "--quiet", *extra)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not moment(run_dir):
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {moment.__name__}"
            assert time.monotonic() < deadline, f"never reached {moment.__name__}"
            time.sleep(0.05)
        before = processes_of(run_dir)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    killed = time.monotonic()
    left = processes_of(run_dir)
    while left and time.monotonic() - killed < GONE_WITHIN_S:
        time.sleep(0.05)
        left = processes_of(run_dir)
    gone_s = time.monotonic() - killed
    cmdlines = {}
    for pid in left:  # name them in the failure, then end them: a failed test leaves none either
        try:
            cmdlines[pid] = " ".join(psutil.Process(pid).cmdline()[:6])
            psutil.Process(pid).kill()
        except psutil.Error:
            continue
    assert left == {}, f"{moment.__name__}: alive {GONE_WITHIN_S}s after the orchestrator's SIGKILL: {cmdlines}"
    return before, gone_s


def test_a_sigkilled_orchestrator_leaves_no_process_at_any_moment(tmp_path: Path) -> None:
    one_rank = ("--nproc-per-node", "1", "--single-stop")
    # While stop's and the pre-warmed go's workers import torch (they used to live on
    # until their imports had finished: 10 s on two cores).
    before, gone_s = kill_orchestrator_when(tmp_path / "importing", importing, DEFAULT_SPEC, *one_rank)
    assert {"stop", "go"} <= set(before.values()), before
    print(f"importing: {len(before)} processes gone {gone_s:.2f}s after the kill")
    # While stop trains and the pre-warmed go waits for its go-ahead: a stop that hangs in
    # its second step (the default spec's stop can end before go is done importing).
    hang = SPECS / "hang_one_rank.py"
    before, gone_s = kill_orchestrator_when(tmp_path / "training", training_while_go_waits, hang, "--single-stop")
    phases = list(before.values())
    assert phases.count("stop") == 3 and phases.count("go") == 3, before  # an agent and two ranks each
    print(f"training, go waiting: {len(before)} processes gone {gone_s:.2f}s after the kill")
    # While the continuous reference trains (pre-warmed during go, released after it).
    before, gone_s = kill_orchestrator_when(tmp_path / "reference", in_the_reference, DEFAULT_SPEC, *one_rank)
    assert "continuous" in before.values(), before
    print(f"reference: {len(before)} processes gone {gone_s:.2f}s after the kill")


def test_boot_arms_the_death_signal_before_the_worker_module_imports(tmp_path: Path) -> None:
    # The module reports what it finds at its first line: the signal armed (PR_GET_PDEATHSIG),
    # its argv, and nothing heavy imported on the way (the workers package imports torch).
    (tmp_path / "probe_worker.py").write_text(
        "import ctypes, json, sys\n"
        "sig = ctypes.c_int()\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'workers', 'psutil') if m in sys.modules)\n"
        "print(json.dumps({'sig': sig.value, 'argv': sys.argv[1:], 'heavy': heavy, 'name': __name__}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", BOOT_MODULE, "probe_worker", "--phase", "go", "--", "x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
        check=True,
    )
    seen = json.loads(out.stdout)
    assert seen == {"sig": signal.SIGKILL, "argv": ["--phase", "go", "--", "x"], "heavy": [], "name": "__main__"}


def test_booted_runs_a_worker_module_through_the_boot_module() -> None:
    assert booted(["-m", "workers.entry", "--phase", "go"]) == ["-m", BOOT_MODULE, "workers.entry", "--phase", "go"]
    with pytest.raises(ValueError, match="expected -m MODULE"):
        booted(["script.py", "--phase", "go"])


def test_orphaned_compares_with_the_parent_it_was_started_by() -> None:
    assert not orphaned(os.getppid())
    assert orphaned(os.getppid() + 1)


@pytest.mark.skipif(os.getppid() == 1, reason="a child of init cannot tell its parent's death from its ppid")
def test_orphaned_without_a_known_parent_asks_whether_the_parent_belongs_to_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker's parent is its torchrun agent, which carries the worker's own run tag; a
    # re-parenting subreaper does not.
    assert not orphaned()
    monkeypatch.setenv("STOP_AND_GO_RUN_ID", "0123abcd.go")
    assert orphaned()
