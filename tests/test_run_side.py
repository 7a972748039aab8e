"""Issue 12, the run side: stops on any checkpoint cadence, coverage, spec errors early,
checkpoints vetted as go loads them, the ledger without sample ids, quiet output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    DEFAULT_SPEC,
    SPECS,
    Run,
    background_spec_run,
    one_line,
    orchestrator_command,
    run_orchestrator,
)


def _run_in(cwd: Path, spec: Path, run_dir: Path, *extra: str, timeout: float = 600) -> Run:
    """Runs the orchestrator with ``cwd`` as the working directory (nothing may land there)."""
    proc = subprocess.run(
        orchestrator_command(spec, run_dir, *extra), capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, run_dir)


def test_ambiguous_harness_fails_before_any_launch(tmp_path: Path) -> None:
    started = time.monotonic()
    run = _run_in(tmp_path, SPECS / "two_harnesses.py", tmp_path / "run", timeout=60)
    assert run.returncode == 2
    assert "choose one with --harness" in one_line(run.stderr)
    assert time.monotonic() - started < 3
    assert not (tmp_path / "run" / "logs").exists()  # no torchrun was launched


def test_unknown_harness_name_fails_before_any_launch(tmp_path: Path) -> None:
    run = _run_in(tmp_path, SPECS / "two_harnesses.py", tmp_path / "run", "--harness", "Third", timeout=60)
    assert run.returncode == 2
    assert "no harness class 'Third'" in one_line(run.stderr)
    assert not (tmp_path / "run" / "logs").exists()


# Only stop runs (--no-prewarm), on one rank: the check is at its train start. A one-rank
# run that reads nothing else: in the background lane (tests/background.py).
kill_at_past_run = background_spec_run(
    "kill_at_past_run", DEFAULT_SPEC, "--kill-at", "10000", "--no-reference", "--no-prewarm", "--nproc-per-node", "1"
)


def test_kill_at_past_the_last_step_fails_at_train_start(kill_at_past_run: Run) -> None:
    run = kill_at_past_run
    assert run.returncode == 2, run.stderr
    assert "--kill-at 10000 is not before the run's last step (12)" in one_line(run.stderr)
    assert "ChildFailedError" not in run.stdout + run.stderr


def test_epoch_only_bug_fails_by_default(tmp_path: Path, default_reference: tuple[str, str]) -> None:
    # Its sampler differs from the default spec's only in what it restores: its continuous
    # run is the default spec's, so it judges against the default run's reference.
    run = run_orchestrator(SPECS / "epoch_seed_not_restored.py", tmp_path / "run", *default_reference)
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    assert run.report["coverage"]["resume_points"][1]["epoch"] == 1


def test_a_crash_in_go1_is_a_go_failure(tmp_path: Path) -> None:
    # go1 resumed from step 2 and stops again; its crash at step 5 is after a resume (exit 4).
    run = run_orchestrator(SPECS / "crash_in_go.py", tmp_path / "run", "--no-reference")
    assert run.returncode == 4, run.stderr
    assert "go1 phase failed" in run.stderr and "injected crash at step 5" in run.stderr
    # A newcomer meets go1 here first: the error, the first event and the summary say what it is.
    meaning = "the first resumed phase, stopped again at a later epoch"
    assert run.stderr.rstrip().endswith(f"(go1: {meaning})"), run.stderr
    assert f"[orchestrator] go1 ({meaning}): " in run.stdout and f"go1 = {meaning}" in run.stdout
    assert run.stdout.count(meaning) == 2 and run.report["phase_meanings"] == {"go1": meaning}
    outcomes = {p["name"]: p["outcome"] for p in run.report["phases"]}
    assert outcomes["go1"] == "died before the sentinel"
    # The pre-warmed go was never released.
    assert outcomes.get("go", "killed before its go-ahead") == "killed before its go-ahead"


def test_a_step_that_go1_skipped_is_the_root_cause(tmp_path: Path, default_reference: tuple[str, str]) -> None:
    # A killed resumed phase must still cover every step from its resume to its stop: the
    # doubled global step jumps from 2 to 4, and step 3's absence comes first. The mutant
    # declares that it shares the default spec's reference (SHARES_REFERENCE).
    mutant = Path(__file__).parent.parent / "harness_specs" / "mutants" / "global_step_double.py"
    run = run_orchestrator(mutant, tmp_path / "run", *default_reference)
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert (root["metric"], root["where"], root["step"]) == ("global_step", "go1", 3), root
    assert root["cause_id"] == "global_step_off"
    assert "go1 never recorded steps [3] of the reference" in run.stdout


def test_epoch_end_checkpoints_are_stopped_at_and_lightnings_epoch_count_is_caught(
    tmp_path: Path, default_reference: tuple[str, str]
) -> None:
    # Only where it checkpoints differs from the default spec: an uninterrupted run trains
    # and records the same, so it judges against the default run's reference.
    run = run_orchestrator(SPECS / "epoch_end_checkpoints.py", tmp_path / "run", *default_reference)
    report = run.report
    # The stop found the end of epoch 0's checkpoint by itself; the resume point matched.
    assert report["sentinel"]["step"] == 8
    assert all(c["ok"] for c in report["verdict"]["resume_checks"])
    assert report["coverage"]["exercised"][0] == "at an epoch boundary"
    # ...but after it Lightning 2.6 passes set_epoch(2) for epoch 1: the first resumed batch
    # is another permutation's than the reference's, named as that cause.
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    root = report["diagnosis"][0]
    assert (root["where"], root["step"], root["cause_id"]) == ("go", 9, "sampler_epoch_ahead"), root
    assert "cause: the resumed sampler shuffles the next epoch's permutation" in run.stdout


numpy_checkpoint_run = background_spec_run(
    "numpy_checkpoint_run", SPECS / "numpy_in_checkpoint.py", "--no-reference", "--no-prewarm", "--nproc-per-node", "1"
)


def test_numpy_object_in_checkpoint_fails_the_stop(numpy_checkpoint_run: Run) -> None:
    run = numpy_checkpoint_run
    assert run.returncode == 3, run.stderr
    line = one_line(run.stderr)
    assert "weights_only=True" in line
    assert "checkpoint['numpy_rng'][1] is a numpy.ndarray" in line
    assert "\x1b[" not in run.stdout + run.stderr
    assert run.report["phases"][0]["name"] == "stop"


def test_ledger_without_sample_ids_catches_a_repeated_sample(tmp_path: Path) -> None:
    # The restarting sampler repeats samples on one rank as on many (self-test's sampler_restart).
    extra = ("--single-stop", "--nproc-per-node", "1")
    run = run_orchestrator(SPECS / "sampler_restart_without_ids.py", tmp_path / "run", *extra)
    assert run.returncode == 1, run.stderr
    failures = run.report["verdict"]["failures"]
    assert any("sample_ledger" in f and "#" in f for f in failures), failures


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
