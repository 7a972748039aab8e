"""Real interruptions: a kill between checkpoints, SIGTERM, a kill mid-save, several cycles
(an orchestrator that is itself SIGKILLed: tests/test_orphans.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.conftest import DEFAULT_SPEC, assert_nothing_left, run_orchestrator

# These default-spec runs judge against the default run's reference (default_reference):
# the continuous run does not depend on where a run stops.


def test_kill_at_a_step_between_checkpoints_with_sigterm(tmp_path: Path, default_reference: tuple[str, str]) -> None:
    extra = ("--kill-at", "5", "--kill-signal", "TERM", "--quiet", "--no-prewarm", *default_reference)
    run = run_orchestrator(DEFAULT_SPEC, tmp_path / "run", *extra)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    # --no-prewarm: every phase started when it was due.
    assert report["timings"]["prewarm"] is False
    assert all(p["prewarmed_s"] is None for p in report["phases"])
    assert report["timings"]["kill_to_go_first_step_s"] > 0
    stop = report["stops"][0]
    # Stopped at step 5; the last complete checkpoint (every 2 steps) is step 4.
    assert stop["trigger"]["stopped_at"] == 5
    assert stop["trigger"]["step"] == 4
    assert stop["kill"]["signal"] == "SIGTERM"
    assert stop["kill"]["survivors"] == []
    assert report["verdict"]["resumes"][0]["resumed_step"] == 4
    # The stop run's step 5 was lost and recomputed by go: both match the reference.
    assert 5 in report["verdict"]["trajectories"]["stop"]["steps"]
    assert 5 in report["verdict"]["trajectories"]["go"]["steps"]
    assert_nothing_left(run.run_dir)


def test_three_cycles_at_random_steps_verify_every_resume(tmp_path: Path, default_reference: tuple[str, str]) -> None:
    extra = ("--cycles", "3", "--kill-at", "random", "--seed", "3", *default_reference)
    run = run_orchestrator(DEFAULT_SPEC, tmp_path / "run", *extra)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    assert [p["name"] for p in report["phases"]] == ["stop", "go1", "go2", "go"]
    assert report["timings"]["reference"].startswith("shared from ")
    # Each resumed phase was pre-warmed during the previous one, in processes of its own.
    phases = report["phases"]
    assert all(p["prewarmed_s"] is not None for p in phases[1:])
    for before, after in itertools.pairwise(phases):
        assert not set(before["pids"]) & set(after["pids"])
    resumes = report["verdict"]["resumes"]
    assert [r["label"] for r in resumes] == ["go1", "go2", "go"]
    steps = [r["resumed_step"] for r in resumes]
    assert steps == sorted(steps) and steps[0] >= 2
    assert len(report["stops"]) == 3
    for stop in report["stops"]:
        assert stop["trigger"]["stopped_at"] >= stop["trigger"]["step"]
    checks = report["verdict"]["resume_checks"]
    assert len(checks) >= 3 * 2 * 5 and all(c["ok"] for c in checks)
    assert_nothing_left(run.run_dir)


def test_kill_during_save_resumes_from_the_newest_complete_checkpoint(
    tmp_path: Path, default_reference: tuple[str, str]
) -> None:
    run = run_orchestrator(DEFAULT_SPEC, tmp_path / "run", "--kill-during-save", "--quiet", *default_reference)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    trigger = report["stops"][0]["trigger"]
    assert Path(trigger["path"]).name == "last.ckpt"
    assert 0 < trigger["bytes_written"] < trigger["bytes"]
    resume = report["verdict"]["resumes"][0]
    # last.ckpt of step 4 was torn; the complete epoch=0-step=4.ckpt is what go trusted.
    assert resume["resumed_step"] == 4
    assert Path(resume["checkpoint"]).name == "epoch=0-step=4.ckpt"
    go_log = (run.run_dir / "logs" / "go.log").read_text()
    assert "skipping a checkpoint that cannot be resumed from" in go_log
    assert "last.ckpt is torn" in go_log
    assert_nothing_left(run.run_dir)
