"""Crashing, hanging and interrupted runs: distinct exit codes, logs kept, nothing left."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import (
    REPO,
    SPECS,
    Run,
    assert_nothing_left,
    background_spec_run,
    orchestrator_command,
    run_orchestrator,
)


def test_worker_crash_before_sentinel_exits_3(tmp_path: Path) -> None:
    # Every rank raises: one is enough (the pre-warmed go is killed with the run).
    extra = ("--no-reference", "--nproc-per-node", "1")
    run = run_orchestrator(SPECS / "crash_before_sentinel.py", tmp_path / "run", *extra)
    assert run.returncode == 3, run.stderr
    assert "stop phase failed" in run.stderr
    assert "injected crash at step 1" in run.stderr
    assert "injected crash at step 1" in (run.run_dir / "logs" / "stop.log").read_text()
    assert_nothing_left(run.run_dir)


def test_worker_crash_after_resume_exits_4(tmp_path: Path) -> None:
    # The final go crashes (one stop); a crash in the default scenario's go1 is test_run_side's.
    extra = ("--single-stop", "--no-reference", "--nproc-per-node", "1")
    run = run_orchestrator(SPECS / "crash_in_go.py", tmp_path / "run", *extra)
    assert run.returncode == 4, run.stderr
    assert "go phase failed" in run.stderr
    assert "injected crash at step 5" in run.stderr
    # The phase table agrees with the verdict, and the failed rank's traceback is shown.
    assert [p["outcome"] for p in run.report["phases"] if p["name"] == "go"] == ["failed"]
    assert "worker traceback" in run.stdout and "injected crash at step 5" in run.stdout
    assert_nothing_left(run.run_dir)


# Long enough for both ranks to be up and stuck (so they can dump their stacks) even on a
# busy machine; only stop's ranks import meanwhile (--no-prewarm, --no-reference). It mostly
# waits, so it runs in the background lane (tests/background.py) beside the other tests.
HANG_TIMEOUT_S = 40
HANG_ARGS = ("--timeout", str(HANG_TIMEOUT_S), "--no-prewarm", "--no-reference")
hanging_rank_run = background_spec_run("hanging_rank_run", SPECS / "hang_one_rank.py", *HANG_ARGS, idle=True)


def test_hanging_rank_times_out_with_5(hanging_rank_run: Run) -> None:
    run = hanging_rank_run
    assert run.returncode == 5, run.stderr
    assert f"no sentinel within {HANG_TIMEOUT_S}s" in run.stderr
    assert run.wall_s is not None and run.wall_s < HANG_TIMEOUT_S + 125
    stop = run.report["phases"][0]
    assert stop["outcome"] == "timeout"
    assert stop["kill"]["survivors"] == []
    # Before the kill, every rank dumped its Python stacks: rank 1 is in the spec's sleep.
    dumps = run.report["stack_dumps"]
    assert len(dumps) == 2 and "stacks in" in run.stderr
    assert "hang_one_rank.py" in Path(dumps[1]).read_text()
    assert_nothing_left(run.run_dir)


def _wait_for_workers(run_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(run_dir.glob("results/stop/rank*.json"))) == 2:
            return
        time.sleep(0.1)
    raise AssertionError("stop workers never started")


def _interrupt(tmp_path: Path, signum: int, *extra: str) -> tuple[int, str, Path]:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        orchestrator_command(SPECS / "hang_one_rank.py", run_dir, "--timeout", "120", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        _wait_for_workers(run_dir)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, stderr, run_dir


def test_sigterm_to_orchestrator_exits_130_and_kills_workers(tmp_path: Path) -> None:
    # Pre-warmed phases are running too: the interrupt takes them with it.
    code, stderr, run_dir = _interrupt(tmp_path, signal.SIGTERM)
    assert code == 130, stderr
    assert "interrupted by SIGTERM" in stderr
    assert (run_dir / "logs" / "stop.log").exists()
    assert_nothing_left(run_dir)


def test_sigint_to_orchestrator_exits_130_and_kills_workers(tmp_path: Path) -> None:
    code, stderr, run_dir = _interrupt(tmp_path, signal.SIGINT, "--no-prewarm")
    assert code == 130, stderr
    assert "interrupted by SIGINT" in stderr
    assert_nothing_left(run_dir)
